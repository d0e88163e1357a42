"""Texts by kind (dates, amounts, times, phones ...) and from files, exported in every format
with one box per character other than a space."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from boxes import check_boxes
from numgen import export, glyphs, patterns
from numgen.cli.main import main
from numgen.compose import ComposeError
from numgen.export import recipe
from numgen.generate import uniforms
from numgen.hub import save_pretrained

SHAPES = {  # what a text of each kind looks like
    "integer": r"\d{4}",
    "decimal": r"[-+]?(0|[1-9]\d{0,3})[.,]\d{1,3}",
    "amount": r"[-+]?[1-9]?\d{0,2}([ .,]?\d{3})*([.,]\d\d|,-)?",
    "date": r"\d{1,4}[./-]\d{1,2}[./-]\d{2,4}",
    "time": r"\d{1,2}[:.]\d\d(:\d\d)?",
    "phone": r"[-+() \d]{9,18}",
}


@pytest.fixture(scope="module")
def cvae(inked_cvae):
    return inked_cvae


@pytest.mark.parametrize("kind", list(patterns.KINDS))
def test_each_kind_draws_valid_texts_in_several_formats(kind: str) -> None:
    texts = patterns.texts(kind, uniforms(0, np.arange(2000), patterns.TEXT_SLOTS))
    assert all(re.fullmatch(SHAPES[kind], t) for t in texts), [
        t for t in texts if not re.fullmatch(SHAPES[kind], t)
    ][:5]
    assert all(set(t) <= set(glyphs.CHARACTERS) and any(c.isdigit() for c in t) for t in texts)
    layouts = {re.sub(r"\d", "#", t) for t in texts}
    assert len({re.sub("#+", "#", s) for s in layouts}) >= 3  # several formats, not one
    assert patterns.texts(kind, uniforms(0, np.arange(5), patterns.TEXT_SLOTS)) == texts[:5]


def test_dates_are_real_calendar_days() -> None:
    u = uniforms(3, np.arange(3000), patterns.TEXT_SLOTS)
    for text in patterns.texts("date", u):
        parts = [int(p) for p in re.split(r"[./-]", text)]
        if len(re.split(r"[./-]", text)[0]) == 4:  # YYYY-MM-DD
            year, month, day = parts
        elif "/" in text and parts[0] <= 12 and parts[1] > 12:  # MM/DD/YYYY
            month, day, year = parts
        else:
            day, month, year = parts
        if year < 100:
            continue  # a two-digit year: any century's day must exist, checked below for 4
        datetime.date(year, month, day)  # raises for 31.02.


def test_amounts_group_thousands_and_keep_two_decimals() -> None:
    texts = patterns.texts("amount", uniforms(1, np.arange(3000), patterns.TEXT_SLOTS))
    assert any(re.fullmatch(r"\d{1,3}( \d{3})+,\d\d", t) for t in texts)  # 1 234,56
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+\.\d\d", t) for t in texts)  # 1,234.56
    assert any(t.startswith("-") for t in texts) and any(t.endswith(",-") for t in texts)
    assert patterns.grouped("1234567", " ") == "1 234 567" and patterns.grouped("12", ".") == "12"


def rows_of(out, fmt: str) -> list[tuple[dict, np.ndarray]]:
    """Every row's metadata and pixels, read back from the files of ``fmt``."""
    if fmt == "png":
        with open(out / "labels.csv", newline="") as f:
            return [({**r, "boxes": json.loads(r["boxes"])}, np.asarray(Image.open(out / r["file"])))
                    for r in csv.DictReader(f)]  # fmt: skip
    if fmt == "imagefolder":
        lines = (out / "metadata.jsonl").read_text().splitlines()
        return [(m, np.asarray(Image.open(out / m["file_name"]))) for m in map(json.loads, lines)]
    if fmt == "parquet":
        table = pq.read_table(sorted((out / "data").glob("*.parquet")))
        return [
            (r, np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))) for r in table.to_pylist()
        ]
    rows = []
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for key in sorted({n.split(".")[0] for n in files}):
            picture = np.asarray(Image.open(io.BytesIO(files[f"{key}.png"])))
            rows.append((json.loads(files[f"{key}.json"]), picture))
    return rows


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("kind", export.KINDS)
def test_every_kind_exports_with_one_box_per_character_but_spaces(
    cvae, tmp_path, kind, fmt
) -> None:
    config = export.ExportConfig(count=12, kind=kind, format=fmt, seed=2, shard_size=5)
    export.export_dataset(tmp_path, config, cvae, workers=1)
    rows = rows_of(tmp_path, fmt)
    assert len(rows) == 12
    assert [m["text"] for m, _ in sorted(rows, key=lambda r: int(r[0]["index"]))] == recipe.plan(
        config, range(12)
    ).texts
    for meta, pixels in rows:
        text, boxes = meta["text"], meta["boxes"]
        assert re.fullmatch(SHAPES[kind], text) and int(meta["length"]) == len(text)
        assert len(boxes) == len(text.replace(" ", ""))  # in text order, left to right
        check_boxes(pixels, boxes)
    card = (tmp_path / "README.md").read_text()
    assert "numgen writes digits 0-9, . , - + / : ( ) and space" in card
    assert '`date` ("02.12.2026")' in card and "| digit |" in card
    if kind != "integer":
        assert f"--kind={kind}" in card and "| character |" in card


