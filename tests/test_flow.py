"""The flow-matching family: config checks, the seeded sampler, training and resume, and every
design through the generator interface (compose, generate, hub, the CLI)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import ndimage

from numgen import compose, generate, layout
from numgen.cli.main import main
from numgen.data import INK_LEVEL
from numgen.errors import ConfigError, NumgenError
from numgen.hub import load, save_pretrained
from numgen.models import FlowConfig, build_model, config_from_dict
from numgen.models.pixels import SPECK_INK, despeckle
from numgen.models.sampling import Sampling, integrate
from numgen.train import TrainConfig
from resume import assert_resume_equals_an_uninterrupted_run
from tiny_models import BASE, tiny_flow


def quick(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, dataset="embedded", limit=256)


@pytest.fixture(params=["cvae", "noise"])
def flow(request):
    torch.manual_seed(0)
    return tiny_flow(request.param)


def test_config_round_trips_and_refuses_bad_values() -> None:
    config = FlowConfig(base=BASE.to_dict())
    assert config_from_dict(config.to_dict()) == config
    bad = [
        ({"steps": 0}, "steps=0"),
        ({"guidance": math.nan}, "guidance=nan"),
        ({"solver": "rk4"}, "solver='rk4'"),
        ({"start": "gan"}, "start='gan'"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"base": None}, "needs base"),
        ({"base": {**BASE.to_dict(), "kind": "vae"}}, "must be a cvae"),
    ]
    for values, message in bad:
        with pytest.raises(ConfigError, match=message):
            FlowConfig(**{"base": BASE.to_dict(), **values})
    with pytest.raises(ConfigError, match="unknown config keys"):
        FlowConfig.from_dict({"kind": "flow", "start": "noise", "layers": 3})


def test_draw_shapes_range_and_seeds(flow) -> None:
    styles = torch.randn(6, flow.style_dim)
    labels = torch.arange(6)
    seeds = torch.arange(6) + 100
    a = flow.draw(labels, styles, seeds)
    assert a.shape == (6, 1, 28, 28)
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, flow.draw(labels, styles, seeds), rtol=0, atol=0)
    # a digit's pixels depend on its own (label, style, seed) only, not on its batch
    alone = flow.draw(labels[2:3], styles[2:3], seeds[2:3])
    torch.testing.assert_close(alone[0], a[2], rtol=0, atol=1e-6)


def test_the_start_noise_is_seeded_per_digit() -> None:
    flow = tiny_flow("cvae", sigma=1.0)
    torch.nn.init.normal_(flow.velocity.out.weight)  # a velocity field that is not zero
    styles, labels = torch.zeros(2, flow.style_dim), torch.tensor([3, 3])
    same = flow.draw(labels, styles, torch.tensor([5, 5]))
    other = flow.draw(labels, styles, torch.tensor([5, 6]))
    torch.testing.assert_close(same[0], same[1])
    assert not torch.equal(other[0], other[1])


def test_sampling_options_are_checked_and_never_change_the_model(flow) -> None:
    styles, labels = torch.randn(2, flow.style_dim), torch.tensor([1, 2])
    with pytest.raises(ConfigError, match="steps=0"):
        dataclasses.replace(flow.sampling, steps=0)
    with pytest.raises(ConfigError, match="guidance=nan"):
        flow.sampling_with(guidance=math.nan)
    before = flow.config.to_dict()
    sampling = flow.sampling_with(steps=2, guidance=2.0, solver="heun", check=False)
    assert (sampling.steps, sampling.guidance, sampling.solver) == (2, 2.0, "heun")
    assert flow.draw(labels, styles, sampling=sampling).shape == (2, 1, 28, 28)
    assert flow.config.to_dict() == before and flow.sampling.steps == before["steps"]
    with pytest.raises(NumgenError, match="draws in one pass"):
        build_model(BASE).sampling_with(steps=4)


def test_solvers_never_evaluate_the_velocity_at_the_digit_end(monkeypatch) -> None:
    """At t = 1 the learnt velocity is unreliable (the bundled flow drew 11 % legible digits when
    Heun evaluated it there), so Heun's last step, like Euler's, takes no correction at t = 1:
    2 Heun steps cost 3 evaluations, at t = 0, 0.5, 0.5."""
    flow = tiny_flow("cvae")
    times = []
    forward = flow.velocity.forward

    def recording(x, t, labels):
        times.extend(t.unique().tolist())
        return forward(x, t, labels)

    monkeypatch.setattr(flow.velocity, "forward", recording)
    styles, labels = torch.randn(2, flow.style_dim), torch.tensor([1, 2])
    flow.draw(labels, styles, sampling=Sampling(steps=2, solver="heun"))
    assert times == [0.0, 0.5, 0.5]
    for solver in ("euler", "ab2"):  # one evaluation a step
        times.clear()
        flow.draw(labels, styles, sampling=Sampling(steps=3, solver=solver))
        assert times == pytest.approx([0.0, 1 / 3, 2 / 3])


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("heun", 2), ("ab2", 2)])
def test_each_solver_converges_at_its_order(solver, order) -> None:
    """On dx/dt = cos(3t) + x/2 from t = 0 to 0.9 (never at the t = 1 end), doubling the steps
    divides the error by about 2^order."""

    def field(x, t):
        return math.cos(3 * t) + x / 2

    def exact(x0: float, t: float) -> float:  # x' - x/2 = cos 3t
        c = x0 + 0.5 / 9.25
        return c * math.exp(t / 2) + (3 * math.sin(3 * t) - 0.5 * math.cos(3 * t)) / 9.25

    x0 = torch.full((1, 1, 1, 1), 0.3, dtype=torch.float64)
    errors = [
        abs(integrate(field, x0, 0.0, 0.9, n, solver).item() - exact(0.3, 0.9)) for n in (8, 16, 32)
    ]
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert coarse / fine == pytest.approx(2**order, rel=0.25)


def test_guidance_mixes_conditional_and_unconditional_fields(flow) -> None:
    torch.nn.init.normal_(flow.velocity.out.weight)
    x, t = torch.rand(3, 1, 28, 28), 0.5
    extra = torch.rand(3, 1, 28, 28) if flow.base is not None else None
    onehot = torch.eye(10)[:3]
    cond = flow.guided_velocity(x, extra, t, onehot, 1.0)
    uncond = flow.guided_velocity(x, extra, t, torch.zeros_like(onehot), 1.0)
    guided = flow.guided_velocity(x, extra, t, onehot, 3.0)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_loss_is_finite_and_trains_only_the_velocity_field() -> None:
    flow = tiny_flow("cvae").train()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    parts = flow.loss(x, y, torch.Generator().manual_seed(0))
    assert set(parts) == {"loss", "flow"} and torch.isfinite(parts["loss"])
    parts["loss"].backward()
    assert all(p.grad is None for p in flow.base.parameters())
    assert any(p.grad is not None for p in flow.velocity.parameters())
    assert flow.moment_count.tolist() == [1.0] * 8 + [0.0] * 2  # each class's moments


def test_train_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    base = build_model(BASE)
    config = FlowConfig(base=BASE.to_dict(), channels=4)
    assert_resume_equals_an_uninterrupted_run(tmp_path, config, quick(2), base=base)
    # the bundled base is copied in, frozen: the trained flow holds the base's exact weights
    weights = load_file(str(tmp_path / "a" / "model.safetensors"))
    for name, value in base.state_dict().items():
        torch.testing.assert_close(weights[f"base.{name}"], value, rtol=0, atol=0)
    assert load(tmp_path / "a").moment_count.sum().item() == 2 * 256


def test_save_load_gives_the_same_digits(flow, tmp_path) -> None:
    save_pretrained(flow, tmp_path / "m")
    again = load(tmp_path / "m")
    styles = generate.draw_styles(flow, 4, 0)
    np.testing.assert_array_equal(
        generate.draw(flow, styles, [1, 2, 3, 4]), generate.draw(again, styles, [1, 2, 3, 4])
    )


def test_every_writing_feature_works_for_both_designs(flow) -> None:
    sevens = compose.digits(flow, 7, 5, seed=1)
    assert sevens.shape == (5, 28, 28)
    np.testing.assert_array_equal(sevens, compose.digits(flow, 7, 5, seed=1))
    picture = compose.write(flow, "2026", style_seed=3, seed=1)
    assert picture.mode == "L" and picture.height == 28
    assert np.array_equal(np.asarray(picture), np.asarray(compose.write(flow, "2026", None, 3, 1)))
    frames = compose.morph(flow, 3, 8, steps=4)
    assert frames.shape == (4, 28, 28)
    ink = np.zeros((40, 30), np.float32)
    ink[8:32, 12:18] = 1.0  # a bar: a "1"
    style = compose.style_from_image(flow, ink)
    assert style.shape == (flow.style_dim,) and np.isfinite(style).all()
    copied = compose.write(flow, "11", style=style)
    assert copied.height == 28 and copied.width > 2 * layout.MARGIN + 2


def test_latent_commands_refuse_a_flow_and_bad_sampling_options_exit_2(tmp_path, capsys) -> None:
    save_pretrained(tiny_flow("cvae"), tmp_path / "flow")
    model = str(tmp_path / "flow")
    assert main(["decode", model, "0.5", "1.5", "--out", str(tmp_path / "d.png")]) == 2
    assert "has no latent space" in capsys.readouterr().err
    for option in (["--ode-steps", "0"], ["--guidance", "nan"]):
        assert (
            main(["digits", "3", "--model", model, *option, "--out", str(tmp_path / "x.png")]) == 2
        )
        err = capsys.readouterr().err
        assert err.startswith("Error:") and len(err.strip().splitlines()) == 1
    assert (
        main(
            ["digits", "3", "--model", model, "--ode-steps", "2", "--out", str(tmp_path / "x.png")]
        )
        == 0
    )
    assert (tmp_path / "x.png").is_file()


def test_a_model_dir_of_an_unknown_family_is_one_line(tmp_path, capsys) -> None:
    save_pretrained(tiny_flow("cvae"), tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    config.write_text(config.read_text().replace('"kind": "flow"', '"kind": "diffusion"'))
    assert main(["sample", str(tmp_path / "m"), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "kind 'diffusion'" in err and len(err.strip().splitlines()) == 1


def test_a_flow_exports_the_same_bytes_whatever_the_workers(tmp_path, monkeypatch) -> None:
    from numgen import export

    monkeypatch.setattr(export.shards, "POOL_MIN_IMAGES", 0)  # a pool even for this small export
    flow = tiny_flow("cvae", sigma=1.0)
    torch.nn.init.normal_(flow.velocity.out.weight)  # a flow that changes the cvae's digits
    # not in the layout load and the workers give a model (placed, channels-last): export draws
    # with a copy rebuilt as they rebuild it (see the next test)
    config = export.ExportConfig(count=30, shard_size=15, format="webdataset", seed=4, ode_steps=3)
    one = export.export_dataset(tmp_path / "one", config, flow, workers=1)
    export.export_dataset(tmp_path / "two", config, flow, workers=2)
    assert one["images"] == 30 and flow.config.steps == 4  # the caller's model keeps its sampler
    default = dataclasses.replace(config, ode_steps=None)
    export.export_dataset(tmp_path / "default", default, flow, workers=2)

    def tree(folder):
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    assert tree(tmp_path / "one") == tree(tmp_path / "two")  # the workers drew with 3 steps too
    shards = sorted(p.name for p in (tmp_path / "one").rglob("*.tar"))
    assert shards and all(
        next((tmp_path / "one").rglob(name)).read_bytes()
        != next((tmp_path / "default").rglob(name)).read_bytes()
        for name in shards
    )
    assert "--ode-steps=3" in (tmp_path / "one" / "README.md").read_text()


def test_export_draws_an_unplaced_model_as_its_workers_do() -> None:
    """A model passed to export unplaced (not channels-last, as ``numgen.load`` and the worker
    processes give it) is drawn with a copy rebuilt as each worker rebuilds it: the same floats
    in this process as in any worker, so the bytes never depend on the worker count; the
    caller's model keeps its layout. (Drawn unplaced, the convolutions differ from the workers'
    by ~1e-7 on this CPU: too little to change these pixels, not on every CPU.)"""
    from numgen import export

    flow = tiny_flow("cvae", sigma=1.0)
    torch.nn.init.normal_(flow.velocity.out.weight)
    strides = [p.stride() for p in flow.parameters()]
    config = export.ExportConfig(count=4, ode_steps=3)
    drawing = export.shards.drawing_model(config, flow)
    worker = export.shards.rebuild(*export.shards.model_parts(flow))
    styles = generate.draw_styles(flow, 16, 0)
    labels, seeds = np.arange(16) % 10, np.arange(16)
    sampling = config.sampling(flow)
    with export.shards.one_thread():
        drawn = generate.draw(drawing, styles, labels, seeds, sampling)
        assert np.array_equal(drawn, generate.draw(worker, styles, labels, seeds, sampling))
    assert drawing is not flow and [p.stride() for p in flow.parameters()] == strides


def test_dataset_sampler_options_on_a_cvae_are_one_line(tmp_path, capsys) -> None:
    save_pretrained(build_model(BASE), tmp_path / "cvae")
    out = tmp_path / "data"
    args = ["dataset", "--count", "4", "--model", str(tmp_path / "cvae"), "--out", str(out)]
    assert main([*args, "--ode-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "apply to flow models" in err and len(err.strip().splitlines()) == 1


def test_despeckle_removes_small_detached_dots_only() -> None:
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 5:15, 5:8] = 1.0  # a stroke
    x[0, 0, 20, 20:22] = 0.45  # a speck: 0.9 pixels' worth of ink
    x[0, 0, 2, 20:24] = 0.8  # a detached bar (3.2 pixels' worth): a stroke, kept
    x[0, 0, 25, 2:12] = 0.09  # faint, below the ink level: not ink, kept
    x[0, 0, 10, 15:25] = 0.11  # a faint line of 10 pixels (1.1 pixels' worth): kept
    x[0, 0, 14:17, 12] = 0.3  # a dot of 3 faint pixels (0.9): a speck, whatever its shape
    x[1, 0, 20, 22] = 0.5  # another image's speck, beside the first one's: still apart
    x[1, 0, 0, 0] = 1.7  # clamped to 1, a pixel's worth: kept
    cleaned = despeckle(x)
    expected = x.clamp(0, 1)
    expected[0, 0, 20, 20:22] = 0
    expected[0, 0, 14:17, 12] = 0
    expected[1, 0, 20, 22] = 0
    torch.testing.assert_close(cleaned, expected, rtol=0, atol=0)


def test_despeckle_agrees_with_scipy_on_random_ink() -> None:
    """The rule, checked against SciPy's connected components: every 8-connected group above
    the ink level with under SPECK_INK of ink goes, whatever its shape."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=generator)
    x = x * (torch.rand(64, 1, 28, 28, generator=generator) < 0.25)
    pixels = x.numpy()
    structure = np.zeros((3, 3, 3, 3), dtype=bool)
    structure[1, 1] = True
    parts, count = ndimage.label(pixels > INK_LEVEL, structure=structure)
    ink = ndimage.sum_labels(pixels, parts, np.arange(1, count + 1))
    speck = np.concatenate([[False], ink < SPECK_INK])[parts]
    assert 100 < speck.sum() < (pixels > INK_LEVEL).sum()  # both kinds of group are there
    np.testing.assert_array_equal(despeckle(x).numpy(), np.where(speck, 0, pixels))
