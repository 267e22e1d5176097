"""Readers for the on-disk formats MNIST-like data sets come in.

Each reader checks what it reads and raises `DataFileError` naming the file and what is
wrong (bad magic, truncated data, wrong column count, ...) instead of letting an
IndexError or a half-read array escape; a missing file raises `DataNotFoundError`.
"""
import gzip
import io
import os
import re
import warnings
import zlib

import numpy as np

from ..errors import DataFileError, DataNotFoundError, InvalidArgumentError
from ..fileio import NpzArchive

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype.
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CHUNK = 1 << 20


def _require_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataNotFoundError(f"Data file {path!r} does not exist (or is not a file).")
    return path


def _read_at_most(f, n):
    """Read up to n bytes in chunks, so a header claiming huge sizes allocates nothing."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_idx(path, ndim=None):
    """Read an IDX file (raw or gzip-compressed) into a native-endian NumPy array.

    The magic number is two zero bytes, a type code (0x08 = uint8, ...) and the number
    of dimensions; `ndim` (3 for images, 1 for labels) is checked when given.
    """
    path = _require_file(path)
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            magic = _read_at_most(f, 4)
            if len(magic) < 4:
                raise DataFileError(f"IDX file {path!r} is truncated: {len(magic)} bytes, "
                                    f"shorter than the 4-byte magic number.")
            if magic[0] or magic[1] or magic[2] not in IDX_DTYPES:
                raise DataFileError(
                    f"{path!r} is not an IDX file: bad magic number 0x{magic.hex()} (expected "
                    f"0x0000TTNN with type code TT in "
                    f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}, e.g. 0x00000803).")
            dtype, dims_n = IDX_DTYPES[magic[2]], magic[3]
            if ndim is not None and dims_n != ndim:
                raise DataFileError(
                    f"IDX file {path!r} has {dims_n} dimension(s) (magic 0x{magic.hex()}), "
                    f"expected {ndim} (magic 0x0000{magic[2]:02x}{ndim:02x}).")
            header = _read_at_most(f, 4 * dims_n)
            if len(header) < 4 * dims_n:
                raise DataFileError(f"IDX file {path!r} is truncated inside its header: "
                                    f"expected {4 * dims_n} bytes of dimensions, "
                                    f"found {len(header)}.")
            shape = tuple(int(d) for d in np.frombuffer(header, ">u4"))
            expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
            data = _read_at_most(f, expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "gzip data" if gzipped else "data"
        raise DataFileError(f"Cannot read IDX file {path!r}: corrupt or truncated {kind} "
                            f"({type(exc).__name__}: {exc}).") from None
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataFileError(
            f"IDX file {path!r} is {what}: shape {shape} of {dtype.name} needs {expected} "
            f"data bytes, found {len(data) if len(data) < expected else f'more than {expected}'}.")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_npz(path):
    """Read a Keras-style `mnist.npz` -> `(x_train, y_train), (x_test, y_test)`.

    Read through `NpzArchive`: sizes are checked first and object arrays refused, never unpickled.
    """
    path = _require_file(path)
    keys = NPZ_KEYS
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise DataFileError(f"{path!r} holds a single .npy array, not an .npz archive "
                            f"with {', '.join(keys)}.")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise DataFileError(f"{path!r} is not an .npz archive (starts with "
                            f"0x{magic.hex() or 'nothing'}, not a zip header).")
    with NpzArchive(path, ".npz file") as npz:  # sizes checked, nothing unpickled
        missing = [k for k in keys if k not in npz]
        if missing:
            raise DataFileError(f"{path!r} lacks the array(s) {', '.join(missing)}; "
                                f"it holds: {', '.join(npz.files) or 'nothing'}.")
        arrays = [npz.read(k) for k in keys]
    x_train, y_train, x_test, y_test = arrays
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
            raise DataFileError(f"{path!r}: x_{split} shape {x.shape} and y_{split} shape "
                                f"{y.shape} do not have the same number of samples.")
    return (x_train, y_train), (x_test, y_test)


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_csv(path, label_first=True, skip_header="auto"):
    """Read a CSV of one sample per row (label, then pixels) -> `(x, y)`.

    `x` is (N, columns-1), uint8 when every value is an integer 0..255 else float32;
    `y` is int64. `skip_header="auto"` skips a first line that is not all numbers.
    Blank lines are ignored; every other row must have as many columns as the first.
    """
    path = _require_file(path)
    if skip_header not in ("auto", True, False):
        raise InvalidArgumentError(f"skip_header must be 'auto', True or False, "
                                   f"got {skip_header!r}.")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"Cannot read CSV file {path!r}: {exc}.") from None
    rows = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if rows and (skip_header is True or (skip_header == "auto" and not all(
            _is_number(v) for v in rows[0][1].split(",")))):
        rows = rows[1:]
    if not rows:
        raise DataFileError(f"CSV file {path!r} has no data rows.")
    first_no, first = rows[0]
    width = first.count(",") + 1
    if width < 2:
        raise DataFileError(f"CSV file {path!r}, line {first_no}: expected a label and at "
                            f"least one pixel, found {width} column.")
    for no, line in rows:
        if line.count(",") + 1 != width:
            raise DataFileError(f"CSV file {path!r}, line {no}: expected {width} columns "
                                f"(as on line {first_no}), found {line.count(',') + 1}.")
    text = [line for _, line in rows]
    try:
        data = np.loadtxt(text, delimiter=",", dtype=np.uint8, ndmin=2)
    except (ValueError, OverflowError):
        try:
            data = np.loadtxt(text, delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError:
            for no, line in rows:
                for col, v in enumerate(line.split(","), 1):
                    if not _is_number(v):
                        raise DataFileError(f"CSV file {path!r}, line {no}, column {col}: "
                                            f"{v.strip()!r} is not a number.") from None
            raise DataFileError(f"CSV file {path!r} could not be parsed.") from None
    labels, x = (data[:, 0], data[:, 1:]) if label_first else (data[:, -1], data[:, :-1])
    bad_labels = ~np.isfinite(labels) | (labels != np.round(labels)) | (np.abs(labels) >= 2**62)
    if np.any(bad_labels):
        bad = int(np.flatnonzero(bad_labels)[0])
        raise DataFileError(f"CSV file {path!r}, line {rows[bad][0]}: label "
                            f"{labels[bad]!r} is not an integer in the int64 range.")
    return np.ascontiguousarray(x), labels.astype(np.int64)


# Decoded bytes an image may have per byte of file: deflate (PNG) expands at most ~1032x.
MAX_IMAGE_EXPANSION = 1100


def _check_decoded_size(file, im):
    """Refuse, before decoding, an image whose header declares more pixels than its file can hold."""
    width, height = im.size
    bits = 1 if im.mode == "1" else 8 * len(im.getbands())
    decoded = height * ((width * bits + 7) // 8)
    size = os.path.getsize(file)
    if decoded > MAX_IMAGE_EXPANSION * size:
        raise DataFileError(f"Image {file!r} declares {width}x{height} pixels ({decoded} bytes "
                            f"decoded), more than its {size} bytes can hold; refusing to decode "
                            f"it (corrupt, or a decompression bomb).")


def _natural_key(name):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def read_image_folder(root, color_mode="auto", extensions=(".png",)):
    """Read `root/<class>/*.png` -> `(x, y, class_names)`.

    Classes are the sub-folder names in natural order ("2" before "10"), and `y` is
    each image's class index (int64). `x` is uint8 (N, H, W) when every image is
    grayscale (or `color_mode="grayscale"`), else (N, H, W, 3) ("rgb") or 4 ("rgba").
    All images must have the same size.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("read_image_folder needs Pillow: pip install pillow") from None
    if color_mode not in ("auto", "grayscale", "rgb", "rgba"):
        raise InvalidArgumentError(f"color_mode must be 'auto', 'grayscale', 'rgb' or "
                                   f"'rgba', got {color_mode!r}.")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataNotFoundError(f"Image folder {root!r} does not exist.")
    exts = tuple(e.lower() for e in extensions)
    class_names = sorted((d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))),
                         key=_natural_key)
    images, labels, size, any_color = [], [], None, False
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        for fname in sorted(os.listdir(folder), key=_natural_key):
            file = os.path.join(folder, fname)
            if not fname.lower().endswith(exts) or not os.path.isfile(file):
                continue
            try:
                with open(file, "rb") as f:  # in memory: PIL reads only what is there,
                    blob = f.read()          # never a chunk's declared length
                with warnings.catch_warnings():  # _check_decoded_size is the bomb check
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    im = Image.open(io.BytesIO(blob))
                with im:
                    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                        raise DataFileError(f"Image {file!r} has mode {im.mode!r} (16/32-bit); "
                                            f"only 8-bit images are supported.")
                    _check_decoded_size(file, im)
                    gray = im.mode in ("1", "L", "LA")
                    mode = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}.get(
                        color_mode, "L" if gray else "RGB")
                    arr = np.asarray(im.convert(mode), dtype=np.uint8)
            except DataFileError:
                raise
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise DataFileError(f"Cannot read image {file!r}: {type(exc).__name__}: "
                                    f"{exc}.") from None
            if size is None:
                size, first = arr.shape[:2], file
            elif arr.shape[:2] != size:
                raise DataFileError(f"Image {file!r} is {arr.shape[1]}x{arr.shape[0]} pixels "
                                    f"but {first!r} is {size[1]}x{size[0]}; all images in "
                                    f"{root!r} must have the same size.")
            any_color |= arr.ndim == 3
            images.append(arr)
            labels.append(label)
    if not images:
        raise DataNotFoundError(f"No {'/'.join(exts)} images found in class sub-folders of "
                                f"{root!r} (expected {root}/<class>/<image>).")
    if any_color:
        images = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in images]
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names
