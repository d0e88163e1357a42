"""Dataset export: rows match their pictures, seeds fix the bytes for any workers or shard jobs,
interrupted and resumed runs, refusals."""

from __future__ import annotations

import csv
import errno
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from boxes import check_boxes
from numgen import compose, export, legibility
from numgen.cli.main import main
from numgen.compose import ComposeError
from numgen.export import formats, recipe
from numgen.files import atomic_write
from numgen.hub import save_pretrained
from numgen.layout import Layout
from numgen.models import VAEConfig, build_model


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()


def config(**options) -> export.ExportConfig:
    return export.ExportConfig(**{"count": 40, "seed": 1, "format": "png", **options})


def read_labels(out) -> list[dict]:
    with open(out / export.LABELS_FILE, newline="") as f:
        return list(csv.DictReader(f))


def tree(out) -> dict[str, bytes]:
    """Every file under ``out`` by its relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_every_row_matches_its_picture(cvae, tmp_path) -> None:
    options = {"count": 30, "min_length": 3, "max_length": 8, "alphabet": "147"}
    summary = export.export_dataset(tmp_path, config(**options), cvae, workers=1)
    rows = read_labels(tmp_path)
    assert summary["images"] == summary["decoded"] == len(rows) == 30 and summary["complete"]
    assert summary["digits"] == sum(len(r["text"]) for r in rows)
    assert len({len(r["text"]) for r in rows}) > 3  # the range is used, not only its ends
    for row in rows:
        text, boxes = row["text"], json.loads(row["boxes"])
        assert 3 <= len(text) <= 8 and set(text) <= set("147") and int(row["length"]) == len(text)
        pixels = np.asarray(Image.open(tmp_path / row["file"]))
        assert pixels.shape == (int(row["height"]), int(row["width"])) == (28, pixels.shape[1])
        assert len(boxes) == len(text)
        check_boxes(pixels, boxes)


def test_pixels_are_composes_and_the_style_seed_draws_the_style(cvae) -> None:
    cfg = config(min_length=2, max_length=5)
    batch = recipe.plan(cfg, range(10, 16))
    rows = export.render_rows(cvae, cfg, batch)
    ends = np.cumsum([len(t) for t in batch.texts])
    for i, (png, meta) in enumerate(rows):
        digits = slice(ends[i] - len(batch.texts[i]), ends[i])
        layout = Layout(batch.scales[digits], batch.rises[digits], batch.gaps[digits][1:])
        style = compose.style_latent(cvae, meta["style_seed"])
        [(canvas, _)] = compose.render(
            cvae, [meta["text"]], legibility.given(style[None]), [layout], batch.seeds[digits]
        )
        picture = np.asarray(Image.open(io.BytesIO(png)))
        np.testing.assert_array_equal(picture, compose.to_pixels(canvas))


def test_a_plan_depends_on_seed_and_index_only() -> None:
    whole = recipe.plan(config(count=100, max_length=6), range(0, 20))
    part = recipe.plan(config(count=5000, max_length=6), range(7, 9))
    assert part.texts == whole.texts[7:9]
    assert part.style_seeds.tolist() == whole.style_seeds[7:9].tolist()
    other = recipe.plan(config(count=100, max_length=6, seed=2), range(0, 20))
    assert other.texts != whole.texts


def test_leading_zeros_stay_in_the_text(cvae, tmp_path) -> None:
    export.export_dataset(
        tmp_path, config(count=40, min_length=3, max_length=3, alphabet="07"), cvae, 1
    )
    texts = [r["text"] for r in read_labels(tmp_path)]
    assert "007" in texts or any(t.startswith("0") for t in texts)
    assert all(len(t) == 3 for t in texts)


def test_splits_follow_their_shares() -> None:
    cfg = config(count=1000, split=export.parse_split("train=0.9,test=0.1"))
    names = [recipe.split_of(cfg, i) for i in range(1000)]
    assert abs(names.count("test") - 100) <= 2 and abs(names.count("train") - 900) <= 2
    assert names[:50] != ["train"] * 50  # interleaved, not blocks


@pytest.mark.parametrize(
    "text", ["train=0.9,test=0.2", "train", "Train=1", "a=0.5,a=0.5", "a=x", ""]
)
def test_bad_splits_are_refused(text: str) -> None:
    with pytest.raises(ComposeError, match="split"):
        export.parse_split(text)


def test_same_bytes_whatever_the_workers_and_shard_jobs(cvae, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export.shards, "POOL_MIN_IMAGES", 0)  # a pool even for this small export
    cfg = config(count=50, shard_size=20, format="webdataset", split={"train": 0.8, "test": 0.2})
    export.export_dataset(tmp_path / "one", cfg, cvae, workers=1)
    export.export_dataset(tmp_path / "two", cfg, cvae, workers=2)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    jobs = tmp_path / "jobs"
    first = export.export_dataset(jobs, cfg, cvae, workers=1, num_shards=2, shard_index=1)
    assert first["shards"] == 1 and not first["complete"] and not (jobs / "README.md").exists()
    export.export_dataset(jobs, cfg, cvae, workers=1, num_shards=2, shard_index=0)
    assert tree(jobs) == tree(tmp_path / "one")
    other = tmp_path / "other"
    export.export_dataset(
        other, config(count=50, shard_size=20, format="webdataset", seed=2), cvae, 1
    )
    assert tree(other)["shard-000000.tar"] != tree(tmp_path / "one")["train/shard-000000.tar"]


def test_an_interrupted_export_leaves_whole_shards_and_resumes(cvae, tmp_path) -> None:
    cfg = config(count=45, shard_size=20, format="parquet")
    full = tmp_path / "full"
    export.export_dataset(full, cfg, cvae, workers=1)

    def stop_after_first_shard(done: int, total: int) -> None:
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        export.export_dataset(cut, cfg, cvae, workers=1, on_progress=stop_after_first_shard)
    assert sorted(tree(cut)) == [".numgen/shard-000000.json", "data/train-00000-of-00003.parquet",
                                 "export.json"]  # fmt: skip
    (cut / "data" / ".train-00001-of-00003.parquet.x.tmp").write_bytes(b"half")  # as a kill leaves
    with pytest.raises(ComposeError, match="other options"):
        export.export_dataset(cut, config(count=10, format="parquet"), cvae, resume=True)
    summary = export.export_dataset(cut, cfg, cvae, workers=1, resume=True)
    assert summary["decoded"] == 25  # the first shard was done
    assert tree(cut) == tree(full)
    (cut / ".numgen" / "shard-000001.json").unlink()  # a shard not marked done is made again
    assert export.export_dataset(cut, cfg, cvae, workers=1, resume=True)["decoded"] == 20
    assert tree(cut) == tree(full)


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_shard(
    cvae, tmp_path, monkeypatch
) -> None:
    cfg = config(count=30, shard_size=10, format="webdataset")
    calls = []

    def fill_up(path, write) -> None:
        def write_then_fail(tmp) -> None:
            write(tmp)
            if len(calls) == 2:  # the second shard's tar
                raise OSError(errno.ENOSPC, "No space left on device")

        calls.append(path)
        atomic_write(path, write_then_fail)

    monkeypatch.setattr(formats, "atomic_write", fill_up)
    with pytest.raises(ComposeError, match=r"shard-000001\.tar: No space left on device.*--resume"):
        export.export_dataset(tmp_path, cfg, cvae, workers=1)
    assert sorted(tree(tmp_path)) == [
        ".numgen/shard-000000.json",
        "export.json",
        "shard-000000.tar",
    ]
    monkeypatch.undo()
    assert export.export_dataset(tmp_path, cfg, cvae, workers=1, resume=True)["decoded"] == 20


def test_refusals(cvae, tmp_path) -> None:
    with pytest.raises(ComposeError, match="nothing to resume"):
        export.export_dataset(tmp_path / "none", config(), cvae, resume=True)
    (tmp_path / "mine" / "notes.txt").parent.mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ComposeError, match="is not empty"):
        export.export_dataset(tmp_path / "mine", config(), cvae)
    export.export_dataset(tmp_path / "mine", config(count=5), cvae, overwrite=True)
    with pytest.raises(ComposeError, match="already holds a png export.*--resume.*--overwrite"):
        export.export_dataset(tmp_path / "mine", config(format="parquet"), cvae)
    export.export_dataset(
        tmp_path / "mine", config(count=3, format="webdataset"), cvae, overwrite=True
    )
    assert sorted(tree(tmp_path / "mine")) == [".numgen/shard-000000.json", "README.md",
        "export.json", "notes.txt", "sample_rows.png", "shard-000000.tar"]  # fmt: skip
    for options, message in [({"num_shards": 2}, "num_shards=2: this export has 1 shards"),
                             ({"workers": 0}, "workers=0"), ({"engine": "spark"}, "engine"),
                             ({"num_shards": 1, "shard_index": 1}, "shard_index=1")]:  # fmt: skip
        with pytest.raises(ComposeError, match=message):
            export.export_dataset(tmp_path / "x", config(), cvae, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"count": 0}, "count=0"), ({"alphabet": "12a"}, "alphabet"), ({"alphabet": ""}, "alphabet"),
     ({"ink": "red"}, "ink"), ({"height": 4}, "height"), ({"min_length": 5, "max_length": 2}, "5-2"),
     ({"format": "tiff"}, "format"), ({"shard_size": 0}, "shard_size"), ({"png_level": 10}, "png_level")],
)  # fmt: skip
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        export.ExportConfig(**{"count": 10, **options})


@pytest.mark.parametrize(("length", "expected"), [("4", (4, 4)), ("3-8", (3, 8)), ("1", (1, 1))])
def test_parse_length(length: str, expected: tuple[int, int]) -> None:
    assert export.parse_length(length) == expected


@pytest.mark.parametrize("length", ["", "a", "3-", "8-3", "0", "65", "2-x"])
def test_bad_lengths_are_refused(length: str) -> None:
    with pytest.raises(ComposeError, match="length"):
        export.parse_length(length)


def test_png_bytes_round_trip_through_pillow() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (28, 117), dtype=np.uint8)
    for level in (0, 1, 9):
        image = Image.open(
            io.BytesIO(export.png_bytes(export.render.with_filter_column(pixels), level))
        )
        assert image.format == "PNG" and image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_dataset_command(cvae, tmp_path, capsys) -> None:
    model_dir = save_pretrained(cvae, tmp_path / "model")
    out = tmp_path / "data"
    args = ["dataset", "--count", "12", "--length", "1", "--alphabet", "7", "--seed", "3",
            "--model", str(model_dir), "--out", str(out), "--format", "png"]  # fmt: skip
    assert main(args) == 0
    assert "12 images (12 digits)" in capsys.readouterr().out
    assert [r["text"] for r in read_labels(out)] == ["7"] * 12
    assert (
        "numgen dataset --count=12 --length=1 --alphabet=7 --seed=3"
        in (out / "README.md").read_text()
    )
    for extra, message in [([], "--overwrite"), (["--overwrite", "--split", "a=1,b=1"], "add up to 1"),
                           (["--overwrite", "--shard-index", "4"], "shard_index=4"),
                           (["--resume", "--format", "parquet"], "other options")]:  # fmt: skip
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    at = args.index("--length") + 1
    bad_length = [*args[:at], "3-x", *args[at + 1 :]]  # --length 3-x in place of --length 1
    assert main(bad_length) == 2
    assert capsys.readouterr().err.strip() == (
        "Error: length '3-x': give a number of digits (4) or a range (3-8)"
    )
