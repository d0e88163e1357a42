"""NumberStream: the rows of an export, into a DataLoader, equal to the files the export writes."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from numgen import export
from numgen.hub import save_pretrained
from numgen.models import VAEConfig, build_model


def exported_rows(out) -> dict[int, tuple[bytes, dict]]:
    """index -> (PNG bytes, metadata) of every row in the export's WebDataset shards."""
    rows = {}
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                meta = json.loads(data)
                rows[meta["index"]] = (members[name[: -len(".json")] + ".png"], meta)
    return rows


def test_the_stream_equals_the_export_and_splits_across_workers(tmp_path) -> None:
    torch.manual_seed(0)
    cvae = build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()
    model_dir = save_pretrained(cvae, tmp_path / "model")
    config = export.ExportConfig(count=30, shard_size=8, min_length=3, max_length=6, seed=2,
                                 model=str(model_dir))  # fmt: skip
    export.export_dataset(tmp_path / "out", config, workers=1)
    written = exported_rows(tmp_path / "out")
    assert sorted(written) == list(range(30))

    alone = list(export.NumberStream(config))
    assert [row["index"] for row in alone] == list(range(30))
    for row in alone:
        png, meta = written[row["index"]]
        assert row["png"] == png  # the same bytes as the file
        assert {k: row[k] for k in meta} == meta
        assert row["image"].shape == (1, meta["height"], meta["width"])
        pixels = np.asarray(Image.open(io.BytesIO(png)))
        assert np.array_equal((row["image"][0].numpy() * 255).round().astype(np.uint8), pixels)

    # two DataLoader workers: each row once, each worker its own shards
    loader = DataLoader(export.NumberStream(config), batch_size=None, num_workers=2)
    indices = [row["index"] for row in loader]
    assert sorted(indices) == list(range(30)) and len(indices) == 30


def test_rows_in_messages_are_the_streams_rows(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    cvae = build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()
    config = export.ExportConfig(count=30, shard_size=8, min_length=3, max_length=6, seed=2,
                                 model=str(save_pretrained(cvae, tmp_path / "model")))  # fmt: skip
    alone = {row["index"]: row for row in export.NumberStream(config)}
    monkeypatch.setattr(export.stream, "ROWS_PER_MESSAGE", 3)  # rows of a shard in 3 messages
    for workers in (0, 2):
        rows = list(export.NumberStream(config).rows(workers))
        indices = [row["index"] for row in rows]
        assert sorted(indices) == list(range(30)) and len(indices) == 30
        # each worker's shards (of 8 rows) in order, the workers taking turns 3 rows at a time
        assert indices[:6] == ([0, 1, 2, 8, 9, 10] if workers else [0, 1, 2, 3, 4, 5])
        for row in rows:
            assert row["png"] == alone[row["index"]]["png"]
            assert torch.equal(row["image"], alone[row["index"]]["image"])
