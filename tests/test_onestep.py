"""The one-step family: config checks, distillation from a flow, the learnt style prior, the
critic's gradients, training and resume, and the family through compose, export, web, evaluate
and the CLI on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from numgen import compose, export, generate
from numgen.cli.main import main
from numgen.errors import ConfigError
from numgen.hub import load, place, save_pretrained
from numgen.models import FlowConfig, OneStepConfig, build_model, config_from_dict, onestep
from numgen.models.sampling import Sampling
from numgen.models.styles import StyleAnchors, StylePrior
from numgen.train import TrainConfig
from resume import assert_resume_equals_an_uninterrupted_run
from tiny_models import BASE


def tiny_teacher():
    torch.manual_seed(0)
    flow = build_model(FlowConfig(base=BASE.to_dict(), channels=4, steps=2, solver="ab2"))
    flow.adopt(build_model(BASE))
    torch.nn.init.normal_(flow.velocity.out.weight, std=0.1)  # a field that moves the start
    # style Gaussians as if fitted: class d's latents centred on d / 10
    flow.moment_count.fill_(100.0)
    flow.moment_sum.copy_(100.0 * torch.arange(10.0)[:, None].expand(10, 4) / 10)
    flow.moment_outer.copy_(100.0 * (torch.eye(4) + (torch.arange(10.0) / 10)[:, None, None] ** 2))
    return flow.eval()


def tiny_onestep(**overrides):
    teacher = tiny_teacher()
    sizes = {"channels": 4, "prior_layers": 2, "prior_hidden": 8, "critic_channels": 4}
    model = build_model(OneStepConfig(teacher=teacher.config.to_dict(), **(sizes | overrides)))
    model.adopt(teacher)
    return model.eval(), teacher


def train_student(model, x, y, part: str, lr: float, steps: int = 30) -> list[float]:
    """The student trained on one part of the loss alone; that part's value at each step."""
    model.train()
    optimiser = torch.optim.Adam(model.student.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        value = model.loss(x, y, torch.Generator().manual_seed(step))[part]
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        losses.append(value.item())
    return losses


def quick(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, dataset="embedded", limit=256)


def test_config_round_trips_and_refuses_bad_values() -> None:
    teacher = FlowConfig(base=BASE.to_dict()).to_dict()
    config = OneStepConfig(teacher=teacher, adversarial=0.1)
    assert config_from_dict(config.to_dict()) == config
    bad = [
        ({"teacher": None}, "teacher: the config of the flow"),
        ({"teacher": FlowConfig(start="noise").to_dict()}, "start 'cvae'"),
        ({"channels": 0}, "channels=0"),
        ({"prior_layers": -1}, "prior_layers=-1"),
        ({"adversarial": math.inf}, "adversarial=inf"),
        ({"legible": -1.0}, "legible=-1.0"),
        ({"temperature": -0.5}, "temperature=-0.5"),
        ({"check": 1.5}, "check=1.5"),
        ({"anchors": -1}, "anchors=-1"),
        ({"anchors": 10, "anchor_pull": 1.5}, "anchor_pull=1.5: must be between 0 and 1"),
        ({"anchor_pull": 0.5}, "keep some with anchors > 0"),
        ({"balance_anchors": True}, "balance_anchors: only kept styles can be balanced"),
        ({"anchors": 10, "anchor_pull": 0.5, "anchor_floor": 1.0}, "anchor_floor=1.0: must be"),
        ({"anchors": 10, "anchor_floor": 0.5}, "pull them with anchor_pull > 0"),
        ({"anchors": 10, "anchor_pull": 0.9, "loose_pull": 1.0}, "loose_pull=1.0: must be"),
        ({"anchors": 10, "anchor_pull": 0.6, "loose_pull": 0.7}, "a looser pull than anchor_pull"),
        ({"loose_pull": 0.5}, "a looser pull than anchor_pull=0.0"),
    ]
    for values, message in bad:
        with pytest.raises(ConfigError, match=message):
            OneStepConfig(**{"teacher": teacher, **values})
    with pytest.raises(ConfigError, match="unknown config keys"):
        OneStepConfig.from_dict({"kind": "onestep", "teacher": teacher, "steps": 3})


def test_a_fresh_student_is_the_teachers_single_euler_step() -> None:
    model, teacher = tiny_onestep()
    styles, labels, seeds = torch.randn(6, 4), torch.arange(6), torch.arange(6) + 7
    one_euler_step = teacher.draw(labels, styles, seeds, Sampling(steps=1, solver="euler"))
    # the prior starts as the identity and the student as the teacher's field
    torch.testing.assert_close(model.draw(labels, styles, seeds), one_euler_step)


def test_style_prior_is_invertible_and_its_likelihood_is_exact() -> None:
    torch.manual_seed(1)
    prior = StylePrior(dim=5, layers=3, hidden=8, classes=10)
    for layer in prior.layers:  # away from the identity it starts as
        torch.nn.init.normal_(layer.net[-1].weight, std=0.5)
    s, onehot = torch.randn(7, 5), torch.eye(10)[torch.arange(7)]
    w = prior(s, onehot)
    back, log_det = prior.inverse(w, onehot)
    torch.testing.assert_close(back, s, atol=1e-5, rtol=1e-5)
    # log |det ds/dw| against autograd's Jacobian, item by item
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(
            lambda v, i=i: prior.inverse(v[None], onehot[i : i + 1])[0][0], w[i]
        )
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jacobian)[1], atol=1e-4,
                                   rtol=1e-4)  # fmt: skip


