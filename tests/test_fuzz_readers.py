"""Fuzzed files: every reader loads a mutated file correctly or raises an AccelnetError naming
the file; never another exception, never a hang, never an allocation the file cannot justify.

Valid IDX (raw and gzip), `mnist.npz`, CSV, PNG-folder, model and weights files are mutated
by hypothesis: byte flips, truncation at every offset class, header fields set to extremes,
wrong dtype codes, huge declared sizes, inner .npy headers and JSON headers rewritten (with
valid zip/PNG checksums so the mutation reaches the parser), non-UTF-8 headers.

The CI corpus is fixed-seed (`derandomize`) and small; `ACCELNET_FUZZ_EXAMPLES=N` runs N
random examples per reader instead (the long run), and `-s` prints how many were tried.
"""
import contextlib
import gzip
import io
import json
import os
import signal
import struct
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import accelnet as an
from accelnet.datasets import mnist
from accelnet.datasets.readers import read_csv, read_idx, read_image_folder
from accelnet.errors import AccelnetError

LONG = int(os.environ.get("ACCELNET_FUZZ_EXAMPLES", "0"))
TIMEOUT_S = 10           # a load taking this long is a hang
ALLOC_FACTOR = 1100      # deflate expands at most ~1032x: no reader needs more than this x file size
ALLOC_SLACK = 8 << 20    # interpreter, zipfile and NumPy bookkeeping
TRIED = {}


