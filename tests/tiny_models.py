"""Tiny models that tests of several modules share: a small CVAE's config, and a flow that
refines a CVAE of it (or starts from noise), each fast on a CPU."""

from __future__ import annotations

from numgen.models import FlowConfig, FlowModel, VAEConfig, build_model

BASE = VAEConfig(kind="cvae", arch="mlp", hidden=16, latent_dim=4)


def tiny_flow(start: str = "cvae", **overrides) -> FlowModel:
    """A flow of width 4, in eval mode; ``overrides`` go to its config."""
    base = build_model(BASE) if start == "cvae" else None
    config = FlowConfig(start=start, base=BASE.to_dict() if base else None, channels=4, **overrides)
    model = build_model(config)
    if base is not None:
        model.adopt(base)
    return model.eval()
