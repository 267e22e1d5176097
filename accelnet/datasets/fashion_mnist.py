"""Fashion-MNIST (Zalando): 60,000 + 10,000 28x28 grayscale images of 10 clothing types.

`load_data()` returns uint8 arrays exactly like `keras.datasets.fashion_mnist.load_data()`.
It reads the four IDX .gz files from `$ACCELNET_DATA/fashion-mnist`,
`~/.accelnet/datasets/fashion-mnist`, `~/.keras/datasets/fashion-mnist` or Debian's
`/usr/share/datasets/fashion-mnist` (package dataset-fashion-mnist), else downloads
them from Zalando's mirrors and checks each file's SHA-256.

Local files are not hash-checked: Debian's copies are re-gzipped (no file name in the
gzip header) so their .gz hashes differ; they are checked structurally instead.
"""
import os

from . import _download, _idx

SUBDIR = "fashion-mnist"
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
URLS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
# SHA-256 and size of the official .gz files. The MD5s below are the ones Zalando's
# README publishes (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...); the SHA-256s
# are those pinned by TensorFlow Datasets and many independent projects for the same
# files (cross-checked against several sources, all agreeing); sizes are the S3 files'.
FILES = {
    "train-images-idx3-ubyte.gz":
        ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    "train-labels-idx1-ubyte.gz":
        ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    "t10k-images-idx3-ubyte.gz":
        ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    "t10k-labels-idx1-ubyte.gz":
        ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def candidate_dirs():
    """Folders searched, in order."""
    return [os.path.join(r, SUBDIR) for r in _download.search_roots()] + list(SYSTEM_DIRS)


def load_data():
    """Fashion-MNIST as `(x_train, y_train), (x_test, y_test)`, uint8, like Keras."""
    for folder in candidate_dirs():
        paths = _idx.find(folder)
        if paths:
            return _idx.load(paths)
    dest = os.path.join(_download.download_root(), SUBDIR)
    where = ("put them in " + " or ".join(repr(d) for d in candidate_dirs()[:2])
             + " (or install Debian's dataset-fashion-mnist package)")
    _download.fetch(FILES, URLS, dest, "Fashion-MNIST", where)
    return _idx.load(_idx.find(dest))
