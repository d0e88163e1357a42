"""Each export format, read back by the library its users read it with (offline): the same rows
and pixels in every format, "007" kept as a string, and a dataset card the Hub loader follows."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile

# The Hugging Face libraries read these when imported: never reach for the network.
os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image

from numgen import export
from numgen.export import formats
from numgen.models import VAEConfig, build_model

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
wds = pytest.importorskip("webdataset")

SPLIT = {"train": 0.75, "test": 0.25}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """One export of 24 three-digit numbers of 0s and 7s in each format, 3 shards, 2 splits."""
    torch.manual_seed(0)
    cvae = build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()
    root = tmp_path_factory.mktemp("formats")
    for fmt in export.FORMATS:
        config = export.ExportConfig(count=24, min_length=3, max_length=3, alphabet="07", seed=5,
                                     format=fmt, shard_size=10, split=SPLIT)  # fmt: skip
        export.export_dataset(root / fmt, config, cvae, workers=1)
    return {fmt: root / fmt for fmt in export.FORMATS}


@pytest.fixture(scope="module")
def truth(exports) -> dict[int, tuple[dict, np.ndarray]]:
    """Index -> (metadata, pixels), from the png format's labels.csv and files."""
    with open(exports["png"] / export.LABELS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        meta = {c: row[c] for c in formats.COLUMNS}
        for c in ("index", "length", "style_seed", "width", "height"):
            meta[c] = int(meta[c])
        meta["boxes"] = json.loads(meta["boxes"])
        out[meta["index"]] = (meta, np.asarray(Image.open(exports["png"] / row["file"])))
    assert len(out) == 24 and any(m["text"].startswith("0") for m, _ in out.values())
    return out


def check(
    rows: list[tuple[dict, Image.Image | bytes]], truth: dict, split: str | None = None
) -> None:
    """``rows`` (metadata, picture) are exactly the truth's rows of ``split`` (all if None)."""
    expected = {i for i, (m, _) in truth.items() if split in (None, m["split"])}
    assert sorted(int(m["index"]) for m, _ in rows) == sorted(expected)
    for meta, picture in rows:
        want, pixels = truth[int(meta["index"])]
        assert {c: meta[c] for c in formats.COLUMNS} == want  # text "007" stays "007"
        assert isinstance(meta["text"], str)
        if isinstance(picture, bytes):
            picture = Image.open(io.BytesIO(picture))
        np.testing.assert_array_equal(np.asarray(picture), pixels)


def load(path, name: str | None = None, **kwargs):
    """datasets.load_dataset from local files, caching under the dataset's folder."""
    cache = str(path.parent / f"cache-{path.name}-{name}")
    return datasets.load_dataset(*([name] if name else []), **kwargs, cache_dir=cache) if name \
        else datasets.load_dataset(str(path), cache_dir=cache)  # fmt: skip


def test_splits_are_deterministic_by_index(truth) -> None:
    assert {m["split"] for m, _ in truth.values()} == set(SPLIT)
    assert abs(sum(m["split"] == "test" for m, _ in truth.values()) - 6) <= 1  # 24 * 0.25


def test_webdataset_shards_read_with_tarfile_webdataset_and_datasets(exports, truth) -> None:
    out = exports["webdataset"]
    for split in SPLIT:
        tars = sorted((out / split).glob("shard-*.tar"))
        assert [t.name for t in tars] == [
            "shard-000000.tar",
            "shard-000001.tar",
            "shard-000002.tar",
        ]
        rows = []
        for path in tars:
            with tarfile.open(path) as tar:
                files = {m.name: tar.extractfile(m).read() for m in tar}
            keys = sorted({name.split(".")[0] for name in files})
            rows += [(json.loads(files[f"{k}.json"]), files[f"{k}.png"]) for k in keys]
        check(rows, truth, split)
        samples = wds.WebDataset([str(t) for t in tars], shardshuffle=False).decode("pill")
        check([(s["json"], s["png"]) for s in samples], truth, split)
    by_builder = load(
        out, "webdataset", data_files={"test": str(out / "test" / "*.tar")}, split="test"
    )
    check([(r["json"], r["png"]) for r in by_builder], truth, "test")
    card = load(out)  # the dataset card's configs, features and splits
    assert card["train"].num_rows + card["test"].num_rows == 24
    check([(r["json"], r["png"]) for r in card["train"]], truth, "train")


def test_parquet_shards_read_with_pyarrow_and_datasets(exports, truth) -> None:
    out = exports["parquet"]
    files = sorted(p.name for p in (out / "data").glob("*.parquet"))
    assert files == [f"{s}-{k:05d}-of-00003.parquet" for s in ("test", "train") for k in range(3)]
    table = pq.read_table(sorted((out / "data").glob("train-*.parquet")))
    assert table.schema.field("text").type == "string"
    check([(r, r["image"]["bytes"]) for r in table.to_pylist()], truth, "train")
    by_builder = load(out, "parquet", data_dir=str(out / "data"))
    check([(r, r["image"]) for r in by_builder["test"]], truth, "test")
    card = load(out)
    assert card["test"].features["text"].dtype == "string"
    check([(r, r["image"]) for r in card["train"]], truth, "train")


def test_imagefolder_reads_with_the_imagefolder_builder(exports, truth) -> None:
    out = exports["imagefolder"]
    by_builder = load(out, "imagefolder", data_dir=str(out))
    assert set(by_builder) == set(SPLIT)
    for split in SPLIT:
        check([(r, r["image"]) for r in by_builder[split]], truth, split)
    card = load(out)
    check([(r, r["image"]) for r in card["test"]], truth, "test")


def test_every_format_has_a_dataset_card(exports, truth) -> None:
    tests = sum(m["split"] == "test" for m, _ in truth.values())
    for fmt, out in exports.items():
        card = (out / "README.md").read_text()
        head = card.split("---")[1]
        assert "configs:" in head and f"num_examples: {24 - tests}" in head
        assert f"num_examples: {tests}" in head
        assert f"--format={fmt}" in card and "| digit |" in card and "| length | 3 |" in card
        assert Image.open(out / "sample_rows.png").mode == "RGB"


def test_tar_headers_are_the_standard_librarys(tmp_path) -> None:
    ours = formats.tar_member("000001.png", b"abc") + formats.tar_member("000001.json", b"{}" * 300)
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("000001.png", b"abc"), ("000001.json", b"{}" * 300)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    assert ours == reference.getvalue()[: len(ours)]
