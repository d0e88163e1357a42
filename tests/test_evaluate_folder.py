"""`numgen evaluate --images`: every dataset layout, the reading path, the floor, the JSON keys
and one-line errors for broken folders. Small folders, the embedded digits as MNIST."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numgen import compose
from numgen.cli.main import main
from numgen.data import load_digits
from numgen.evaluate_folder import cut, evaluate_folder
from numgen.export import export_dataset
from numgen.export.recipe import ExportConfig
from numgen.folders import FolderError, read_folder
from numgen.hub import load

EMBEDDED = {"dataset": "embedded"}
# tens of digits in 128-d features: the covariances are singular, and scipy says so
pytestmark = pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")


@pytest.fixture(scope="module")
def cvae():
    return load("cvae")


@pytest.fixture(scope="module", params=["webdataset", "parquet", "imagefolder", "png"])
def export(request, cvae, tmp_path_factory) -> tuple[str, Path]:
    """A small numgen export (numbers of 1-3 digits, two splits) in each format."""
    out = tmp_path_factory.mktemp(request.param) / "data"
    config = ExportConfig(
        count=24, min_length=1, max_length=3, format=request.param, shard_size=10,
        split={"train": 0.5, "test": 0.5},
    )  # fmt: skip
    export_dataset(out, config, cvae, workers=1)
    return request.param, out


def class_folders(root: Path, count: int = 60, dark: bool = False) -> Path:
    """Per-class subfolders of real digits, as another tool writes them: 0/*.png ... 9/*.png,
    each digit enlarged to 40×40 (and dark ink on white paper with ``dark``)."""
    test = load_digits("embedded", "test")  # the digits 0-9 in turn, 100 of each
    for i in range(count):
        pixels = 255 - test.images[i] if dark else test.images[i]
        folder = root / str(test.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).resize((40, 40)).save(folder / f"img{i}.png")
    return root


def test_every_numgen_layout_is_read_with_its_labels_and_boxes(export) -> None:
    fmt, out = export
    layout, samples = read_folder(out)
    assert layout == fmt and len(samples) == 24
    assert all(s.text.isdigit() and 1 <= len(s.text) <= 3 for s in samples)
    assert all(s.boxes is not None and len(s.boxes) == len(s.text) for s in samples)


def test_a_numgen_export_is_cut_at_its_boxes_and_read_back(export) -> None:
    fmt, out = export
    f = evaluate_folder(out, **EMBEDDED)
    assert f["layout"] == fmt and f["images"] == 24 and f["paths"] == {"boxes": 24}
    assert f["digits"] == sum(len(s.text) for s in read_folder(out)[1])
    assert f["recognised"] > 0.9 and f["recognised_second"] > 0.9  # the cvae is very legible
    assert 0.5 < f["numbers_read_back"] <= 1
    assert f["frechet"] > 0 and f["frechet_floor"] > 0


@pytest.mark.parametrize("kind", ["date", "phone"])
def test_dates_and_phone_numbers_are_read_at_their_digit_boxes(
    kind: str, cvae, tmp_path: Path
) -> None:
    """A row of `numgen dataset --kind date/phone` has a box per character other than a space:
    its digits are read at their own boxes, the dots, dashes and brackets left out."""
    out = tmp_path / kind
    export_dataset(out, ExportConfig(count=12, kind=kind, format="png"), cvae, workers=1)
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    _, samples = read_folder(out)
    assert len(samples) == 12
    for row, sample in zip(rows, samples, strict=True):
        boxes = [tuple(b) for b in json.loads(row["boxes"])]
        chars = [c for c in row["text"] if not c.isspace()]
        assert sample.text == "".join(c for c in chars if c.isdigit()) != row["text"]
        assert list(sample.boxes) == [b for c, b in zip(chars, boxes, strict=True) if c.isdigit()]
    f = evaluate_folder(out, **EMBEDDED)
    assert f["paths"] == {"boxes": 12} and f["digits"] == sum(len(s.text) for s in samples)
    assert f["recognised"] > 0.9  # each box holds the digit it names


def test_a_text_with_other_characters_needs_a_box_for_each(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    Image.new("L", (40, 28)).save(folder / "images" / "a.png")
    (folder / "labels.csv").write_text(
        'file,text,boxes\nimages/a.png,1-2,"[[0,0,5,28],[6,0,9,28]]"\n'
    )
    with pytest.raises(FolderError, match=r"2 boxes for the 3 characters of '1-2'"):
        read_folder(folder)
    (folder / "labels.csv").write_text("file,text\nimages/a.png,1-2\n")  # no boxes to find them
    with pytest.raises(FolderError, match="the label '1-2' is not a string of digits"):
        read_folder(folder)


def test_a_per_class_folder_made_by_another_tool(tmp_path: Path) -> None:
    """Real digits, 40×40 and dark on white: not 28×28, so framed whole as MNIST frames them."""
    folder = class_folders(tmp_path / "classes", dark=True)
    f = evaluate_folder(folder, **EMBEDDED)
    assert f["layout"] == "classes" and f["images"] == f["digits"] == 60
    assert f["paths"] == {"framed": 60} and f["numbers_read_back"] is None
    assert f["recognised"] >= 0.95 and f["recognised_second"] >= 0.95


def test_real_28px_digits_are_read_directly_and_match_the_reference(tmp_path: Path) -> None:
    """MNIST's own test digits as an ImageFolder with metadata.csv: measured directly, they are
    the reference itself (Fréchet ~0, under the floor of other real digits)."""
    test = load_digits("embedded", "test")
    (tmp_path / "images").mkdir()
    with open(tmp_path / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label"])
        for i, (image, label) in enumerate(zip(test.images, test.labels, strict=True)):
            Image.fromarray(image).save(tmp_path / "images" / f"{i}.png")
            writer.writerow([f"images/{i}.png", label])
    f = evaluate_folder(tmp_path, **EMBEDDED)
    assert f["layout"] == "imagefolder" and f["paths"] == {"direct": 1000}
    assert f["frechet"] < 1e-3 < f["frechet_floor"] and f["recognised"] > 0.97


def test_a_direct_digit_keeps_its_pixels_in_either_ink() -> None:
    digit = load_digits("embedded", "test").images[0]
    light = cut(Image.fromarray(digit), "7", None)
    dark = cut(Image.fromarray(255 - digit), "7", None)
    np.testing.assert_allclose(light[0], digit / 255, atol=1e-6)
    np.testing.assert_allclose(dark[0], digit / 255, atol=1e-6)


def test_numbers_without_boxes_are_segmented() -> None:
    """Without boxes a number is cut at its blank columns, so its digits are written apart."""
    model = load("cvae")
    image = compose.write(model, "305", style_seed=1, seed=1, touching=0)
    assert cut(image, "305", None).shape == (3, 28, 28)


def test_cli_json_has_the_promised_keys_with_tstr(tmp_path: Path, capsys) -> None:
    folder = class_folders(tmp_path / "classes", count=40)
    args = ["evaluate", "--images", str(folder), "--json", "--tstr", "40", "--dataset", "embedded"]
    assert main(args) == 0
    figures = json.loads(capsys.readouterr().out)
    keys = {"recognised", "frechet", "frechet_floor", "precision", "recall", "tstr", "tstr_real"}
    assert keys <= set(figures) and figures["tstr_digits"] == 40
    assert all(0 <= figures[k] <= 1 for k in ("recognised", "precision", "recall", "tstr"))


def test_cli_prints_the_figures(tmp_path: Path, capsys) -> None:
    folder = class_folders(tmp_path / "classes", count=20)
    assert main(["evaluate", "--images", str(folder), "--dataset", "embedded"]) == 0
    out = capsys.readouterr().out
    assert "classes layout, 20 images" in out and "floor" in out and "second judge" in out


def _corrupt_png(folder: Path) -> str:
    victim = sorted((folder / "3").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated file
    return str(victim.relative_to(folder))


def _unlisted_image(folder: Path) -> str:
    """A png export with one image that labels.csv does not name."""
    Image.new("L", (28, 28)).save(folder / "images" / "extra.png")
    return "images/extra.png"


def _blank_label(folder: Path) -> str:
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[1]["text"] = ""
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows[1]["file"]


def _tar_without_json(folder: Path) -> str:
    shard = folder / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            if member.name != "000001.json":
                tar.addfile(member, io.BytesIO(data))
    return "shard-000000.tar:000001.png"


@pytest.mark.parametrize(
    ("make", "breakage", "message"),
    [
        ("classes", _corrupt_png, "a damaged PNG file"),
        ("png", _unlisted_image, "an image without a label"),
        ("png", _blank_label, "no label"),
        ("webdataset", _tar_without_json, "an image without a label"),
    ],
)
def test_a_broken_folder_is_one_line_naming_the_file_and_exit_2(
    make: str, breakage, message: str, cvae, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "data"
    if make == "classes":
        class_folders(folder, count=20)
    else:
        export_dataset(
            folder, ExportConfig(count=6, min_length=1, max_length=2, format=make), cvae, workers=1
        )
    name = breakage(folder)
    assert main(["evaluate", "--images", str(folder), "--dataset", "embedded"]) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_a_folder_without_a_dataset_and_no_model_are_named(tmp_path: Path, capsys) -> None:
    with pytest.raises(FolderError, match="no dataset found"):
        read_folder(tmp_path)
    assert main(["evaluate", "--dataset", "embedded"]) == 2
    assert "give a MODEL or --images" in capsys.readouterr().err