def fuzz(default):
    """Fixed-seed corpus of `default` examples in CI; ACCELNET_FUZZ_EXAMPLES random ones on demand."""
    return settings(max_examples=LONG or default, derandomize=not LONG, deadline=None,
                    database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print(f"\nfuzz mutations tried: {sum(TRIED.values())} {TRIED}")


class Hang(BaseException):
    """Raised by the alarm; a BaseException so no reader's `except Exception` swallows it."""


@contextlib.contextmanager
def alarm(seconds):
    def ring(signum, frame):
        raise Hang(f"reader still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(kind, path, load, size=None):
    """Run `load()`; only success or an AccelnetError naming `path` is allowed, within time and
    memory, and without a RuntimeWarning (NumPy's sign of a silently garbled value)."""
    TRIED[kind] = TRIED.get(kind, 0) + 1
    size = os.path.getsize(path) if size is None else size
    bound = ALLOC_FACTOR * size + ALLOC_SLACK
    tracemalloc.start()
    try:
        with alarm(TIMEOUT_S), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # e.g. a cast that makes garbage
            try:
                result = load()
            except AccelnetError as exc:
                result = exc
                assert os.path.basename(str(path)) in str(exc), f"error does not name the file: {exc}"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= bound, f"{kind}: {peak} bytes allocated for a {size}-byte file"
    return result


# -- mutations -------------------------------------------------------------------------
EXTREMES = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 10**9]


def offsets(n, fields=()):
    """Offset classes: the start, known header fields, the end, anywhere."""
    top = max(n - 1, 0)
    classes = [st.integers(0, min(32, top)), st.integers(max(0, n - 32), top), st.integers(0, top)]
    if fields:
        classes.append(st.sampled_from([f for f in fields if f < n] or [0]))
    return st.one_of(classes)


@st.composite
def mutate(draw, data, fields=()):
    """One to three generic byte-level mutations of `data`."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        n = len(out)
        if n == 0:
            out += draw(st.binary(min_size=1, max_size=16))
            continue
        op = draw(st.sampled_from(["flip", "set", "truncate", "field", "insert", "delete", "append"]))
        at = draw(offsets(n, fields))
        if op == "flip":
            out[at] ^= draw(st.integers(1, 255))
        elif op == "set":  # e.g. a dtype code or dimension count byte
            out[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del out[at:]
        elif op == "field":
            width = draw(st.sampled_from([2, 4, 8]))
            value = draw(st.sampled_from(EXTREMES)) % (1 << (8 * width))
            out[at:at + width] = value.to_bytes(width, draw(st.sampled_from(["big", "little"])))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del out[at:at + draw(st.integers(1, 64))]
        else:
            out += draw(st.binary(min_size=1, max_size=64))
    return bytes(out)


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- IDX ---------------------------------------------------------------------------------
def idx_bytes(arr):
    code = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


IDX_FILES = [idx_bytes(np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4)),
             idx_bytes(np.arange(7, dtype=np.uint8)),
             idx_bytes(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)),
             idx_bytes(np.arange(-6, 6, dtype=np.int16).reshape(2, 6))]


@fuzz(150)
@given(data=st.data(), which=st.integers(0, len(IDX_FILES) - 1), gz=st.sampled_from(["no", "inner", "outer"]))
def test_fuzz_idx(tmp_path_factory, data, which, gz):
    raw = IDX_FILES[which]
    fields = [2, 3, 4, 8, 12, 16]
    path = tmp_path_factory.mktemp("idx") / "fuzz-idx3-ubyte"
    if gz == "outer":  # corrupt the gzip stream itself
        blob = data.draw(mutate(gzip.compress(raw, mtime=0), [0, 1, 2, 3, 9, 10]))
    else:              # corrupt the IDX content (then maybe gzip it validly)
        blob = data.draw(mutate(raw, fields))
        blob = gzip.compress(blob, mtime=0) if gz == "inner" else blob
    write(path, blob)
    result = check("idx", path, lambda: read_idx(path))
    if isinstance(result, np.ndarray):
        assert result.dtype.isnative and result.nbytes <= 8 * len(blob) * ALLOC_FACTOR


def test_idx_huge_gzip_claim_is_bounded(tmp_path):
    """A tiny gzip claiming 2^32 x 2^32 bytes: refused or truncated, never allocated."""
    head = bytes([0, 0, 0x08, 2]) + np.asarray([2**32 - 1, 2**32 - 1], ">u4").tobytes()
    path = write(tmp_path / "bomb-idx2-ubyte.gz", gzip.compress(head + bytes(1 << 20)))
    assert isinstance(check("idx", path, lambda: read_idx(path)), AccelnetError)


# -- zip-based files: mnist.npz, model and weights files ------------------------------
def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def zip_bytes(members, compress=False):
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, blob in members.items():
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), blob, method)
    return buf.getvalue()


def members_of(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return {n: z.read(n) for n in z.namelist()}


DESCRS = ["<f4", ">f8", "|u1", "<i8", "|b1", "|O", "<U8", "|S3", "|V16", "<c8", "<M8[s]",
          "[('a', '<f4')]", "'<f4'", "<f4 ", "x", "", "<f99999999"]
SHAPES = [(), (0,), (1,), (2**31,), (2**40, 2**40), (-1,), (10**20,), (3, -5), (2**62, 4),
          ("a",), (1.5,), [2, 2], None]


def npy_header(descr, shape, fortran):
    """A .npy version 1.0 header with arbitrary (possibly invalid) fields."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


@st.composite
def mutate_zip(draw, blob, json_member=None):
    """Rebuild the archive with one member changed (valid CRCs), or mutate the raw bytes."""
    members = members_of(blob)
    how = draw(st.sampled_from(["raw", "member-bytes", "npy-header", "drop", "json"]
                               if json_member else ["raw", "member-bytes", "npy-header", "drop"]))
    if how == "raw":
        return draw(mutate(blob, [0, 4, 8, 14, 18, 22, 26, 28, 30]))
    name = draw(st.sampled_from(sorted(members)))
    if how == "member-bytes":
        members[name] = draw(mutate(members[name], [6, 7, 8, 9, 10, 20, 40, 60]))
    elif how == "npy-header":
        old = members[name]
        hlen = struct.unpack("<H", old[8:10])[0] if old[6:7] == b"\x01" else 0
        members[name] = npy_header(draw(st.sampled_from(DESCRS)), draw(st.sampled_from(SHAPES)),
                                   draw(st.sampled_from([False, True, "x"]))) + old[10 + hlen:]
    elif how == "drop":
        del members[name]
    else:
        members[json_member] = draw(json_header_variant(members[json_member]))
    return zip_bytes(members, compress=draw(st.booleans()))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                           | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.sampled_from(["class_name", "config", "units", "x"]), kids, max_size=3),
                           max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def json_header_variant(draw, npy):
    """The accelnet.json member with its JSON changed: a subtree replaced, non-UTF-8 text, ..."""
    header = json.loads(str(np.load(io.BytesIO(npy), allow_pickle=False)))
    how = draw(st.sampled_from(["subtree", "bytes-utf8-bad", "utf32-bad", "text", "deep"]))
    if how == "subtree":
        path = draw(st.sampled_from(list(_paths(header))[1:]))
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = draw(JSON_VALUES)
        return npy_bytes(np.array(json.dumps(header)))
    if how == "bytes-utf8-bad":  # stored as bytes with invalid UTF-8 inside
        text = json.dumps(header).encode()
        at = draw(st.integers(0, len(text)))
        return npy_bytes(np.array(text[:at] + b"\xff\xfe\xc0" + text[at:]))
    if how == "utf32-bad":  # a code point above U+10FFFF in the UTF-32 array
        raw = bytearray(npy_bytes(np.array(json.dumps(header))))
        at = len(raw) - 4 * draw(st.integers(1, 20))
        raw[at:at + 4] = draw(st.sampled_from([0x110000, 0xD800, 0xFFFFFFFF])).to_bytes(4, "little")
        return bytes(raw)
    if how == "deep":
        return npy_bytes(np.array("[" * 100_000 + "]" * 100_000))
    return npy_bytes(np.array(draw(st.text(max_size=40))))


