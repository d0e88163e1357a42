"""The training loop: it learns, checkpoints atomically, resumes exactly, stops on NaN."""

import json
from pathlib import Path

import pytest
import torch

import numgen.train as training
from numgen.checkpoints import STATE_FILE, read_metrics
from numgen.errors import TrainingError
from numgen.hub import load
from numgen.models import VAE, VAEConfig
from numgen.train import TrainConfig, train

TINY = VAEConfig(arch="mlp", hidden=32, likelihood="bernoulli")


def quick(epochs: int, **overrides) -> TrainConfig:
    """A few hundred embedded digits: seconds on a CPU."""
    return TrainConfig(
        **{"epochs": epochs, "dataset": "embedded", "limit": 512, "batch_size": 64, **overrides}
    )


def test_training_lowers_the_loss_and_logs_each_epoch(tmp_path: Path) -> None:
    train(tmp_path / "run", TINY, quick(3), device="cpu")
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["test_loss"] < records[0]["test_loss"]
    for r in records:
        assert r["train_loss"] == pytest.approx(r["train_recon"] + r["train_kl"], rel=1e-5)
        assert r["images_per_s"] > 0
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "config.json", "model.safetensors", STATE_FILE, "metrics.jsonl",
    }  # fmt: skip


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = train(tmp_path / "a", TINY, quick(1), device="cpu")
    b = train(tmp_path / "b", TINY, quick(1), device="cpu")
    c = train(tmp_path / "c", TINY, quick(1, seed=1), device="cpu")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(
        torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


class Interrupted(Exception):
    pass


def stop_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Interrupted

    return on_epoch


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    straight = train(tmp_path / "straight", TINY, quick(3), device="cpu")
    with pytest.raises(Interrupted):  # stopped once epoch 2 is saved
        train(tmp_path / "resumed", TINY, quick(3), device="cpu", on_epoch=stop_after(2))
    assert [r["epoch"] for r in read_metrics(tmp_path / "resumed")] == [1, 2]
    epochs_seen = []
    resumed = train(tmp_path / "resumed", train_config=quick(3), device="cpu", resume=True,
                    on_epoch=lambda r: epochs_seen.append(r["epoch"]))  # fmt: skip
    assert epochs_seen == [3]
    assert [r["epoch"] for r in read_metrics(tmp_path / "resumed")] == [1, 2, 3]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(
        load(tmp_path / "resumed").decode(torch.zeros(1, 2)), resumed.decode(torch.zeros(1, 2))
    )


def test_the_learning_rate_falls_to_zero_over_the_last_steps() -> None:
    config = quick(2, lr=1e-3, lr_decay=0.5)  # 512 digits in batches of 64: 8 steps an epoch
    first, second = (training.lr_schedule(config, epoch, 512) for epoch in (1, 2))
    assert [first(i) for i in range(8)] == [1e-3] * 8
    assert [second(i) for i in range(8)] == pytest.approx([1e-3 * k / 8 for k in range(8, 0, -1)])
    constant = training.lr_schedule(quick(2, lr_decay=0.0), 2, 512)
    assert constant(7) == 1e-3


def test_precision_auto_is_bf16_only_where_the_hardware_has_it() -> None:
    cpu = torch.device("cpu")
    assert training.resolve_precision("fp32", cpu) == "fp32"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert training.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert training.autocast(cpu, "bf16").fast_dtype == torch.bfloat16
    assert not training.autocast(cpu, "fp32")._enabled


def test_resume_without_a_checkpoint_starts_fresh_and_says_so(tmp_path: Path, caplog) -> None:
    train(tmp_path / "empty", TINY, quick(1), device="cpu", resume=True)
    assert "nothing to resume" in caplog.text and "starting a fresh run" in caplog.text
    assert [r["epoch"] for r in read_metrics(tmp_path / "empty")] == [1]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    train(run, TINY, quick(1), device="cpu")
    good_state = (run / STATE_FILE).read_bytes()
    good_weights = (run / "model.safetensors").read_bytes()
    real_loss = VAE.loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        calls["n"] += parts["loss"].device.type != "meta"  # not the memory estimate's passes
        if calls["n"] == 3:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(VAE, "loss", poisoned)
    with pytest.raises(TrainingError, match="the loss became nan at batch 3"):
        train(run, train_config=quick(2), device="cpu", resume=True)
    assert (run / STATE_FILE).read_bytes() == good_state
    assert (run / "model.safetensors").read_bytes() == good_weights
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    assert json.loads((run / "config.json").read_text())["arch"] == "mlp"


def test_bad_train_config_names_the_value() -> None:
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr=-1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="lr_decay=2"):
        TrainConfig(lr_decay=2)
    with pytest.raises(ValueError, match="precision='fp8'"):
        TrainConfig(precision="fp8")


def test_device_selection() -> None:
    assert training.select_device("cpu").type == "cpu"
    assert training.select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA GPU"):
            training.select_device("cuda")
    with pytest.raises(TrainingError, match="unknown device"):
        training.select_device("tpu9")


# --- KL warm-up ----------------------------------------------------------------------------------


def test_kl_warmup_ramps_the_kl_weight_linearly_then_holds_beta() -> None:
    config = quick(3, kl_warmup=2)  # 256 digits in batches of 64: 4 batches an epoch, 8 to ramp
    weights = [
        training.warmup_schedule(2.0, config, epoch, 256)(i)
        for epoch in (1, 2, 3)
        for i in range(4)
    ]
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2, 2, 2, 2])
    no_warmup = quick(1)
    assert [training.warmup_schedule(2.0, no_warmup, 1, 256)(i) for i in range(4)] == [2.0] * 4


def test_training_passes_the_warmup_weight_to_the_model(tmp_path: Path, monkeypatch) -> None:
    """The loop asks the model's loss with the ramped KL weight, batch by batch."""
    seen = []
    real_loss = VAE.loss

    def spy(self, *args, kl_weight=None, **kwargs):
        seen.append(kl_weight)
        return real_loss(self, *args, kl_weight=kl_weight, **kwargs)

    monkeypatch.setattr(VAE, "loss", spy)
    config = quick(2, limit=256, kl_warmup=1)  # 4 batches an epoch; the ramp spans epoch 1
    train(tmp_path / "run", TINY, config, device="cpu")
    train_batches = [w for w in seen if w is not None]  # test passes use the model's own weight
    assert train_batches == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])
