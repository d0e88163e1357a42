"""Config values checked by type and range from one place (numgen.config), for every config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from numgen import config as checks
from numgen.config import ConfigError, Limit, check_fields, fits, from_dict, read_json
from numgen.evaluate import EvalConfig
from numgen.export import ExportConfig
from numgen.models import VAEConfig, config_from_dict
from numgen.recognizer import RecognizerConfig
from numgen.train import TrainConfig


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VAEConfig(depth=2.0), "depth=2.0: expected a whole number, got float"),
        (lambda: VAEConfig(hidden=400.0), "hidden=400.0: expected a whole number"),
        (lambda: VAEConfig(latent_dim=True), "latent_dim=True: expected a whole number, got bool"),
        (lambda: VAEConfig(beta=math.nan), "beta=nan: must be a finite number"),
        (lambda: VAEConfig(beta="1"), "beta='1': expected a number, got str"),
        (lambda: VAEConfig(arch=3), "arch=3: expected a text"),
        (lambda: VAEConfig(hidden=10**12), "hidden=1000000000000: must lie between 1 and 16,384 (wider"),
        (lambda: VAEConfig(num_classes=10**12), "num_classes=1000000000000: must lie between"),
        (lambda: TrainConfig(batch_size=10**9), "60,000 digits"),
        (lambda: TrainConfig(lr=math.inf), "lr=inf: must be a finite number"),
        (lambda: TrainConfig(limit=[1]), "limit=[1]: expected"),
        (lambda: EvalConfig(samples=1.5), "samples=1.5"),
        (lambda: ExportConfig(count=True), "count=True"),
        (lambda: ExportConfig(count=1, ode_steps=0), "steps=0: choose a whole number of ODE"),
        (lambda: ExportConfig(count=1, guidance=21.0), "guidance=21.0: choose a finite guidance"),
        (lambda: RecognizerConfig(channels=16.0), "channels=16.0"),
    ],
)  # fmt: skip
def test_every_config_refuses_wrong_types_and_absurd_sizes(make, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert message in str(caught.value)


def test_ints_become_floats_and_none_stays_allowed() -> None:
    config = VAEConfig(beta=2, hidden=None)
    assert type(config.beta) is float and config.hidden == 16


def test_train_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys \['colour'\]"):
        TrainConfig.from_dict({"epochs": 2, "colour": "red"})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        config_from_dict(["vae"])


@dataclass
class Inner:
    width: int = 4

    def __post_init__(self) -> None:
        check_fields(self, {"width": Limit(1, 8, "a test's cap")})

    @classmethod
    def from_dict(cls, values: dict) -> Inner:
        return from_dict(cls, values)


@dataclass
class Outer:
    """A config that nests another, as the flow family's nests a VAEConfig."""

    inner: Inner = field(default_factory=Inner)
    name: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)


def test_a_nested_config_is_built_from_a_dict_and_checked() -> None:
    assert Outer(inner={"width": 3}).inner == Inner(3)
    with pytest.raises(
        ConfigError, match=r"inner.width=9: must lie between 1 and 8 \(a test's cap\)"
    ):
        Outer(inner={"width": 9})
    with pytest.raises(ConfigError, match="inner=5: expected Inner, got int"):
        Outer(inner=5)
    with pytest.raises(ConfigError, match="name=5: expected a text, got int"):
        Outer(name=5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xcc\xff{}", "not a text file (byte 0 is not UTF-8)"),
        (b"[" * 50 + b"]" * 50, "JSON nested deeper than 8 levels"),
        (b'{"a": "[[[[[[[[[[[[[["}', None),  # brackets inside a string are text
        (b"{oops", "not valid JSON"),
        (b"7", "expected a JSON object, found int"),
    ],
)
def test_read_json_names_the_file(tmp_path: Path, content: bytes, message: str | None) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    if message is None:
        assert read_json(path) == {"a": "[[[[[[[[[[[[[["}
        return
    with pytest.raises(ConfigError) as caught:
        read_json(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_fits_says_what_it_would_need_and_the_largest_value_that_fits(monkeypatch) -> None:
    monkeypatch.setattr(checks, "memory_budget", lambda: 4_000_000_000)
    fits("--n", 1000, lambda n: n * 4_000_000)  # exactly the budget: fine
    with pytest.raises(ConfigError) as caught:
        fits("--n", 10**9, lambda n: n * 3_000_000)
    assert str(caught.value) == (
        "--n 1,000,000,000 would need about 3000000.0 GB of memory; at most 4.0 GB is free, "
        "enough for --n 1,333"
    )
