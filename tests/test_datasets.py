"""Data set readers and loaders, on small fixtures written to tmp_path (never the network)."""
import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from accelnet.datasets import _download, fashion_mnist, mnist
from accelnet.datasets.readers import read_csv, read_idx, read_image_folder, read_npz
from accelnet.errors import DataFileError, DataNotFoundError, InvalidArgumentError

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
RNG = np.random.default_rng(0)


def idx_bytes(arr, code=0x08):
    arr = np.asarray(arr)
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return str(path)


def fake_split(n_train=6, n_test=4):
    x_tr = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    return ((x_tr, RNG.integers(0, 10, n_train, dtype=np.uint8)),
            (x_te, RNG.integers(0, 10, n_test, dtype=np.uint8)))


def write_idx_set(folder, data, gz=True):
    (x_tr, y_tr), (x_te, y_te) = data
    for name, arr in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                         (x_tr, y_tr, x_te, y_te)):
        write(os.path.join(folder, name + (".gz" if gz else "")), idx_bytes(arr), gz=gz)


def assert_same(got, want):
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        assert g.dtype == np.uint8 and w.dtype == np.uint8
        np.testing.assert_array_equal(g, w)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data roots, no Debian folder, and any network access fails the test."""
    monkeypatch.setenv("ACCELNET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())

    def no_network(url, *a, **k):
        raise AssertionError(f"test tried to open {url}")
    monkeypatch.setattr(_download, "_urlopen", no_network)
    return tmp_path


# ---------------------------------------------------------------- read_idx
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = write(tmp_path / "img.idx", idx_bytes(images), gz=gz)
    got = read_idx(path, ndim=3)
    np.testing.assert_array_equal(got, images)
    assert got.dtype == np.uint8 and got.flags.writeable


def test_read_idx_big_endian_int32_becomes_native(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    got = read_idx(write(tmp_path / "a.idx", idx_bytes(values, code=0x0C)))
    assert got.dtype == np.dtype("=i4")
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_names_file_and_byte_counts(tmp_path, gz):
    data = idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-100]
    path = write(tmp_path / "train-images-idx3-ubyte", data, gz=gz)
    with pytest.raises(DataFileError, match="truncated") as err:
        read_idx(path)
    assert path in str(err.value)
    assert str(5 * 28 * 28) in str(err.value) and str(5 * 28 * 28 - 100) in str(err.value)


@pytest.mark.parametrize("data, what", [
    (b"\x12\x34\x08\x03" + b"\x00" * 16, "bad magic"),   # non-zero leading bytes
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "bad magic"),  # unknown type code
    (b"\x00\x00", "truncated"),                              # shorter than the magic
    (b"\x00\x00\x08\x03\x00\x00\x00\x05", "header"),         # dims cut off
    (idx_bytes(np.zeros(4, np.uint8)) + b"extra", "longer"),
])
def test_read_idx_corrupt(tmp_path, data, what):
    path = write(tmp_path / "bad.idx", data)
    with pytest.raises(DataFileError, match=what) as err:
        read_idx(path)
    assert path in str(err.value)


def test_read_idx_wrong_ndim_names_magic(tmp_path):
    path = write(tmp_path / "labels.idx", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataFileError, match="0x00000801") as err:
        read_idx(path, ndim=3)
    assert path in str(err.value)


def test_read_idx_huge_claimed_size_does_not_allocate(tmp_path):
    path = write(tmp_path / "huge.idx", b"\x00\x00\x08\x03" + b"\xff" * 12 + b"\x00" * 10)
    with pytest.raises(DataFileError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("data", [b"\x1f\x8b\x08\x00" + b"garbage" * 5,
                                  gzip.compress(idx_bytes(np.zeros(900, np.uint8)))[:-30]])
def test_read_idx_corrupt_gzip(tmp_path, data):
    path = write(tmp_path / "x-idx1-ubyte.gz", data)
    with pytest.raises(DataFileError) as err:
        read_idx(path)
    assert path in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40))
def test_read_idx_random_bytes_only_dataerror(tmp_path_factory, data):
    path = write(tmp_path_factory.mktemp("fuzz") / "f.idx", data)
    try:
        read_idx(path)
    except DataFileError:
        pass


# ---------------------------------------------------------------- read_npz
def test_read_npz_roundtrip(tmp_path):
    data = fake_split()
    np.savez(tmp_path / "mnist.npz", x_train=data[0][0], y_train=data[0][1],
             x_test=data[1][0], y_test=data[1][1])
    assert_same(read_npz(tmp_path / "mnist.npz"), data)


def test_read_npz_missing_key_named(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 28, 28), np.uint8),
             y_train=np.zeros(2, np.uint8), x_test=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataFileError, match="y_test") as err:
        read_npz(tmp_path / "m.npz")
    assert str(tmp_path / "m.npz") in str(err.value)


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_read_npz_refuses_pickled_objects(tmp_path):
    marker = str(tmp_path / "pwned")
    hostile = np.array([_Hostile(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", x_train=hostile, y_train=hostile, x_test=hostile,
             y_test=hostile)
    with pytest.raises(DataFileError, match="pickle") as err:
        read_npz(tmp_path / "evil.npz")
    assert "evil.npz" in str(err.value) and not os.path.exists(marker)


def test_read_npz_corrupt_and_truncated(tmp_path):
    data = fake_split()
    np.savez(tmp_path / "ok.npz", x_train=data[0][0], y_train=data[0][1],
             x_test=data[1][0], y_test=data[1][1])
    blob = (tmp_path / "ok.npz").read_bytes()
    for name, content in (("trunc.npz", blob[: len(blob) // 2]), ("text.npz", b"hello"),
                          ("empty.npz", b"")):
        path = write(tmp_path / name, content)
        with pytest.raises(DataFileError) as err:
            read_npz(path)
        assert path in str(err.value)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataFileError, match="single .npy"):
        read_npz(tmp_path / "single.npy")


def test_read_npz_length_mismatch(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((3, 28, 28), np.uint8),
             y_train=np.zeros(2, np.uint8), x_test=np.zeros((1, 28, 28), np.uint8),
             y_test=np.zeros(1, np.uint8))
    with pytest.raises(DataFileError, match="x_train"):
        read_npz(tmp_path / "m.npz")


# ---------------------------------------------------------------- read_csv
def test_read_csv_with_header(tmp_path):
    path = write(tmp_path / "mnist.csv", b"label,p1,p2,p3\n7,0,128,255\n\n2,1,2,3\n")
    x, y = read_csv(path)
    np.testing.assert_array_equal(x, [[0, 128, 255], [1, 2, 3]])
    np.testing.assert_array_equal(y, [7, 2])
    assert x.dtype == np.uint8 and y.dtype == np.int64


def test_read_csv_no_header_label_last_and_floats(tmp_path):
    path = write(tmp_path / "d.csv", b"0.5,0.25,1\n1,0,0\n")
    x, y = read_csv(path, label_first=False, skip_header=False)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[0.5, 0.25], [1, 0]])
    np.testing.assert_array_equal(y, [1, 0])


def test_read_csv_wrong_columns_names_line_and_counts(tmp_path):
    path = write(tmp_path / "mnist.csv", b"label,a,b,c,d\n1,2,3,4,5\n1,2,3,4,5\n1,2,3,4\n")
    with pytest.raises(DataFileError) as err:
        read_csv(path)
    msg = str(err.value)
    assert path in msg and "line 4" in msg and "expected 5" in msg and "found 4" in msg


@pytest.mark.parametrize("content, what", [
    (b"1,2,3\n4,x,6\n", "line 2, column 2"),
    (b"1.5,2,3\n", "not an integer"),
    (b"label,a\n\n", "no data rows"),
    (b"", "no data rows"),
    (b"1\n2\n", "at least one pixel"),
])
def test_read_csv_bad_content(tmp_path, content, what):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(DataFileError, match=what) as err:
        read_csv(path)
    assert path in str(err.value)


def test_read_csv_bad_argument(tmp_path):
    with pytest.raises(InvalidArgumentError):
        read_csv(write(tmp_path / "a.csv", b"1,2\n"), skip_header="yes")


# ---------------------------------------------------------------- read_image_folder
def save_png(path, arr):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)
    return str(path)


def test_read_image_folder_grayscale_natural_class_order(tmp_path):
    pytest.importorskip("PIL")
    root = tmp_path / "train"
    imgs = {}
    for label in ("0", "2", "10"):
        for i in range(2):
            arr = RNG.integers(0, 256, (5, 4), dtype=np.uint8)
            imgs[(label, i)] = arr
            save_png(root / label / f"{i}.png", arr)
    (root / "2" / "notes.txt").write_text("ignored")
    x, y, names = read_image_folder(root)
    assert names == ["0", "2", "10"] and x.shape == (6, 5, 4) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(x[4], imgs[("10", 0)])


def test_read_image_folder_mixed_color_gives_rgb(tmp_path):
    pytest.importorskip("PIL")
    save_png(tmp_path / "a" / "g.png", np.full((3, 3), 9, np.uint8))
    save_png(tmp_path / "b" / "c.png", np.zeros((3, 3, 3), np.uint8))
    x, y, names = read_image_folder(tmp_path)
    assert x.shape == (2, 3, 3, 3) and (x[0] == 9).all()
    assert read_image_folder(tmp_path, color_mode="grayscale")[0].shape == (2, 3, 3)


def test_read_image_folder_size_mismatch_names_file(tmp_path):
    pytest.importorskip("PIL")
    save_png(tmp_path / "a" / "1.png", np.zeros((28, 28), np.uint8))
    odd = save_png(tmp_path / "b" / "2.png", np.zeros((30, 28), np.uint8))
    with pytest.raises(DataFileError, match="same size") as err:
        read_image_folder(tmp_path)
    assert odd in str(err.value)


def test_read_image_folder_corrupt_and_empty(tmp_path):
    pytest.importorskip("PIL")
    bad = write(tmp_path / "a" / "broken.png", b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataFileError) as err:
        read_image_folder(tmp_path)
    assert bad in str(err.value)
    os.makedirs(tmp_path / "empty" / "cls")
    with pytest.raises(DataNotFoundError):
        read_image_folder(tmp_path / "empty")
    with pytest.raises(DataNotFoundError):
        read_image_folder(tmp_path / "missing")


# ---------------------------------------------------------------- load_data: local files
def test_fashion_from_accelnet_data(isolated):
    data = fake_split()
    write_idx_set(isolated / "data" / "fashion-mnist", data)
    assert_same(fashion_mnist.load_data(), data)


def test_fashion_from_home_raw_idx(isolated, monkeypatch):
    monkeypatch.delenv("ACCELNET_DATA")
    data = fake_split()
    write_idx_set(isolated / "home" / ".accelnet" / "datasets" / "fashion-mnist", data, gz=False)
    assert_same(fashion_mnist.load_data(), data)


def test_fashion_from_system_dir(isolated, monkeypatch):
    data = fake_split()
    write_idx_set(isolated / "debian", data)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(isolated / "debian"),))
    assert_same(fashion_mnist.load_data(), data)


def test_mnist_npz_and_idx_layouts(isolated):
    data = fake_split()
    write_idx_set(isolated / "data" / "mnist", data)
    assert_same(mnist.load_data(), data)
    other = fake_split(2, 2)
    np.savez(isolated / "data" / "mnist.npz", x_train=other[0][0], y_train=other[0][1],
             x_test=other[1][0], y_test=other[1][1])
    assert_same(mnist.load_data(), other)  # Keras-style mnist.npz in the root wins
    assert_same(mnist.load_data(path=isolated / "data" / "mnist"), data)
    assert_same(mnist.load_data(path=isolated / "data" / "mnist.npz"), other)


def test_mnist_bad_shapes_rejected(isolated):
    np.savez(isolated / "m.npz", x_train=np.zeros((2, 28, 27), np.uint8),
             y_train=np.zeros(2, np.uint8), x_test=np.zeros((1, 28, 28), np.uint8),
             y_test=np.zeros(1, np.uint8))
    with pytest.raises(DataFileError, match="x_train"):
        mnist.load_data(path=isolated / "m.npz")


def test_corrupt_local_file_is_an_error_not_a_download(isolated):
    data = fake_split()
    folder = isolated / "data" / "fashion-mnist"
    write_idx_set(folder, data)
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(3, np.uint8)), gz=True)
    with pytest.raises(DataFileError, match="t10k-labels"):
        fashion_mnist.load_data()


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION),
                    reason=f"{DEBIAN_FASHION} absent (apt install dataset-fashion-mnist)")
def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELNET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(_download, "_urlopen", None)  # would fail loudly if called
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8
    assert y_train.min() == 0 and y_train.max() == 9 and set(np.unique(y_test)) == set(range(10))
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert 0 < x_train.mean() < 255


# ---------------------------------------------------------------- load_data: downloads
def npz_bytes(data):
    buf = io.BytesIO()
    np.savez(buf, x_train=data[0][0], y_train=data[0][1], x_test=data[1][0],
             y_test=data[1][1])
    return buf.getvalue()


def table(blobs):
    return {name: (hashlib.sha256(b).hexdigest(), len(b)) for name, b in blobs.items()}


def test_mnist_download_via_file_url(isolated, monkeypatch):
    data = fake_split()
    blob = npz_bytes(data)
    served = write(isolated / "server" / "mnist.npz", blob)
    monkeypatch.setattr(_download, "_urlopen", urllib.request.urlopen)
    monkeypatch.setattr(mnist, "URLS", ("file://" + served,))
    monkeypatch.setattr(mnist, "FILES", table({"mnist.npz": blob}))
    assert_same(mnist.load_data(), data)
    saved = isolated / "data" / "mnist" / "mnist.npz"
    assert saved.read_bytes() == blob
    monkeypatch.setattr(_download, "_urlopen", None)  # now found locally, no download
    assert_same(mnist.load_data(), data)


def test_mnist_download_to_explicit_path(isolated, monkeypatch):
    data = fake_split()
    blob = npz_bytes(data)
    monkeypatch.setattr(_download, "_urlopen", urllib.request.urlopen)
    monkeypatch.setattr(mnist, "URLS", ("file://" + write(isolated / "srv" / "m.npz", blob),))
    monkeypatch.setattr(mnist, "FILES", table({"mnist.npz": blob}))
    assert_same(mnist.load_data(path=isolated / "mine" / "digits.npz"), data)
    assert (isolated / "mine" / "digits.npz").read_bytes() == blob


class FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def fake_opener(blobs, fail=()):
    calls = []

    def opener(url, timeout=None):
        calls.append(url)
        if any(url.startswith(f) for f in fail):
            raise urllib.error.URLError("unreachable")
        return FakeResponse(blobs[url.rsplit("/", 1)[1]])
    opener.calls = calls
    return opener


def fashion_blobs(data):
    folder = {}
    (x_tr, y_tr), (x_te, y_te) = data
    for name, arr in zip(fashion_mnist.FILES, (x_tr, y_tr, x_te, y_te)):
        folder[name] = gzip.compress(idx_bytes(arr))
    return folder


def test_fashion_download_falls_back_to_second_mirror(isolated, monkeypatch):
    data = fake_split()
    blobs = fashion_blobs(data)
    opener = fake_opener(blobs, fail=("https://first",))
    monkeypatch.setattr(_download, "_urlopen", opener)
    monkeypatch.setattr(fashion_mnist, "URLS", ("https://first/", "https://second/"))
    monkeypatch.setattr(fashion_mnist, "FILES", table(blobs))
    assert_same(fashion_mnist.load_data(), data)
    assert sorted(os.listdir(isolated / "data" / "fashion-mnist")) == sorted(blobs)
    assert any(u.startswith("https://second/") for u in opener.calls)


@pytest.mark.parametrize("tamper", ["flip", "longer"])
def test_download_hash_mismatch_leaves_nothing(isolated, monkeypatch, tamper):
    blob = npz_bytes(fake_split())
    bad = bytes([blob[0] ^ 1]) + blob[1:] if tamper == "flip" else blob + b"x"
    monkeypatch.setattr(_download, "_urlopen", fake_opener({"mnist.npz": bad}))
    monkeypatch.setattr(mnist, "URLS", ("https://mirror/mnist.npz",))
    monkeypatch.setattr(mnist, "FILES", table({"mnist.npz": blob}))
    with pytest.raises(DataFileError, match="integrity") as err:
        mnist.load_data()
    assert "mnist.npz" in str(err.value)
    folder = isolated / "data" / "mnist"
    assert not folder.exists() or os.listdir(folder) == []


def test_offline_raises_data_not_found_naming_files_and_place(isolated, monkeypatch):
    monkeypatch.setattr(_download, "_urlopen", fake_opener({}, fail=("http",)))
    with pytest.raises(DataNotFoundError) as err:
        fashion_mnist.load_data()
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(isolated / "data" / "fashion-mnist") in msg and "URLError" in msg
    with pytest.raises(DataNotFoundError, match="mnist.npz") as err:
        mnist.load_data()
    assert str(isolated / "data") in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_official_hash_tables_are_well_formed():
    for files in (mnist.FILES, fashion_mnist.FILES):
        for sha, size in files.values():
            assert len(sha) == 64 and int(sha, 16) >= 0 and size > 0
    assert set(fashion_mnist.FILES) == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
