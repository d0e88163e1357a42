"""Dataset export: files match labels, seeds fix the bytes, refusals, interrupted and resumed runs."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from numgen import export
from numgen.cli import main
from numgen.compose import ComposeError
from numgen.hub import save_pretrained
from numgen.models import VAEConfig, build_model


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()


def run(cvae, out, workers=1, overwrite=False, resume=False, **options) -> dict:
    config = export.ExportConfig(**{"count": 40, "seed": 1, **options})
    return export.export_dataset(out, config, cvae, workers, overwrite, resume)


def read_labels(out) -> list[tuple[str, str]]:
    with open(out / export.LABELS_FILE, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "text"]
    return [tuple(row) for row in rows[1:]]


def folder_bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / export.IMAGES_DIR).iterdir())}


def test_labels_match_the_files_written(cvae, tmp_path) -> None:
    summary = run(cvae, tmp_path, count=30, min_length=3, max_length=8, alphabet="147")
    rows = read_labels(tmp_path)
    assert [f for f, _ in rows] == [f"images/{name}" for name in folder_bytes(tmp_path)]
    assert summary["images"] == summary["decoded"] == 30
    assert summary["digits"] == sum(len(t) for _, t in rows)
    for file, text in rows:
        assert 3 <= len(text) <= 8 and set(text) <= set("147")
        image = Image.open(tmp_path / file)
        assert image.mode == "L" and image.height == 28
    lengths = {len(t) for _, t in rows}
    assert len(lengths) > 3  # the range is used, not only its ends


def test_png_bytes_round_trip_through_pillow() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (28, 117), dtype=np.uint8)
    image = Image.open(io.BytesIO(export.png_bytes(pixels)))
    assert image.format == "PNG" and image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_the_plan_of_an_image_depends_on_seed_and_index_only() -> None:
    small, large = export.ExportConfig(count=5, seed=3), export.ExportConfig(count=5000, seed=3)
    a, b = export.plan(small, 4, 8, 0.6), export.plan(large, 4, 8, 0.6)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[3], b[3])  # the per-digit seeds
    assert len(a[3]) == len(a[0])
    assert export.plan(small, 4, 8, 0.6)[0] != export.plan(small, 3, 8, 0.6)[0]


def test_same_seed_same_bytes_whatever_the_workers(cvae, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export, "POOL_MIN_IMAGES", 0)  # a pool even for this small export
    count = export.CHUNK + 7  # two chunks, so two workers each take one
    run(cvae, tmp_path / "one", count=count)
    run(cvae, tmp_path / "two", workers=2, count=count)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert read_labels(tmp_path / "one") == read_labels(tmp_path / "two")
    run(cvae, tmp_path / "other", count=count, seed=2)
    assert read_labels(tmp_path / "other") != read_labels(tmp_path / "one")


def test_a_non_empty_folder_needs_overwrite(cvae, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ComposeError, match="is not empty"):
        run(cvae, tmp_path)
    run(cvae, tmp_path, count=5, overwrite=True)
    run(cvae, tmp_path, count=3, overwrite=True)  # the 5 images of the run before are gone
    assert len(folder_bytes(tmp_path)) == len(read_labels(tmp_path)) == 3
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the export's own files go


def test_an_interrupted_export_leaves_no_partial_file_and_resumes(cvae, tmp_path) -> None:
    config = export.ExportConfig(count=2 * export.CHUNK + 5, seed=4)
    full = tmp_path / "full"
    export.export_dataset(full, config, cvae, workers=1)

    def stop_after_first_chunk(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        export.export_dataset(cut, config, cvae, workers=1, on_progress=stop_after_first_chunk)
    assert not (cut / export.LABELS_FILE).exists()
    assert len(folder_bytes(cut)) == export.CHUNK  # whole files only, no temporary ones
    (cut / export.IMAGES_DIR / ".000003.png.x.tmp").write_bytes(b"half")  # as a crash leaves
    with pytest.raises(ComposeError, match="other options"):
        export.export_dataset(cut, export.ExportConfig(count=10, seed=4), cvae, resume=True)
    summary = export.export_dataset(cut, config, cvae, workers=1, resume=True)
    assert summary["decoded"] == config.count - export.CHUNK  # the first chunk was on disk
    assert folder_bytes(cut) == folder_bytes(full)
    assert read_labels(cut) == read_labels(full)
    (cut / export.IMAGES_DIR / "000100.png").unlink()  # one file lost: its chunk is made again
    assert export.export_dataset(cut, config, cvae, workers=1, resume=True)["decoded"] == 256
    assert folder_bytes(cut) == folder_bytes(full)


def test_resume_needs_an_earlier_export(cvae, tmp_path) -> None:
    with pytest.raises(ComposeError, match="nothing to resume"):
        run(cvae, tmp_path, resume=True)


@pytest.mark.parametrize(
    ("length", "expected"), [("4", (4, 4)), ("3-8", (3, 8)), ("1", (1, 1))]
)  # fmt: skip
def test_parse_length(length: str, expected: tuple[int, int]) -> None:
    assert export.parse_length(length) == expected


@pytest.mark.parametrize("length", ["", "a", "3-", "8-3", "0", "65", "2-x"])
def test_bad_lengths_are_refused(length: str) -> None:
    with pytest.raises(ComposeError, match="length"):
        export.parse_length(length)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"count": 0}, "count=0"), ({"alphabet": "12a"}, "alphabet"), ({"alphabet": ""}, "alphabet"),
     ({"ink": "red"}, "ink"), ({"height": 4}, "height"), ({"min_length": 5, "max_length": 2}, "5-2")],
)  # fmt: skip
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        export.ExportConfig(**{"count": 10, **options})


def test_dataset_command(cvae, tmp_path, capsys) -> None:
    model_dir = save_pretrained(cvae, tmp_path / "model")
    out = tmp_path / "data"
    args = ["dataset", "--count", "12", "--length", "1", "--alphabet", "7", "--seed", "3",
            "--model", str(model_dir), "--out", str(out), "--workers", "1"]  # fmt: skip
    assert main(args) == 0
    assert "12 images (12 digits)" in capsys.readouterr().out
    assert [t for _, t in read_labels(out)] == ["7"] * 12
    assert main(args) == 2  # the folder is no longer empty
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    at = args.index("--length") + 1
    bad_length = [*args[:at], "3-x", *args[at + 1 :]]  # --length 3-x in place of --length 1
    assert main(bad_length) == 2
    assert capsys.readouterr().err.strip() == (
        "Error: length '3-x': give a number of digits (4) or a range (3-8)"
    )
