"""Saving and loading: safetensors + JSON round trips, clear errors, atomic writes."""

import json
from pathlib import Path

import pytest
import torch

from numgen.hub import (
    ModelError,
    atomic_write,
    generator_names,
    load,
    place,
    pretrained_names,
    save_pretrained,
)
from numgen.models import VAEConfig, build_model


@pytest.mark.parametrize("kind", ["vae", "cvae"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = place(build_model(VAEConfig(kind=kind, latent_dim=4)), "cpu").eval()
    save_pretrained(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    z, y = torch.randn(8, 4), torch.arange(8)
    with torch.no_grad():
        assert torch.equal(model.decode(z, y), loaded.decode(z, y))
        x = torch.rand(3, 1, 28, 28)
        assert torch.equal(model.encode(x, y[:3])[0], loaded.encode(x, y[:3])[0])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["kind"] == kind


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such directory"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="missing config.json"):
        load(tmp_path / "empty")
    model_dir = save_pretrained(build_model(VAEConfig(arch="mlp")), tmp_path / "m")
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load(model_dir)
    (model_dir / "config.json").write_text(json.dumps({"arch": "conv"}))  # weights are an MLP's
    with pytest.raises(ModelError, match="weights do not fit the config"):
        load(model_dir)
    (model_dir / "config.json").write_text(json.dumps({"arch": "mlp", "colour": "red"}))
    with pytest.raises(ModelError, match="not a numgen model config"):
        load(model_dir)
    (model_dir / "model.safetensors").write_bytes(b"garbage")
    (model_dir / "config.json").write_text(json.dumps({"arch": "mlp"}))
    with pytest.raises(ModelError, match="unreadable weights"):
        load(model_dir)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    save_pretrained(build_model(VAEConfig(arch="mlp", hidden=8)), tmp_path / "m")
    for path in (tmp_path / "m").iterdir():
        assert path.stat().st_mode & 0o044 == 0o044, path  # readable by group and others


def test_bundled_names_are_listed_by_kind() -> None:
    assert "recognizer" in pretrained_names("recognizer")
    assert "recognizer" not in generator_names()
    assert set(generator_names()) <= set(pretrained_names())