def test_anchors_keep_the_first_styles_of_each_class_and_pull_towards_the_nearest() -> None:
    anchors = StyleAnchors(dim=3, per_class=4, classes=10)
    first = torch.randn(6, 3)
    anchors.keep(first, torch.tensor([2, 2, 5, 2, 2, 2]))  # class 2: 5 styles, room for 4
    anchors.keep(torch.randn(2, 3), torch.tensor([2, 5]))  # class 2 is full; 5 takes one more
    assert anchors.count.tolist() == [0, 0, 4, 0, 0, 2, 0, 0, 0, 0]
    torch.testing.assert_close(anchors.styles[2], first[[0, 1, 3, 4]], rtol=0, atol=0)
    torch.testing.assert_close(anchors.styles[5, 0], first[2], rtol=0, atol=0)
    styles, classes = torch.randn(20, 3) * 2, torch.tensor([2, 5, 7, 2] * 5)
    pulled, chosen = anchors.pull(styles, classes, 0.25)
    for style, c, moved, index in zip(styles, classes.tolist(), pulled, chosen, strict=True):
        kept = anchors.styles[c, : anchors.count[c]]
        if len(kept) == 0:  # class 7 has none kept: left where it is
            torch.testing.assert_close(moved, style, rtol=0, atol=0)
            assert index == -1
            continue
        assert index == ((kept - style) ** 2).sum(1).argmin()
        torch.testing.assert_close(moved, style + 0.25 * (kept[index] - style))
    torch.testing.assert_close(anchors.pull(styles, classes, 0.0)[0], styles, rtol=0, atol=0)


def shares(anchors: StyleAnchors, temperature: float, samples: int = 40_000) -> torch.Tensor:
    """The share of styles ~ N(0, T² I) that goes to each kept style of class 0."""
    styles = torch.randn(
        samples, anchors.styles.shape[2], generator=torch.Generator().manual_seed(9)
    )
    chosen = anchors.choose(styles * temperature, 0)
    return torch.bincount(chosen, minlength=int(anchors.count[0])) / samples


