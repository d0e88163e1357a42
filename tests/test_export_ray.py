"""`numgen dataset --engine ray`: the same bytes as the local export, on a local Ray with 2 workers.

Ray takes ~20 s to start on 2 shared cores, so the Ray run is marked ``ray`` and runs where
``CI`` is set (the CI run sets it) or with ``NUMGEN_TEST_RAY=1``; a plain ``make test`` skips it.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

from numgen import export
from numgen.compose import ComposeError
from numgen.models import VAEConfig, build_model


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()


def tree(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


CONFIG = export.ExportConfig(count=50, shard_size=20, seed=1, split={"train": 0.8, "test": 0.2})


@pytest.mark.ray
@pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("NUMGEN_TEST_RAY")),
    reason="starting Ray takes ~20 s here: set NUMGEN_TEST_RAY=1 (CI sets CI)",
)
def test_ray_with_two_workers_writes_the_bytes_of_the_local_export(cvae, tmp_path) -> None:
    pytest.importorskip("ray")
    export.export_dataset(tmp_path / "local", CONFIG, cvae, workers=1)
    summary = export.export_dataset(tmp_path / "ray", CONFIG, cvae, workers=2, engine="ray")
    assert summary["complete"] and summary["decoded"] == 50
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")


def test_without_ray_the_engine_says_how_to_get_it(cvae, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ComposeError, match=r"pip install 'numgen\[ray\]'"):
        export.export_dataset(tmp_path, CONFIG, cvae, engine="ray")
