"""A training run's directory: the state written atomically every epoch, read back checked and
restored exactly, and the per-epoch metrics.

    config.json, model.safetensors   the latest good model (``numgen.load(run_dir)`` works)
    train_state.safetensors          weights + Adam state + epoch + train config, one atomic file
    metrics.jsonl                    one JSON line per finished epoch
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from numgen import checkpoint_checks as checks
from numgen.config import ConfigError, parse_json
from numgen.errors import NumgenError, TrainingError
from numgen.files import DamagedFile, atomic_write, checksum, json_field, read_header, save_weights
from numgen.hub import CONFIG_FILE, WEIGHTS_FILE, load, save_pretrained
from numgen.models import Generator, config_from_dict

log = logging.getLogger(__name__)

STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"
# what a resumed run may change: how many epochs it trains to, and where the same data lies;
# any other option changes what the run is, so resuming with it would be a different run
MAY_CHANGE_ON_RESUME = ("epochs", "data_dir")


def refuse_overwrite(run_dir: Path) -> None:
    """Refuse to start a fresh run in ``run_dir`` when it holds one (a training state, a model
    or metrics): a second ``numgen train RUN`` must not silently replace the first."""
    files = (run_dir / n for n in (STATE_FILE, WEIGHTS_FILE, METRICS_FILE))
    found = [f.name for f in files if f.is_file() and f.stat().st_size]
    if found:
        raise TrainingError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with --resume, "
            "or start it over with --overwrite"
        )


def option_name(field: str) -> str:
    """A config field's command-line option: ``batch_size`` -> ``--batch-size``."""
    return "--model" if field == "kind" else f"--{field.replace('_', '-')}"


def check_resume_options(
    run_dir: Path, checkpoint: checks.Checkpoint, model_config: object | None,
    train_config: object | None,
) -> None:  # fmt: skip
    """Refuse to resume with a model or train config (where given) that differs from the
    checkpoint's in anything but :data:`MAY_CHANGE_ON_RESUME`, naming each difference."""
    pairs = []
    if model_config is not None:
        pairs.append((checkpoint.model_config.to_dict(), model_config.to_dict(), ()))
    if train_config is not None:
        pairs.append((asdict(checkpoint.train_config), asdict(train_config), MAY_CHANGE_ON_RESUME))
    differ = [
        f"{option_name(key)} {given.get(key)} (the run's: {saved.get(key)})"
        for saved, given, free in pairs
        for key in sorted(saved.keys() | given.keys())
        if key not in free and saved.get(key) != given.get(key)
    ]
    if differ:
        raise TrainingError(
            f"{run_dir}: cannot resume with options that differ from the run's: "
            f"{'; '.join(differ)}; only {' and '.join(map(option_name, MAY_CHANGE_ON_RESUME))} "
            "may change on resume (or start the run over with --overwrite)"
        )


def saved_configs(run_dir: Path, train_config_class: type) -> tuple[object, object] | None:
    """(model config, train config) of the run's training state, read from its header alone;
    None where there is none or it is damaged (resuming then says what is wrong)."""
    path = run_dir / STATE_FILE
    try:
        _, metadata = read_header(path)
        return (
            config_from_dict(json_field(path, metadata, "model_config")),
            train_config_class.from_dict(json_field(path, metadata, "train_config")),
        )
    except (NumgenError, OSError):
        return None


def with_options(config: object, options: dict[str, object]) -> object:
    """``config`` with the given ``options`` (fields of it) replaced; an option it has no field
    for is a :class:`TrainingError`: it does not apply to the run's model."""
    kind = getattr(config, "kind", "training")
    if options.get("kind", kind) != kind:
        raise TrainingError(
            f"--model {options['kind']}: the run holds a {kind} model; resume without --model"
        )
    names = {f.name for f in fields(config)}
    foreign = [option_name(k) for k in options if k not in names]
    if foreign:
        raise TrainingError(
            f"{', '.join(foreign)}: not an option of the run's {kind} model; resume without it"
        )
    return replace(config, **options)