def test_balanced_anchors_are_each_chosen_equally_often() -> None:
    # eight kept styles: one in the middle, hemmed in by six close around it, one far out; the
    # nearest rule gives the middle one a sliver of the draws and the ring the most
    ring = [[0.3 * math.cos(a), 0.3 * math.sin(a)] for a in np.linspace(0, 2 * math.pi, 7)[:6]]
    kept = torch.tensor([[0.0, 0.0], *ring, [3.0, 0.0]])
    anchors = StyleAnchors(dim=2, per_class=8, classes=2, balanced=True)
    anchors.keep(kept, torch.zeros(8, dtype=torch.int64))
    nearest = shares(anchors, 1.0)
    assert nearest.min() < 0.02 and nearest.max() > 0.15  # far from 1/8 each
    anchors.balance(1.0)
    balanced = shares(anchors, 1.0)
    assert (balanced - 1 / 8).abs().max() < 0.02, balanced
    assert anchors.offsets[1].abs().sum() == 0  # class 1 keeps nothing: nothing to balance
    again = StyleAnchors(dim=2, per_class=8, classes=2, balanced=True)
    again.keep(kept, torch.zeros(8, dtype=torch.int64))
    again.balance(1.0)  # seeded: the same offsets
    torch.testing.assert_close(again.offsets, anchors.offsets, rtol=0, atol=0)
    # a pull goes to the kept style the balanced rule chooses
    styles = torch.randn(50, 2)
    chosen = kept[anchors.choose(styles, 0)]
    pulled = anchors.pull(styles, torch.zeros(50, dtype=torch.int64), 0.5)[0]
    torch.testing.assert_close(pulled, styles + 0.5 * (chosen - styles))
    # the offsets are saved only where they are used
    assert "offsets" in anchors.state_dict()
    assert "offsets" not in StyleAnchors(dim=2, per_class=8, classes=2).state_dict()


def test_training_balances_the_kept_styles_at_each_epochs_end(tmp_path) -> None:
    trained, teacher = tiny_onestep(prior_layers=0, anchors=6, anchor_pull=0.5)
    trained.anchors.keep(torch.randn(60, 4), torch.arange(60) % 10)
    sizes = {"channels": 4, "prior_layers": 0, "critic_channels": 4}
    config = OneStepConfig(teacher=teacher.config.to_dict(), anchors=6, anchor_pull=0.5,
                           balance_anchors=True, **sizes)  # fmt: skip
    onwards = build_model(config)
    onwards.adopt(trained)  # an unbalanced model's kept styles, to be balanced
    torch.testing.assert_close(onwards.anchors.styles, trained.anchors.styles, rtol=0, atol=0)
    assert onwards.anchors.offsets.abs().sum() == 0
    onwards.end_epoch()
    fitted = onwards.anchors.offsets.clone()
    assert fitted.abs().sum() > 0
    onwards.anchors.offsets.zero_()  # to see whether the next epoch's end fits them again
    onwards.anchors.keep(torch.randn(10, 4), torch.arange(10))  # every class is full: none kept
    onwards.end_epoch()
    assert onwards.anchors.offsets.abs().sum() == 0  # nothing new: the ~100 s fit is skipped
    onwards.anchors.count[0] -= 1
    onwards.anchors.keep(trained.anchors.styles[0, -1:], torch.tensor([0]))  # kept again
    onwards.end_epoch()
    torch.testing.assert_close(onwards.anchors.offsets, fitted, rtol=0, atol=0)  # seeded
    trained.end_epoch()  # unbalanced: nothing to fit
    assert trained.anchors.offsets.abs().sum() == 0
    save_pretrained(onwards, tmp_path / "m")
    torch.testing.assert_close(load(tmp_path / "m").anchors.offsets, onwards.anchors.offsets,
                               rtol=0, atol=0)  # fmt: skip
    assert_resume_equals_an_uninterrupted_run(tmp_path / "runs", config, quick(2), base=teacher)
    weights = load_file(str(tmp_path / "runs" / "a" / "model.safetensors"))
    assert weights["anchors.offsets"].abs().sum() > 0  # training fitted them