def test_an_export_of_digit_strings_records_the_options_it_did_before(tmp_path) -> None:
    assert set(export.ExportConfig(count=3).to_dict()) == {
        "count", "min_length", "max_length", "alphabet", "seed", "height", "ink", "model",
        "format", "shard_size", "split", "png_level", "ode_steps", "guidance", "check",
        "touching",  # issue 20's layout: always recorded, as it changed every row's bytes
    }  # fmt: skip
    assert export.ExportConfig(count=3, kind="time").to_dict()["kind"] == "time"


def test_texts_come_from_a_file_in_turn(cvae, tmp_path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("02.12.2026\n\n  -1 234,56  \r\n+7 (812) 555-01-23\n")
    config = export.ExportConfig(count=7, texts_file=str(texts), format="png")
    export.export_dataset(tmp_path / "out", config, cvae, workers=1)
    rows = rows_of(tmp_path / "out", "png")
    expected = ["02.12.2026", "-1 234,56", "+7 (812) 555-01-23"]
    assert [m["text"] for m, _ in rows] == [expected[i % 3] for i in range(7)]
    assert [len(m["boxes"]) for m, _ in rows[:3]] == [10, 8, 16]
    assert "texts from" in (tmp_path / "out" / "README.md").read_text()
    texts.write_text("1\n")  # a changed file cannot continue the export
    with pytest.raises(ComposeError, match="texts_sha256"):
        export.export_dataset(tmp_path / "out", export.ExportConfig(
            count=7, texts_file=str(texts), format="png"), cvae, workers=1, resume=True)  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"12\n3a\n", "line 2: '3a' cannot be written: 'a' at position 2"), (b"\n \n", "holds no text"),
     (b"\xff\n", "not UTF-8"), (b"-\n", "line 1: '-' holds no digit")],
)  # fmt: skip
def test_a_bad_file_of_texts_is_one_error_naming_its_line(tmp_path, content, message) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_bytes(content)
    with pytest.raises(ComposeError, match=re.escape(message)):
        export.ExportConfig(count=2, texts_file=str(texts))


def test_dataset_command_takes_kinds_and_texts(cvae, tmp_path, capsys) -> None:
    model = save_pretrained(cvae, tmp_path / "m")
    base = ["dataset", "--model", str(model), "--format", "png"]
    assert main([*base, "--kind", "phone", "--count", "3", "--out", str(tmp_path / "a")]) == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("12:30\n3/4\n")
    assert main([*base, "--texts", str(texts), "--out", str(tmp_path / "b")]) == 0
    with open(tmp_path / "b" / "labels.csv", newline="") as f:
        assert [r["text"] for r in csv.DictReader(f)] == ["12:30", "3/4"]  # one row a line
    capsys.readouterr()
    assert main([*base, "--kind", "date", "--length", "6", "--out", str(tmp_path / "c")]) == 2
    assert "--length applies to --kind integer alone" in capsys.readouterr().err
    assert main([*base, "--kind", "roman", "--out", str(tmp_path / "d")]) == 2
    assert "kind='roman': choose one of integer, decimal, amount, date, time, phone" in (
        capsys.readouterr().err
    )