def save_checkpoint(
    run_dir: Path,
    model: Generator,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    train_config: object,  # numgen.train.TrainConfig
    record: dict | None = None,
) -> None:
    """Write the training state (one atomic file, holding the epoch's metrics ``record`` too, so
    a crash before metrics.jsonl is appended loses nothing), then the loadable model files."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in opt["state"].items():
        tensors.update({f"optim.{index}.{k}": v for k, v in state.items()})
    metadata = {
        "epoch": str(epoch),
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(asdict(train_config)),
        "param_groups": json.dumps(opt["param_groups"]),
        **({"metrics": json.dumps(record)} if record else {}),
    }
    metadata["checksum"] = checksum(tensors, metadata)
    save_weights(run_dir / STATE_FILE, tensors, metadata)
    save_pretrained(model, run_dir)


def read_checkpoint(run_dir: Path, config_class: type) -> checks.Checkpoint | None:
    """The run's training state, or None when it has none. Any damage to the file is one
    :class:`TrainingError` naming the file and the damage, and saying where the last good model
    is; the file is checked entirely (header against its configs, sizes, checksum, values)
    before anything of the run is changed."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return checks.read_train_state(path, config_class)
    except NumgenError as err:
        kind = err.kind if isinstance(err, DamagedFile) else str(err)
        model = run_dir / WEIGHTS_FILE
        last = (
            f"{model} still holds the last good model; use it as it is, or"
            if model.is_file() else "no model was saved;"
        )  # fmt: skip
        raise TrainingError(
            f"{path} is damaged ({kind}), so the run cannot resume: {last} train again without "
            "--resume to start the run over"
        ) from None


def restore(
    model: Generator, optimizer: torch.optim.Optimizer, checkpoint: checks.Checkpoint
) -> None:
    """Load weights and Adam state saved by :func:`save_checkpoint` (checked by
    :func:`read_checkpoint`)."""
    tensors = checkpoint.tensors
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": checkpoint.param_groups})
    except (ValueError, KeyError, TypeError) as err:
        raise TrainingError(
            f"{STATE_FILE}: its optimiser state does not fit ({err}); train again without --resume"
        ) from None
    # Adam's moments come back contiguous; give each its parameter's memory layout (channels-last
    # for convolutions), as a fresh run's zeros_like does: the fused step walks a parameter and
    # its moments element by element in memory order, so mismatched layouts would mix elements.
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state[param].items():
                if value.shape == param.shape:
                    optimizer.state[param][name] = torch.empty_like(param).copy_(value)


def prepare_run(run_dir: Path, checkpoint: checks.Checkpoint | None) -> None:
    """Before training into ``run_dir``: remove temporary files a killed run left behind; on
    resume keep the metrics of the checkpoint's epochs (recovering its own epoch's line, which a
    kill may have kept out of metrics.jsonl); on a fresh start begin an empty log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (STATE_FILE, WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE):
        for tmp in run_dir.glob(f".{name}.*.tmp"):  # files.atomic_write's temporary names
            tmp.unlink(missing_ok=True)
    for tmp in run_dir.glob(".tmp??????"):  # safetensors' own, written by numgen 0.1.0's saves
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
    if checkpoint is None:
        _write_metrics(run_dir, [])
        return
    # one line per epoch up to the checkpoint's (a line repeated by a crash counts once), and
    # the checkpoint's own record for its epoch
    by_epoch = {r["epoch"]: r for r in read_metrics(run_dir) if r["epoch"] <= checkpoint.epoch}
    if checkpoint.record:
        by_epoch[checkpoint.epoch] = checkpoint.record
    _write_metrics(run_dir, [by_epoch[e] for e in sorted(by_epoch)])


def check_saved_model(run_dir: Path, model: Generator) -> None:
    """Make sure the run's model files hold the checkpoint's model — a kill between writing the
    training state and the model, or a damaged file, is repaired from the checkpoint."""
    try:
        saved = load(run_dir, "cpu").state_dict()
        same = all(torch.equal(saved[k], v.cpu()) for k, v in model.state_dict().items())
    except (NumgenError, KeyError):
        same = False
    if not same:
        log.warning("%s: the model files did not hold the last checkpoint; rewritten", run_dir)
        save_pretrained(model, run_dir)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run, in the file's order: JSON objects whose ``epoch`` is a
    whole number from 1; any other line (torn by a crash mid-append, or damaged) is skipped
    with a warning."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line, f"{path} line {number}")
        except ConfigError:
            record = None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if type(epoch) is int and epoch >= 1:
            records.append(record)
        else:
            log.warning("%s: line %d is not a metrics record; skipped", path, number)
    return records


def append_metrics(run_dir: Path, record: dict) -> None:
    """Add one epoch's line to metrics.jsonl (the same record is in the training state, so a
    line torn by a kill is recovered on resume)."""
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def _write_metrics(run_dir: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(run_dir / METRICS_FILE, lambda tmp: tmp.write_text(text))