def test_training_keeps_training_styles_and_draws_pull_towards_them(tmp_path) -> None:
    model, _ = tiny_onestep(prior_layers=0, anchors=3, anchor_pull=1.0)
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    model.eval()
    model.loss(x, y)  # evaluation never keeps a style
    assert model.anchors.count.sum() == 0
    model.train()
    model.loss(x[:25], y[:25])  # classes 0-4 have 3 digits here, 5-9 two
    assert model.anchors.count.tolist() == [3] * 5 + [2] * 5
    with torch.no_grad():
        onehot = model._onehot(y[:25], 25)
        whitened = model.teacher.whiten(model.teacher.base.encode(x[:25], onehot)[0], onehot)
    torch.testing.assert_close(model.anchors.styles[0, :3], whitened[[0, 10, 20]])
    model.eval()
    # pulled all the way, every digit of a class is drawn in one of its class's kept styles
    labels = torch.full((8,), 3)
    styles = torch.randn(8, model.style_dim) * 3
    drawn = model.draw(labels, styles, torch.zeros(8, dtype=torch.int64))
    kept = model.draw(torch.full((3,), 3), model.anchors.styles[3, :3],
                      torch.zeros(3, dtype=torch.int64))  # fmt: skip
    for digit in drawn:
        assert min((digit - k).abs().max() for k in kept) < 1e-5
    save_pretrained(model, tmp_path / "m")  # the kept styles travel with the weights
    again = load(tmp_path / "m")
    torch.testing.assert_close(again.anchors.styles, model.anchors.styles, rtol=0, atol=0)
    assert again.anchors.count.tolist() == model.anchors.count.tolist()


def test_loss_parts_and_which_weights_each_part_trains() -> None:
    model, _ = tiny_onestep(adversarial=0.5)
    model.train()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    parts = model.loss(x, y, torch.Generator().manual_seed(0))
    assert set(parts) == {"loss", "distill", "prior", "critic", "adversarial"}
    assert all(torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())  # frozen
    assert all(p.grad is not None for p in model.student.parameters())
    assert any(p.grad is not None for p in model.prior.parameters())
    # the critic learns from its own hinge loss only: the student's adversarial term reads it
    # through detached weights, so the critic's gradient equals that of its loss alone
    critic_grads = [p.grad.clone() for p in model.critic.parameters()]
    model.zero_grad()
    model.loss(x, y, torch.Generator().manual_seed(0))["critic"].backward()
    for got, want in zip(critic_grads, (p.grad for p in model.critic.parameters()), strict=True):
        torch.testing.assert_close(got, want)
    assert all(p.grad is None or not p.grad.any() for p in model.student.parameters())