def mnist_npz_bytes():
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 4, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 2, dtype=np.uint8)}
    return zip_bytes({f"{k}.npy": npy_bytes(v) for k, v in arrays.items()})


MNIST_NPZ = mnist_npz_bytes()


@fuzz(100)
@given(data=st.data())
def test_fuzz_mnist_npz(tmp_path_factory, data):
    path = write(tmp_path_factory.mktemp("npz") / "mnist.npz", data.draw(mutate_zip(MNIST_NPZ)))
    result = check("npz", path, lambda: mnist.load_data(path))
    if not isinstance(result, AccelnetError):
        (x, y), (xt, yt) = result
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and len(x) == len(y)


def small_model():
    an.random.seed(0)
    model = an.Sequential([an.layers.Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)),
                           an.layers.MaxPooling2D(2), an.layers.Flatten(),
                           an.layers.BatchNormalization(), an.layers.Dropout(0.5),
                           an.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    model = small_model()
    x = np.random.default_rng(0).random((8, 6, 6, 1), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    model.save(folder / "m.npz")
    model.save_weights(folder / "w.npz")
    return (folder / "m.npz").read_bytes(), (folder / "w.npz").read_bytes()


@fuzz(100)
@given(data=st.data())
def test_fuzz_model_file(tmp_path_factory, model_files, data):
    path = write(tmp_path_factory.mktemp("model") / "model.npz",
                 data.draw(mutate_zip(model_files[0], "accelnet.json.npy")))
    result = check("model", path, lambda: an.models.load_model(path))
    if not isinstance(result, AccelnetError):
        assert isinstance(result, an.Sequential) and result.built


@pytest.mark.parametrize("code", [0x110000, 0xFFFFFFFF, 0xD800])
def test_header_with_invalid_code_point_is_refused(tmp_path, model_files, code):
    """Found by the long run: NumPy turns U+110000 into a broken str that crashes str.lower()."""
    members = members_of(model_files[0])
    raw = bytearray(members["accelnet.json.npy"])
    at = raw.find("glorot".encode("utf-32-le"))
    raw[at:at + 4] = code.to_bytes(4, "little")
    members["accelnet.json.npy"] = bytes(raw)
    path = write(tmp_path / "model.npz", zip_bytes(members))
    result = check("model", path, lambda: an.models.load_model(path))
    assert isinstance(result, AccelnetError) and "invalid Unicode" in str(result)


def test_nested_config_that_is_not_an_object_is_refused(tmp_path, model_files):
    """Found by the long run: {"class_name": ..., "config": true} inside a layer config."""
    members = members_of(model_files[0])
    header = json.loads(str(np.load(io.BytesIO(members["accelnet.json.npy"]), allow_pickle=False)))
    header["model"]["config"]["layers"][0]["config"]["kernel_initializer"] = {
        "class_name": "GlorotUniform", "config": True}
    members["accelnet.json.npy"] = npy_bytes(np.array(json.dumps(header)))
    path = write(tmp_path / "model.npz", zip_bytes(members))
    result = check("model", path, lambda: an.models.load_model(path))
    assert isinstance(result, AccelnetError) and "config must be an object" in str(result)


@fuzz(60)
@given(data=st.data())
def test_fuzz_weights_file(tmp_path_factory, model_files, data):
    path = write(tmp_path_factory.mktemp("weights") / "weights.npz",
                 data.draw(mutate_zip(model_files[1], "accelnet.json.npy")))
    model = small_model()
    result = check("weights", path, lambda: model.load_weights(path))
    if not isinstance(result, AccelnetError):
        assert [w.shape for w in model.get_weights()] == [w.shape for w in small_model().get_weights()]


@fuzz(40)
@given(data=st.data())
def test_fuzz_backup_file(tmp_path_factory, model_files, data):
    path = write(tmp_path_factory.mktemp("backup") / "backup.npz",
                 data.draw(mutate_zip(model_files[0], "accelnet.json.npy")))
    model = small_model()
    check("backup", path, lambda: an.serialization.restore_backup(model, path))


# -- CSV ---------------------------------------------------------------------------------
CSV = b"label,p0,p1,p2\n3,0,255,17\n1,4,5,6\n\n0,9,8,7\n"
TOKENS = [b"nan", b"inf", b"-inf", b"1e999", b"-1", b"256", b"1.5", b"", b",", b"\x00", b"\xff\xfe",
          b"1_0", b"0x10", b" ", b"\r", b"\n", b"9" * 400, b"\xe2\x80\xa8", b"\"3\"", b"#"]


@st.composite
def mutate_csv(draw):
    if draw(st.booleans()):
        return draw(mutate(CSV))
    out = bytearray(CSV)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        cut = draw(st.integers(0, 3))
        out[at:at + cut] = draw(st.sampled_from(TOKENS))
    return bytes(out)


@fuzz(150)
@given(data=st.data(), label_first=st.booleans())
def test_fuzz_csv(tmp_path_factory, data, label_first):
    path = write(tmp_path_factory.mktemp("csv") / "digits.csv", data.draw(mutate_csv()))
    result = check("csv", path, lambda: read_csv(path, label_first=label_first))
    if not isinstance(result, AccelnetError):
        x, y = result
        assert y.dtype == np.int64 and len(x) == len(y) and x.dtype in (np.uint8, np.float32)


# -- PNG folders ---------------------------------------------------------------------------
def png_bytes(mode, size, seed):
    from PIL import Image
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + (() if mode == "L" else (len(mode),))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def png_chunks(blob):
    chunks, at = [], 8
    while at + 8 <= len(blob):
        n, kind = struct.unpack(">I4s", blob[at:at + 8])
        chunks.append((kind, blob[at + 8:at + 8 + n]))
        at += 12 + n
    return chunks


def png_join(chunks):
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


@st.composite
def mutate_png(draw, blob):
    how = draw(st.sampled_from(["raw", "chunk", "ihdr", "idat-inflated"]))
    if how == "raw":
        return draw(mutate(blob, [8, 16, 20, 24, 25, 26, 28, 29, 33]))
    chunks = png_chunks(blob)
    if how == "chunk":  # mutate one chunk's body, keep its CRC valid
        i = draw(st.integers(0, len(chunks) - 1))
        chunks[i] = (chunks[i][0], draw(mutate(chunks[i][1], [0, 4, 8, 9, 10, 11, 12])))
    elif how == "ihdr":  # extreme width/height/bit depth/colour type with a valid CRC
        body = bytearray(chunks[0][1])
        for field, width in ((0, 4), (4, 4), (8, 1), (9, 1), (12, 1)):
            if draw(st.booleans()):
                body[field:field + width] = (draw(st.sampled_from(EXTREMES)) % (1 << 8 * width)
                                             ).to_bytes(width, "big")
        chunks[0] = (b"IHDR", bytes(body))
    else:  # recompress the pixel stream after mutating it
        idat = b"".join(b for k, b in chunks if k == b"IDAT")
        pixels = draw(mutate(zlib.decompress(idat)))
        chunks = [c for c in chunks if c[0] != b"IDAT"][:-1] + [(b"IDAT", zlib.compress(pixels)),
                                                                (b"IEND", b"")]
    return png_join(chunks)


PNGS = [png_bytes("L", (5, 4), 0), png_bytes("RGB", (5, 4), 1), png_bytes("RGBA", (5, 4), 2)]


@fuzz(100)
@given(data=st.data(), which=st.integers(0, len(PNGS) - 1),
       color_mode=st.sampled_from(["auto", "grayscale", "rgb"]))
def test_fuzz_png_folder(tmp_path_factory, data, which, color_mode):
    root = tmp_path_factory.mktemp("png")
    write(root / "0" / "good.png", PNGS[0])
    path = write(root / "1" / "fuzzed.png", data.draw(mutate_png(PNGS[which])))
    size = os.path.getsize(path) + len(PNGS[0])
    result = check("png", path, lambda: read_image_folder(root, color_mode=color_mode), size)
    if not isinstance(result, AccelnetError):
        x, y, names = result
        assert x.dtype == np.uint8 and list(y) == [0, 1] and names == ["0", "1"]


@pytest.mark.parametrize("width,height", [(9000, 9000), (0x02000005, 4)])
def test_png_declaring_huge_size_is_refused_before_decoding(tmp_path, width, height):
    """Below PIL's own bomb limit (81 Mpixels) and above it, where PIL warns: the file's size decides."""
    chunks = png_chunks(PNGS[0])
    chunks[0] = (b"IHDR", struct.pack(">II", width, height) + chunks[0][1][8:])
    write(tmp_path / "0" / "huge.png", png_join(chunks))
    result = check("png", tmp_path / "0" / "huge.png", lambda: read_image_folder(tmp_path))
    assert isinstance(result, AccelnetError) and f"{width}x{height}" in str(result)
