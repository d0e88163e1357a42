"""Saving and loading: safetensors + JSON round trips, clear errors, atomic writes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from numgen import files, hub
from numgen.files import atomic_write
from numgen.hub import (
    PRETRAINED_DIR,
    WEIGHTS_FILE,
    ModelError,
    generator_names,
    load,
    place,
    pretrained_names,
    resolve,
    save_pretrained,
)
from numgen.models import (
    MODEL_KINDS,
    VAEConfig,
    build_model,
    config_from_dict,
)
from numgen.recognizer import Recognizer


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


# --- one save/load path: from_pretrained / save_pretrained on the model classes -----------------


# A small config of every registered family; a new family adds its line here.
SMALL = {
    "vae": {"kind": "vae", "arch": "mlp", "hidden": 8},
    "cvae": {"kind": "cvae", "arch": "mlp", "hidden": 8},
    "flow": {"kind": "flow", "base": {"kind": "cvae", "arch": "mlp", "hidden": 8}, "channels": 4},
    "onestep": {
        "kind": "onestep", "channels": 4, "prior_layers": 2, "prior_hidden": 8,
        "adversarial": 0.1, "critic_channels": 4, "anchors": 3, "anchor_pull": 0.5,
        "teacher": {"kind": "flow", "base": {"kind": "cvae", "arch": "mlp", "hidden": 8},
                    "channels": 4},
    },
}  # fmt: skip


def test_every_registered_family_has_a_small_config_here() -> None:
    assert set(SMALL) == set(MODEL_KINDS)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_every_registered_family_round_trips(tmp_path: Path, kind: str) -> None:
    """Any family in the registry: ``save_pretrained`` then ``load`` gives the same weights and
    config, in a model of that family's class."""
    torch.manual_seed(0)
    model = build_model(config_from_dict(SMALL[kind]))
    save_pretrained(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert type(loaded) is MODEL_KINDS[kind] and not loaded.training
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_local_directory_comes_before_a_bundled_name(tmp_path: Path, monkeypatch) -> None:
    local = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=8, latent_dim=3))
    save_pretrained(local, tmp_path / "cvae")
    monkeypatch.chdir(tmp_path)
    assert load("cvae").config == local.config  # ./cvae, not the bundled cvae
    assert resolve("cvae") == Path("cvae")
    assert resolve("vae2d") == PRETRAINED_DIR / "vae2d"  # no ./vae2d: the bundled one


OPENED: list[str] = []  # every file this process opens from Python, while a test listens
LISTENING: list[bool] = []


def record_opens(event: str, args: tuple) -> None:
    if LISTENING and event == "open" and isinstance(args[0], str | Path):
        OPENED.append(str(args[0]))


sys.addaudithook(record_opens)  # audit hooks cannot be removed: it records only while LISTENING


def bytes_read() -> int:
    """Bytes this process has read through read system calls so far (Linux's rchar): any read
    path, Python's or a library's own."""
    return int(re.search(r"rchar: (\d+)", Path("/proc/self/io").read_text())[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts reads through /proc")
def test_weights_are_read_once(tmp_path: Path, monkeypatch) -> None:
    """Every read of the weights file while a model loads: one open of it from Python, about its
    size in bytes read by the whole process, and no safetensors reader of its own (those map the
    file into memory, which neither count would see)."""
    save_pretrained(build_model(VAEConfig(arch="mlp", hidden=256)), tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILE
    size = weights.stat().st_size
    assert size > 1_000_000  # large beside the config and anything else read meanwhile
    for module, name in [(safetensors, "safe_open"), (safetensors.torch, "load_file"),
                         (safetensors.torch, "safe_open"), (files, "safe_open"),
                         (files, "load_file"), (hub, "load_file")]:  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("read by safetensors"),
                            raising=False)  # fmt: skip
    OPENED.clear()
    LISTENING.append(True)
    before = bytes_read()
    try:
        load(tmp_path / "m")
    finally:
        read = bytes_read() - before
        LISTENING.clear()
    assert OPENED.count(str(weights)) == 1
    assert size <= read < 1.5 * size


def test_the_recognizer_is_not_a_generator_and_loads_through_its_class() -> None:
    with pytest.raises(ModelError, match="kind 'recognizer': not a generator of digits"):
        load("recognizer")
    with pytest.raises(ModelError, match="kind 'cvae': not numgen's digit recognizer"):
        Recognizer.from_pretrained("cvae")
    assert Recognizer.from_pretrained().config.kind == "recognizer"


@pytest.mark.parametrize("name", pretrained_names())
def test_bundled_models_have_a_model_card_with_hub_metadata(name: str) -> None:
    """README.md opens with YAML metadata as model hubs read it: library, tags, datasets,
    metrics, and results whose figures are numbers."""
    text = (PRETRAINED_DIR / name / "README.md").read_text()
    assert text.startswith("---\n")
    meta, body = text[4:].split("\n---\n", 1)
    fields = {line.split(":")[0] for line in meta.splitlines() if not line.startswith(" ")}
    assert {"library_name", "license", "tags", "datasets", "metrics", "model-index"} <= fields
    assert "library_name: numgen" in meta and "datasets: [mnist]" in meta
    values = re.findall(r"value: (\S+)\}", meta)
    assert values and all(float(v) >= 0 for v in values)
    assert f"- name: {name}" in meta and body.lstrip().startswith("# ")


# The bundled default writer draws seven batches of 512 digits (two passes each), as a user's
# loop would; the median page faults of the last three batches, after four to warm up, is printed
# (a machine busy with other work sometimes still grows a thread's heap in one late batch: up to
# ~6,000 pages, once in the last two of six). With "off", numgen leaves the allocator as glibc
# sets it.
DRAWING_SCRIPT = """
import resource, statistics, sys
import numgen.hub
if sys.argv[1] == "off":
    numgen.hub.keep_freed_memory = lambda: False
from numgen import compose
model = numgen.hub.load("onestep")
faults = []
for batch in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    compose.digits(model, batch, 512, batch)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(statistics.median(faults[-3:])))
"""


def page_faults_of_drawing(allocator: str, **env: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", DRAWING_SCRIPT, allocator], env=os.environ | env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_drawing_on_the_cpu_reuses_freed_memory_instead_of_faulting_in_fresh_pages():
    # with glibc's own settings each batch faulted in ~25,000-47,000 fresh pages here
    assert page_faults_of_drawing("off") > 10_000
    assert page_faults_of_drawing("on") < 2_500
    # a user's own setting of glibc's variables is kept: numgen makes none of its own
    assert page_faults_of_drawing("on", MALLOC_TRIM_THRESHOLD_="0") > 10_000