class InkReader(torch.nn.Module):
    """A toy reader: it reads a digit's amount of ink (digit d: a mean of 0.2 + d / 20)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -500 * (x.mean((1, 2, 3))[:, None] - torch.arange(10) / 20 - 0.2) ** 2


class SideReader(torch.nn.Module):
    """A toy reader: a digit on the far side of a plane in pixel space (along ``direction``,
    past ``level``) reads as a sure 0, any other as a sure 1."""

    def __init__(self, direction: torch.Tensor, level: float) -> None:
        super().__init__()
        self.direction, self.level = direction, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = ((x * self.direction).sum((1, 2, 3)) > self.level).float()
        return 20 * torch.nn.functional.pad(torch.stack([zero, 1 - zero], dim=1), (0, 8))


def test_kept_styles_whose_drawings_the_reader_misreads_are_dropped_and_the_rest_balanced(
    monkeypatch,
) -> None:
    monkeypatch.setattr(onestep, "ANCHOR_READS", 4_000)  # ~500 drawings of each kept style
    model, _ = tiny_onestep(prior_layers=0, anchors=8, anchor_pull=1.0, balance_anchors=True,
                            anchor_floor=0.5)  # fmt: skip
    assert model.wants_reader
    # kept styles of 0s at two ends of style space, in turn: near (3, 3, 3, 3), near its opposite
    ends = torch.full((4, 4), 3.0) + torch.eye(4)
    kept = torch.stack([ends, -ends], dim=1).reshape(8, 4)
    model.anchors.keep(kept, torch.zeros(8, dtype=torch.long))
    zeros = torch.zeros(8, dtype=torch.long)
    digits = model.draw(zeros, kept, torch.arange(8))  # pulled all the way: the kept styles
    direction = digits[0::2].mean(0) - digits[1::2].mean(0)
    side = (digits * direction).sum((1, 2, 3))
    assert side[0::2].min() > side[1::2].max() + 1  # the two ends draw well apart
    with pytest.raises(ValueError, match="use_reader"):
        model.end_epoch()
    model.use_reader(SideReader(direction, float(side[0::2].min() + side[1::2].max()) / 2))
    model.end_epoch()
    assert model.anchors.count.tolist() == [4] + [0] * 9  # the far end reads as 1s: dropped
    torch.testing.assert_close(model.anchors.styles[0, :4], kept[0::2], rtol=0, atol=0)
    assert model.anchors.styles[0, 4:].abs().sum() == 0
    fitted = model.anchors.offsets[0, :4].clone()
    assert fitted.abs().sum() > 0  # balanced over the four left
    shares_left = shares(model.anchors, model.config.temperature)
    assert (shares_left - 0.25).abs().max() < 0.05
    model.end_epoch()  # nothing kept since: nothing judged or fitted again
    assert model.anchors.count[0] == 4
    torch.testing.assert_close(model.anchors.offsets[0, :4], fitted, rtol=0, atol=0)


def test_kept_styles_whose_drawings_read_surely_at_the_loose_pull_take_it(monkeypatch) -> None:
    monkeypatch.setattr(onestep, "ANCHOR_READS", 4_000)
    model, _ = tiny_onestep(prior_layers=0, anchors=8, anchor_pull=1.0, loose_pull=0.8)
    assert model.wants_reader
    ends = torch.full((4, 4), 3.0) + torch.eye(4)  # kept 0s near (3, 3, 3, 3) and its opposite
    kept = torch.stack([ends, -ends], dim=1).reshape(8, 4)
    model.anchors.keep(kept, torch.zeros(8, dtype=torch.long))
    zeros = torch.zeros(8, dtype=torch.long)
    digits = model.draw(zeros, kept, torch.arange(8))
    direction = digits[0::2].mean(0) - digits[1::2].mean(0)
    side = (digits * direction).sum((1, 2, 3))
    model.use_reader(SideReader(direction, float(side[0::2].min() + side[1::2].max()) / 2))
    model.end_epoch()
    # the near end reads as a sure 0: the loose pull; the far end reads as 1s: anchor_pull
    torch.testing.assert_close(model.anchors.pulls[0], torch.tensor([0.8, 1.0] * 4))
    assert (model.anchors.pulls[1:] == -1).all()  # classes that keep none: no pull of their own
    assert model.anchors.count[0] == 8  # nothing dropped without a floor
    styles = torch.randn(200, 4) * 3
    pulled, chosen = model.anchors.pull(styles, zeros[:1].expand(200), 1.0)
    shares = torch.tensor([0.8, 1.0])[chosen % 2][:, None]
    torch.testing.assert_close(pulled, styles + shares * (kept[chosen] - styles))
    # the pulls are saved with the model, only where used
    assert "anchors.pulls" in model.state_dict()
    assert "anchors.pulls" not in tiny_onestep(anchors=8, anchor_pull=1.0)[0].state_dict()


def test_the_legible_term_teaches_the_student_to_draw_what_the_reader_reads() -> None:
    model, _ = tiny_onestep(prior_layers=0, legible=1.0)
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    with pytest.raises(ValueError, match="use_reader"):
        model.loss(x, y, torch.Generator().manual_seed(0))
    model.use_reader(InkReader())
    assert not any(name.startswith("reader") for name in model.state_dict())  # never saved
    styles, labels, seeds = torch.randn(200, 4), torch.arange(200) % 10, torch.arange(200)

    def read_as_asked() -> float:  # digits drawn from sampled styles, as they are used
        model.eval()
        return (InkReader()(model.draw(labels, styles, seeds)).argmax(1) == labels).float().mean()

    before = read_as_asked()
    losses = train_student(model, x, y, "legible", lr=1e-2)
    assert all(p.grad is None for p in model.teacher.parameters())
    assert losses[-1] < 0.2 * losses[0]
    assert before < 0.3 and read_as_asked() > 0.8


def test_a_onestep_trains_on_from_a_trained_one_of_the_same_teacher() -> None:
    trained, teacher = tiny_onestep(adversarial=0.5)
    torch.nn.init.normal_(trained.student.out.weight, std=0.2)  # as if trained
    sizes = {"channels": 4, "prior_layers": 2, "prior_hidden": 8, "critic_channels": 4}
    config = OneStepConfig(teacher=teacher.config.to_dict(), adversarial=0.5, legible=1.0, **sizes)
    onwards = build_model(config)
    onwards.adopt(trained)
    for part in ("teacher", "student", "critic", "prior"):
        want = getattr(trained, part).state_dict()
        for name, value in getattr(onwards, part).state_dict().items():
            torch.testing.assert_close(value, want[name], rtol=0, atol=0)
    narrow = build_model(
        OneStepConfig(teacher=teacher.config.to_dict(), **(sizes | {"channels": 2}))
    )
    with pytest.raises(ValueError, match="4 channels wide, not 2"):
        narrow.adopt(trained)


def test_distillation_brings_the_student_to_the_teachers_digits() -> None:
    model, teacher = tiny_onestep(prior_layers=0)
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    losses = train_student(model, x, y, "distill", lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]


def test_train_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    _, teacher = tiny_onestep()
    config = OneStepConfig(teacher=teacher.config.to_dict(), channels=4, prior_layers=2,
                           prior_hidden=8, adversarial=0.1, critic_channels=4)  # fmt: skip
    assert_resume_equals_an_uninterrupted_run(tmp_path, config, quick(2), base=teacher)
    weights = load_file(str(tmp_path / "a" / "model.safetensors"))
    for name, value in teacher.state_dict().items():  # the teacher is kept exactly, frozen
        torch.testing.assert_close(weights[f"teacher.{name}"], value, rtol=0, atol=0)


def test_seeds_give_the_same_bytes_through_save_load_and_every_writing_feature(tmp_path) -> None:
    model, _ = tiny_onestep()
    save_pretrained(model, tmp_path / "m")
    again = load(tmp_path / "m")
    # load places a model in the memory layout it runs fastest in; the same layout gives the same
    # bytes (another layout's convolutions may differ in the last bit on some CPUs)
    model = place(model, "cpu")
    styles = generate.draw_styles(model, 4, 0)
    np.testing.assert_array_equal(
        generate.draw(model, styles, [1, 2, 3, 4]), generate.draw(again, styles, [1, 2, 3, 4])
    )
    sevens = compose.digits(again, 7, 5, seed=1)
    assert sevens.shape == (5, 28, 28)
    np.testing.assert_array_equal(sevens, compose.digits(model, 7, 5, seed=1))
    picture = compose.write(again, "2026", style_seed=3, seed=1)
    assert np.array_equal(np.asarray(picture), np.asarray(compose.write(model, "2026", None, 3, 1)))
    assert compose.morph(again, 3, 8, steps=4).shape == (4, 28, 28)
    ink = np.zeros((40, 30), np.float32)
    ink[8:32, 12:18] = 1.0
    style = compose.style_from_image(again, ink)
    assert style.shape == (4,) and np.isfinite(style).all()


def test_exports_the_same_bytes_whatever_the_workers(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export.shards, "POOL_MIN_IMAGES", 0)
    model, _ = tiny_onestep()
    config = export.ExportConfig(count=20, shard_size=10, format="webdataset", seed=4)
    one = export.export_dataset(tmp_path / "one", config, model, workers=1)
    export.export_dataset(tmp_path / "two", config, model, workers=2)
    assert one["images"] == 20

    def tree(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                if p.is_file()}  # fmt: skip

    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_web_writes_with_a_onestep_model(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from numgen.web import create_app

    model, _ = tiny_onestep()
    save_pretrained(model, tmp_path / "m")
    with TestClient(create_app({"fast": str(tmp_path / "m")})) as client:
        first = client.get("/api/write", params={"text": "2026", "style_seed": 3, "model": "fast"})
        again = client.get("/api/write", params={"text": "2026", "style_seed": 3, "model": "fast"})
        assert first.status_code == 200 and first.headers["content-type"] == "image/png"
        assert first.content == again.content
        assert client.get("/api/write", params={"text": "20x6", "model": "fast"}).status_code == 422


def test_cli_trains_and_refuses_a_teacher_that_is_no_flow(tmp_path, capsys) -> None:
    _, teacher = tiny_onestep()
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(build_model(BASE), tmp_path / "cvae")
    run = tmp_path / "run"
    args = ["train", str(run), "--model", "onestep", "--dataset", "embedded", "--limit", "128",
            "--epochs", "1", "--batch-size", "64", "--prior-layers", "2"]  # fmt: skip
    assert main([*args, "--base", str(tmp_path / "cvae")]) == 2
    err = capsys.readouterr().err
    assert "onestep distils a flow (or trains on from a onestep), not a cvae" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*args, "--base", str(tmp_path / "teacher"), "--adversarial", "-1"]) == 2
    assert "adversarial=-1.0" in capsys.readouterr().err
    assert main([*args, "--base", str(tmp_path / "teacher"), "--channels", "0"]) == 2
    assert "channels=0" in capsys.readouterr().err
    assert not run.exists()
    assert main([*args, "--base", str(tmp_path / "teacher"), "--legible", "0.5"]) == 0
    trained = load(run)
    assert trained.config.kind == "onestep" and trained.config.channels == 4  # the teacher's
    assert trained.config.legible == 0.5  # and it draws as its teacher does:
    assert trained.sampling.temperature == teacher.sampling.temperature
    assert trained.sampling.check == teacher.sampling.check
    assert "legible" in (run / "metrics.jsonl").read_text()  # trained with the checker's term
    onwards = ["train", str(tmp_path / "onwards"), *args[2:], "--base", str(run),
               "--anchors", "4", "--anchor-pull", "0.5", "--temperature", "1.3",
               "--balance-anchors"]  # fmt: skip
    assert main(onwards) == 0
    anchored = load(tmp_path / "onwards")
    assert anchored.config.teacher == trained.config.teacher
    assert (anchored.config.anchors, anchored.config.anchor_pull) == (4, 0.5)
    assert anchored.config.balance_anchors and anchored.anchors.offsets.abs().sum() > 0
    assert anchored.sampling.temperature == 1.3
    # the embedded set's first 128 training digits, the classes in turn, fill every room of 4
    assert anchored.anchors.count.tolist() == [4] * 10
    bad = ["train", str(tmp_path / "bad"), *args[2:], "--base", str(run), "--anchor-pull", "1"]
    assert main(bad) == 2
    assert "keep some with anchors > 0" in capsys.readouterr().err
    assert main([*bad[:-2], "--balance-anchors"]) == 2
    assert "only kept styles can be balanced" in capsys.readouterr().err
    assert main([*bad[:-2], "--anchors", "4", "--anchor-floor", "0.5"]) == 2
    assert "pull them with anchor_pull > 0" in capsys.readouterr().err
    assert main([*bad[:-2], "--anchors", "4", "--anchor-pull", "0.5", "--loose-pull", "0.6"]) == 2
    assert "loose_pull=0.6: a looser pull than anchor_pull=0.5" in capsys.readouterr().err
    assert main(["write", "2026", "--model", str(run), "--out", str(tmp_path / "n.png")]) == 0
    assert (tmp_path / "n.png").is_file()


def test_evaluate_measures_a_onestep_model(tmp_path) -> None:
    from numgen.evaluate import EvalConfig, evaluate

    model, _ = tiny_onestep()
    save_pretrained(model, tmp_path / "m")
    result = evaluate(tmp_path / "m", tmp_path / "eval", EvalConfig(samples=100,
                      dataset="embedded"), device="cpu")  # fmt: skip
    assert result["model"]["kind"] == "onestep"
    # an untrained student's digits lie farther from MNIST than real digits do
    assert math.isfinite(result["samples"]["frechet"])
    assert result["samples"]["frechet"] > result["real"]["frechet"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "A ONE-STEP model (a flow distilled into one evaluation of a U-Net 4 channels" in report
