"""Multi-process training (DDP, gloo on the CPU): two processes with global batch B train the
same weights as one process with batch B; a killed torchrun run resumes to the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file

from numgen import models
from numgen.checkpoints import STATE_FILE, read_metrics
from numgen.distributed import Context, shard_order
from numgen.hub import WEIGHTS_FILE
from numgen.models import VAE, VAEConfig, vae_loss
from numgen.train import TrainConfig, train

TINY = VAEConfig(arch="mlp", hidden=32, likelihood="bernoulli")
# 256 digits in batches of 64: 4 steps an epoch; fp32, so that the two runs differ only by the
# order of float sums
EQUAL = TrainConfig(epochs=2, batch_size=64, dataset="embedded", limit=256, precision="fp32")


class NoiselessVAE(VAE):
    """A VAE whose loss decodes the posterior mean: no noise. A family with noise draws it per
    rank in a multi-process run, so only a noiseless loss can match a single process bit for
    bit; this one shows that the loop averages every family's gradients across processes."""

    def loss(self, x, labels=None, generator=None, kl_weight=None):
        mu, logvar = self.encode(x, labels)
        return vae_loss(x, self.decode_logits(mu, labels), mu, logvar, "bernoulli", 1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, run: str, port: int) -> None:
    """One of two processes, set up as torchrun sets up its workers (environment variables)."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    models.MODEL_KINDS["vae"] = NoiselessVAE
    train(run, TINY, EQUAL, device="cpu")


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(
    tmp_path: Path, monkeypatch
) -> None:
    torch.manual_seed(EQUAL.seed)
    start = VAE(TINY).state_dict()  # the weights every run starts from
    mp.spawn(_rank, args=(str(tmp_path / "two"), _free_port()), nprocs=2)
    monkeypatch.setattr(models, "MODEL_KINDS", {**models.MODEL_KINDS, "vae": NoiselessVAE})
    one = train(tmp_path / "one", TINY, EQUAL, device="cpu").state_dict()
    two = load_file(str(tmp_path / "two" / WEIGHTS_FILE))
    assert set(two) == set(one)
    for name, weight in one.items():
        assert not torch.equal(weight, start[name]), f"{name} never trained"
        torch.testing.assert_close(two[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    # rank 0 alone logged, with the losses of both processes' digits
    ones, twos = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["epoch"] for r in twos] == [1, 2]
    for a, b in zip(ones, twos, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)


def test_each_rank_gets_its_share_of_every_global_batch() -> None:
    single = shard_order(10, seed=3, epoch=2, context=Context())
    halves = [shard_order(10, 3, 2, Context(rank, 2)) for rank in (0, 1)]
    assert sorted(single.tolist()) == list(range(10))
    for i in range(0, 10, 4):  # global batch 4 = two ranks' batches of 2
        assert set(single[i : i + 4].tolist()) == set(
            halves[0][i // 2 : i // 2 + 2].tolist() + halves[1][i // 2 : i // 2 + 2].tolist()
        )
    assert not torch.equal(single, shard_order(10, 3, 3, Context()))  # reshuffled each epoch


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, theirs, and so on (torchrun starts its workers in sessions
    of their own, so a process group does not hold them)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _finished_epochs(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.slow  # four Python processes started twice
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds processes in /proc")
def test_a_killed_torchrun_run_resumes_to_the_end(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "numgen", "train", str(run), "--arch", "mlp", "--hidden", "32",
        "--likelihood", "bernoulli", "--dataset", "embedded", "--limit", "256",
        "--batch-size", "64", "--nproc", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [*command, "--epochs", "100000"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:  # let it finish two epochs, then kill every process of it at once, mid-epoch
        while _finished_epochs(run) < 2:
            assert launcher.poll() is None, launcher.stderr.read().decode()
            time.sleep(0.05)
    finally:
        for pid in [launcher.pid, *_descendants(launcher.pid)]:
            os.kill(pid, signal.SIGKILL)
        launcher.wait()
    with safe_open(str(run / STATE_FILE), "pt") as f:
        saved = int(f.metadata()["epoch"])
    assert saved >= 2

    resumed = subprocess.run(
        [*command, "--epochs", str(saved + 2), "--resume"], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert (resumed.stdout + resumed.stderr).count(f"epoch {saved + 1}:") == 1  # rank 0 alone
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == list(range(1, saved + 3))
    assert records[-1]["test_loss"] < records[0]["test_loss"]
    with safe_open(str(run / STATE_FILE), "pt") as f:
        assert json.loads(f.metadata()["epoch"]) == saved + 2


def test_nproc_needs_a_batch_that_splits_evenly(tmp_path: Path, capsys) -> None:
    from numgen.cli.main import main  # here: the processes above import this module, not the CLI

    code = main(["train", str(tmp_path / "run"), "--nproc", "3", "--batch-size", "128"])
    assert code == 2
    assert "128 does not split evenly across 3 processes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_nproc_exits_with_the_ranks_failure_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "numgen", "train", str(tmp_path / "run"), "--nproc", "2",
         "--data-dir", str(tmp_path / "nowhere"), "--epochs", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "nowhere" in errors[0], done.stderr[-3000:]


def _gone(pids: list[int], seconds: float) -> bool:
    """Whether every process in ``pids`` has ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and " Z " not in Path(f"/proc/{p}/stat").read_text()]  # fmt: skip
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _kill_only_the_parent(command: list[str], ready, children: int) -> None:
    """Start ``command``, wait until ``ready()`` and it has ``children`` processes below it,
    SIGKILL it alone, and assert that they end with it (every one is killed in the end)."""
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    below: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not (ready() and len(below := _descendants(parent.pid)) >= children):
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _gone(below, 30), "processes outlived the one that started them"
    finally:
        for pid in [parent.pid, *below]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


@pytest.mark.slow  # three Python processes
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds processes in /proc")
def test_a_killed_launcher_ends_its_ranks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "numgen", "train", str(run), "--arch", "mlp", "--hidden",
               "32", "--dataset", "embedded", "--limit", "256", "--batch-size", "64",
               "--nproc", "2", "--epochs", "100000", "--device", "cpu"]  # fmt: skip
    _kill_only_the_parent(command, lambda: _finished_epochs(run) >= 1, children=2)


@pytest.mark.slow  # an export with a pool worker
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds processes in /proc")
def test_a_killed_export_ends_its_workers(tmp_path: Path) -> None:
    out = tmp_path / "data"
    command = [sys.executable, "-m", "numgen", "dataset", "--count", "200000", "--workers", "2",
               "--shard-size", "1000", "--format", "png", "--out", str(out)]  # fmt: skip
    _kill_only_the_parent(command, lambda: (out / "images").is_dir(), children=1)
