"""Where data sets are looked for, and verified downloads of missing files.

Search roots, in order: `$ACCELNET_DATA`, `~/.accelnet/datasets`, then Keras's cache
`~/.keras/datasets` (read only). Downloads go to the first root (`$ACCELNET_DATA` when
set). A download streams into a temporary file via `fileio.atomic_write` and is renamed
in place only after its SHA-256 matches, so a failed or forged download leaves nothing.
"""
import hashlib
import os

from .. import fileio
from ..errors import DataFileError, DataNotFoundError

TIMEOUT_S = 60
_CHUNK = 1 << 20


def _urlopen(url, timeout):
    """The one place that touches the network (tests monkeypatch it)."""
    import urllib.request  # lazy: ~20 ms of http/ssl imports most sessions never need
    return urllib.request.urlopen(url, timeout=timeout)


def search_roots():
    """Folders searched for data sets, most specific first."""
    roots = []
    if os.environ.get("ACCELNET_DATA"):
        roots.append(os.path.expanduser(os.environ["ACCELNET_DATA"]))
    roots += [os.path.expanduser(os.path.join("~", ".accelnet", "datasets")),
              os.path.expanduser(os.path.join("~", ".keras", "datasets"))]
    return roots


def download_root():
    """The folder downloads go to: `$ACCELNET_DATA`, else `~/.accelnet/datasets`."""
    return search_roots()[0]


def _fetch_one(url, dest, sha256, size):
    """Stream `url` to `dest` atomically; DataFileError (and no file) on a hash mismatch."""
    from tqdm import tqdm

    name = os.path.basename(dest)
    with _urlopen(url, timeout=TIMEOUT_S) as resp, fileio.atomic_write(dest, "wb") as out:
        total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        digest, got = hashlib.sha256(), 0
        with tqdm(total=int(total) if total else size, unit="B", unit_scale=True,
                  desc=f"Downloading {name}", disable=None, leave=False) as bar:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if size is not None and got > size:
                    break  # longer than the official file: cannot match, stop reading
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        longer = size is not None and got > size
        if longer or digest.hexdigest() != sha256:
            actual = f"more than {size} bytes" if longer else (
                f"SHA-256 {digest.hexdigest()} ({got} bytes)")
            raise DataFileError(
                f"Download of {name} from {url} failed its integrity check: expected SHA-256 "
                f"{sha256} ({size if size is not None else '?'} bytes), got {actual}. "
                f"Nothing was saved.")


def fetch(files, urls, dest_dir, dataset, where):
    """Download each missing `files[name] = (sha256, size)` from the first working mirror.

    `urls` are base URLs ending in '/' (or full URLs when there is one file). Raises
    DataFileError if a mirror served a file with the wrong hash and no mirror served
    the right one, and DataNotFoundError when no mirror can be reached; its message
    names the files and ends with `where`, e.g. "put them in '/data/fashion-mnist'".
    """
    for name, (sha256, size) in files.items():
        dest = os.path.join(dest_dir, name)
        if os.path.isfile(dest):
            continue
        errors, mismatch = [], None
        for base in urls:
            url = base + name if base.endswith("/") else base
            try:
                _fetch_one(url, dest, sha256, size)
                break
            except DataFileError as exc:
                mismatch = exc
            except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, no space
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
        else:
            if mismatch is not None:
                raise mismatch
            raise DataNotFoundError(
                f"{dataset} is not on disk and could not be downloaded "
                f"({'; '.join(errors)}). Download {', '.join(files)} yourself (from "
                f"{urls[0]}) and {where}.")
