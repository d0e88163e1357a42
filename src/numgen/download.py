"""Fetching MNIST: the four IDX files from public mirrors into a cache, each kept only once its
MD5 is the canonical one. Reading them is :mod:`numgen.data`'s job; this module imports no other
of numgen's but its errors."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from numgen.errors import DataError

DATA_DIR_ENV = "NUMGEN_DATA_DIR"  # a folder that holds MNIST, read instead of the download cache
# Canonical MD5s of the .gz files (the ones torchvision checks).
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def md5_of(path: Path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "NUMGEN_CACHE_DIR"

# Tried in turn; each serves the four .gz files under these prefixes.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

Progress = Callable[[str, int, int | None], None]  # (file name, bytes done, bytes total or None)


class _BadDownload(Exception):
    """A mirror answered, but not with the whole, right file."""


def default_cache_dir() -> Path:
    """Where downloads go: ``$NUMGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/numgen/mnist``, else
    ``~/.cache/numgen/mnist``."""
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "numgen" / "mnist"


def missing_files(directory: Path, md5: Mapping[str, str]) -> list[str]:
    """The files named in ``md5`` that are absent from ``directory`` or have another MD5."""
    return [
        name
        for name, digest in md5.items()
        if not ((directory / name).is_file() and md5_of(directory / name) == digest)
    ]


def missing_error(
    directory: Path, md5: Mapping[str, str], missing: list[str], attempts: list[str]
) -> DataError:
    tried = "".join(f"\n  {attempt}" for attempt in attempts)
    tried = f"Tried:{tried}" if tried else "Nothing was downloaded."
    return DataError(
        f"MNIST files missing from {directory}: {', '.join(missing)}. {tried}\n"
        f"Put the files {', '.join(md5)} in {directory}, or pass --data-dir / set {DATA_DIR_ENV} "
        "to a folder that holds them."
    )


def _reason(err: Exception) -> str:
    """A few words on why a mirror failed."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):  # could not connect; the cause is inside
        return str(err.reason)
    return str(err) or type(err).__name__


def _fetch(url: str, target: Path, md5: str, timeout: float, progress: Progress | None) -> None:
    """Stream ``url`` into a temporary file beside ``target`` and move it onto ``target`` only
    once its MD5 is ``md5``, so a failed download never leaves a file that looks finished."""
    fd, part = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest, done = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.length  # Content-Length, None if the server did not send one
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(target.name, done, total)
        # http.client ends a body short instead of raising when the server hangs up early.
        if total is not None and done < total:
            raise _BadDownload(f"connection dropped after {done:,} of {total:,} bytes")
        if digest.hexdigest() != md5:
            raise _BadDownload(f"wrong MD5 {digest.hexdigest()}")
        os.replace(part, target)
    finally:
        Path(part).unlink(missing_ok=True)


def download_mnist(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = 30.0,
    progress: Progress | None = None,
    md5: Mapping[str, str] = MD5,
) -> Path:
    """Make ``cache_dir`` (default :func:`default_cache_dir`) hold the MNIST files; return it.

    ``md5`` maps each file name to its expected MD5 (tests pass their own). A file already there
    with that MD5 is kept; any other is fetched from each mirror in turn until one gives the right
    bytes. A wrong MD5, an HTTP error, a timeout or a dropped connection moves on to the next
    mirror; one that cannot be reached at all is not tried again for the next files. Raises
    :class:`DataError` listing the missing files and every URL tried for them, and why.
    ``progress(file name, bytes done, bytes total or None)`` is called as bytes arrive.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"{directory}: cannot create the MNIST cache ({err.strerror}); set {CACHE_DIR_ENV} "
            "to a writable folder"
        ) from None
    missing, attempts = [], []  # the files no mirror gave, and each failed try at them
    unreachable = set()  # mirrors we could not connect to; offline, each would cost a timeout
    for name in missing_files(directory, md5):
        tries = []
        for mirror in mirrors:
            if mirror in unreachable:
                continue
            url = mirror.rstrip("/") + "/" + name
            logger.info("downloading %s", url)
            try:
                _fetch(url, directory / name, md5[name], timeout, progress)
                break
            except (OSError, http.client.HTTPException, _BadDownload) as err:
                logger.warning("%s failed: %s", url, _reason(err))
                tries.append(f"{url}: {_reason(err)}")
                if isinstance(err, urllib.error.URLError) and not isinstance(
                    err, urllib.error.HTTPError
                ):
                    unreachable.add(mirror)
        else:
            missing.append(name)
            attempts += tries
    if missing:
        raise missing_error(directory, md5, missing, attempts)
    return directory
