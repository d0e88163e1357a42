"""One check shared by the model families' tests: an interrupted and resumed run ends with
exactly the weights of an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from numgen.checkpoints import STATE_FILE
from numgen.train import TrainConfig, train


def assert_resume_equals_an_uninterrupted_run(
    tmp_path: Path, config: object, train_config: TrainConfig, base=None
) -> torch.nn.Module:
    """Train ``config`` straight into ``tmp_path/a`` and, stopped by a Ctrl-C once epoch 1 is
    saved and then resumed, into ``tmp_path/b``; assert both end with the same weights bit for
    bit, and return the uninterrupted model."""
    straight = train(tmp_path / "a", config, train_config, device="cpu", base=base)

    def stop_after_epoch_1(record: dict) -> None:
        raise KeyboardInterrupt  # as a user's Ctrl-C once epoch 1 is saved

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", config, train_config, device="cpu", base=base,
              on_epoch=stop_after_epoch_1)  # fmt: skip
    resumed = train(tmp_path / "b", train_config=train_config, device="cpu", resume=True)
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert (tmp_path / "b" / STATE_FILE).is_file()
    return straight
