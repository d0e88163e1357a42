"""The evaluation pipeline on tiny trained models: every figure, the report, bad inputs, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from numgen import compose, files, hub
from numgen.cli.main import main
from numgen.data import Digits
from numgen.evaluate import EvalConfig, evaluate, random_subset
from numgen.evaluate_samples import draw_as_shipped
from numgen.models import FlowConfig, VAEConfig, build_model
from numgen.recognizer import Recognizer, RecognizerConfig, predict
from numgen.train import TrainConfig, train

TINY = EvalConfig(samples=100, iwae_k=8, iwae_digits=20, grid_n=6, dataset="embedded")
KEYS = {
    "likelihood": {
        "recon_mse", "recon_bce", "kl", "neg_elbo", "iwae_nll", "iwae_nll_stderr",
        "binarized_neg_elbo",
    },
    "latent": {"knn_accuracy", "grid_agreement"},
    "samples": {
        "recognised", "recognised_second", "frechet", "frechet_second", "precision", "recall",
        "confidence", "class_entropy", "redraw_rate",
    },
    "real": {
        "recognised", "recognised_second", "frechet", "frechet_second", "precision", "recall",
        "confidence", "class_entropy",
    },
    "conditional": {"class_accuracy", "per_class_accuracy", "confusion"},
    "usefulness": {"generated", "real", "digits"},
}  # fmt: skip
SKIPPED_KEYS = {  # what each part of the evaluation that can be skipped would have given
    "likelihood": {"recon_mse", "recon_bce", "kl", "neg_elbo"},
    "iwae": {"iwae_nll", "iwae_nll_stderr", "binarized_neg_elbo"},
    "latent": {"knn_accuracy"},
    "grid": {"grid_agreement"},
    # an unconditional model is asked for no digit to recognise, and has no check to redraw
    "conditional": KEYS["conditional"] | {"recognised", "recognised_second", "redraw_rate"},
    "usefulness": KEYS["usefulness"],
}
# 100 samples in 128-d features: the covariances are singular, and scipy says so
pytestmark = pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")


def train_tiny(run: Path, **model: object) -> Path:
    config = VAEConfig(arch="mlp", hidden=32, **model)
    train(run, config, TrainConfig(dataset="embedded", limit=256, epochs=1), device="cpu")
    return run


@pytest.fixture(scope="module")
def vae_eval(tmp_path_factory) -> tuple[dict, Path]:
    """A Bernoulli VAE with a 3-D latent (the grid lies in its first two dimensions)."""
    tmp = tmp_path_factory.mktemp("vae")
    run = train_tiny(tmp / "run", likelihood="bernoulli", latent_dim=3)
    return evaluate(run, tmp / "eval", TINY, device="cpu"), tmp / "eval"


@pytest.fixture(scope="module")
def cvae_eval(tmp_path_factory) -> tuple[dict, Path]:
    """A conditional VAE with the MSE likelihood."""
    tmp = tmp_path_factory.mktemp("cvae")
    run = train_tiny(tmp / "run", kind="cvae", likelihood="mse")
    return evaluate(run, tmp / "eval", TINY, device="cpu"), tmp / "eval"


@pytest.fixture(scope="module")
def flow_eval(tmp_path_factory) -> tuple[dict, Path]:
    """A tiny flow refining a tiny CVAE, with the train-on-synthetic part (on 1,000 digits)."""
    tmp = tmp_path_factory.mktemp("flow")
    base = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=16, latent_dim=4))
    config = FlowConfig(base=base.config.to_dict(), channels=4, steps=2)
    train(tmp / "run", config, TrainConfig(dataset="embedded", limit=256, epochs=1), device="cpu",
          base=base)  # fmt: skip
    settings = EvalConfig(samples=100, dataset="embedded", tstr=1000, raw=True)
    return evaluate(tmp / "run", tmp / "eval", settings, device="cpu"), tmp / "eval"


def numbers(value: object) -> list[float]:
    """Every number inside nested lists."""
    if isinstance(value, list):
        return [x for item in value for x in numbers(item)]
    return [value]


@pytest.mark.parametrize("which", ["vae_eval", "cvae_eval", "flow_eval"])
def test_metrics_json_has_every_key_and_finite_values(which: str, request) -> None:
    result, out = request.getfixturevalue(which)
    written = json.loads((out / "metrics.json").read_text())
    assert written == result
    missing = set()
    for group, keys in KEYS.items():
        assert set(written[group]) == keys, group
        for key, value in written[group].items():
            if value is None:
                missing.add(key)
            else:
                assert all(math.isfinite(x) for x in numbers(value)), key
    # exactly the figures that do not apply are missing, and the report gets the reason
    assert missing == {key for part in written["skipped"] for key in SKIPPED_KEYS[part]}
    assert written["settings"]["seed"] == 0
    assert written["model"]["source"].endswith("run")
    if written["settings"]["raw"]:  # the raw model's figures beside the shipped ones
        assert set(written["raw"]) == KEYS["samples"] - {"redraw_rate"}
    else:
        assert written["raw"] is None


def test_evaluate_draws_the_digits_numgen_digits_draws() -> None:
    """As shipped: digit d through compose.digits (temperature, sampler, check) with seed
    10·seed + d, whatever the family; its check's redraws are counted."""
    model = hub.load("flow")
    stats: dict[str, int] = {}
    images, asked = draw_as_shipped(model, 30, 1, stats)
    np.testing.assert_array_equal(asked, np.arange(30) % 10)
    for digit in (0, 7):
        np.testing.assert_array_equal(
            images[asked == digit], compose.digits(model, digit, 3, seed=10 + digit)
        )
    assert stats["digits"] == 30
    strict = dataclasses.replace(model.sampling, check=0.9999)
    strict_stats, unchecked_stats = {}, {}
    draw_as_shipped(model, 30, 1, strict_stats, strict)
    draw_as_shipped(model, 30, 1, unchecked_stats, model.sampling_with(check=False))
    assert strict_stats["styles_redrawn"] > stats["styles_redrawn"] >= 0
    assert unchecked_stats["styles_redrawn"] == 0


def test_several_draws_give_each_figure_as_the_mean_and_spread_of_single_draws(
    cvae_eval, tmp_path: Path
) -> None:
    """--draws 2: each sample-quality figure is the mean of the single draws with seeds 0 and 1
    (the seed-0 draw is the default evaluation's), its spread their standard deviation, and the
    report shows both."""
    run = Path(cvae_eval[0]["model"]["source"])
    one = dataclasses.replace(TINY, iwae_k=2, iwae_digits=2)
    seed0, _ = cvae_eval
    seed1 = evaluate(run, tmp_path / "seed1", dataclasses.replace(one, seed=1), device="cpu")
    both = evaluate(run, tmp_path / "both", dataclasses.replace(one, draws=2), device="cpu")
    assert seed0["spread"] is None and set(both["spread"]) == {"samples", "raw", "real"}
    assert both["spread"]["raw"] is None and both["raw"] is None
    for part in ("samples", "real"):
        for key in ("frechet", "frechet_second", "precision", "recall", "confidence"):
            pair = [seed0[part][key], seed1[part][key]]
            assert both[part][key] == pytest.approx(np.mean(pair), rel=1e-12), (part, key)
            assert both["spread"][part][key] == pytest.approx(np.std(pair, ddof=1), rel=1e-9)
        assert seed0[part]["frechet"] != seed1[part]["frechet"], part  # two different draws
    # the real digits' recognised shares are the test set's, the same in every draw
    assert both["real"]["recognised"] == seed0["real"]["recognised"]
    assert both["spread"]["real"]["recognised"] is None
    sd = both["spread"]["samples"]["frechet"]
    report_text = (tmp_path / "both" / "report.md").read_text()
    assert f"{both['samples']['frechet']:.2f} ± {sd:.2f}" in report_text
    assert "mean ± standard deviation of 2 independent draws" in report_text
    assert "--draws 2" in report_text


def test_a_flow_gets_sample_quality_and_train_on_synthetic_but_no_likelihood(flow_eval) -> None:
    result, out = flow_eval
    assert set(result["skipped"]) == {"likelihood", "iwae", "latent", "grid"}
    use = result["usefulness"]
    assert use["digits"] == 1000 and 0 <= use["generated"] <= 1 and 0.5 < use["real"] <= 1
    # the judge's reading of the same 100 digits, drawn and read here apart from evaluate
    drawn, asked = draw_as_shipped(hub.load(out.parent / "run"), 100, 0, {})
    read, _ = predict(Recognizer.from_pretrained(), torch.from_numpy(drawn).unsqueeze(1))
    conditional = result["conditional"]
    assert conditional["class_accuracy"] == pytest.approx(float(np.mean(read == asked)))
    per_class = [float(np.mean(read[asked == d] == d)) for d in range(10)]
    assert conditional["per_class_accuracy"] == pytest.approx(per_class)
    report = (out / "report.md").read_text()
    assert report.count("Not applicable: a flow model has no encoder") == 2
    assert "A FLOW (flow matching refining the digits of a CVAE" in report
    assert f"{100 * use['generated']:.2f} %" in report


def test_the_report_shows_every_picture(vae_eval) -> None:
    _, out = vae_eval
    report = (out / "report.md").read_text()
    pictures = [line.split("](")[1][:-1] for line in report.splitlines() if line.startswith("![")]
    assert {"samples.png", "reconstructions.png", "latent.png", "classes.png", "grid.png"} <= set(
        pictures
    )
    for name in pictures:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
    assert "first two latent dimensions" in report and "27.3 %" in report


def test_iwae_bound_is_at_least_the_elbo(vae_eval) -> None:
    likelihood = vae_eval[0]["likelihood"]
    assert 0 < likelihood["iwae_nll"] <= likelihood["binarized_neg_elbo"]
    assert likelihood["iwae_nll_stderr"] > 0


def test_conditional_model_gets_per_class_accuracy_and_a_confusion_matrix(cvae_eval) -> None:
    result, out = cvae_eval
    conditional = result["conditional"]
    confusion = np.array(conditional["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == TINY.samples
    np.testing.assert_allclose(conditional["per_class_accuracy"], np.diag(confusion) / 10)
    assert conditional["class_accuracy"] == pytest.approx(np.trace(confusion) / TINY.samples)
    assert (out / "confusion.png").is_file() and (out / "per_class.png").is_file()
    # no grid test for a conditional model, no nats for an MSE one: each says why
    assert result["latent"]["grid_agreement"] is None and not (out / "grid.png").exists()
    assert "draws the digit it is given" in result["skipped"]["grid"]
    assert "mse" in result["skipped"]["iwae"]
    report_text = (out / "report.md").read_text()
    assert "Not run" in report_text
    assert "(K = 8) | — |" in report_text and "— ± —" not in report_text


def test_random_subset_is_seeded_and_keeps_the_order() -> None:
    digits = Digits(np.zeros((50, 28, 28), np.uint8), np.repeat(np.arange(10), 5), "sorted")
    first, again = random_subset(digits, 20, seed=1), random_subset(digits, 20, seed=1)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert len(first) == 20 and np.all(np.diff(first.labels) >= 0) and len(set(first.labels)) > 5
    assert random_subset(digits, 100, seed=1) is digits


def test_eval_config_names_a_bad_size() -> None:
    with pytest.raises(ValueError, match="iwae_k=0"):
        EvalConfig(iwae_k=0)
    with pytest.raises(ValueError, match="samples=3: must exceed pr_k=3"):
        EvalConfig(samples=3)


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture
def model_for_32px(tmp_path: Path) -> Path:
    """An MLP VAE's files whose weights were made for 32×32 images (1,024 pixels)."""
    model = build_model(VAEConfig(arch="mlp", hidden=8))
    weights = model.state_dict()
    weights["encoder.net.0.weight"] = torch.zeros(8, 32 * 32)
    weights["decoder.net.2.weight"] = torch.zeros(32 * 32, 8)
    weights["decoder.net.2.bias"] = torch.zeros(32 * 32)
    files.save_weights(tmp_path / hub.WEIGHTS_FILE, weights)
    files.write_json(tmp_path / hub.CONFIG_FILE, model.config.to_dict())
    return tmp_path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp, "not a model directory (missing config.json)"),
        (lambda tmp: "no-such-model", "no such directory and no bundled model"),
        (lambda tmp: "recognizer", "kind 'recognizer': not a generator of digits"),
    ],
    ids=["empty directory", "unknown name", "recognizer"],
)
def test_bad_models_get_one_clear_error(make, message: str, tmp_path: Path) -> None:
    with pytest.raises(hub.ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hub.load(make(tmp_path))


def test_weights_for_another_image_size_are_named(model_for_32px: Path) -> None:
    with pytest.raises(hub.ModelError, match=r"encoder.net.0.weight has shape \(8, 1024\)"):
        hub.load(model_for_32px)


# --- the command line ----------------------------------------------------------------------------


def test_cli_evaluate_writes_the_report(cvae_eval, tmp_path: Path, capsys) -> None:
    run = Path(cvae_eval[0]["model"]["source"])  # conditional: no 30×30 grid to draw, faster
    out = tmp_path / "eval"
    args = ["--samples", "50", "--iwae-k", "4", "--iwae-digits", "10", "--dataset", "embedded"]
    assert main(["evaluate", str(run), "--out", str(out), *args, "--device", "cpu"]) == 0
    assert (out / "report.md").is_file() and (out / "metrics.json").is_file()
    assert "Fréchet" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-model"], "no bundled model of that name"),
        (["recognizer"], "not a generator"),
        (["32px"], "28×28"),
        (["32px", "--iwae-k", "0"], "Invalid value for '--iwae-k'"),
        (["32px", "--draws", "0"], "Invalid value for '--draws'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, model_for_32px: Path, tmp_path: Path, capsys
) -> None:
    args = [str(model_for_32px) if a == "32px" else a for a in args]
    assert main(["evaluate", *args, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_recognizer_train_saves_what_it_trains(tmp_path: Path, monkeypatch, capsys) -> None:
    """The command's wiring: options in, the trained model saved. (Training itself is tested in
    test_recognizer.py; a stand-in keeps this test fast.)"""
    calls = []

    def fake_training(train_set, test_set, config, device, progress):
        calls.append((len(train_set), len(test_set), config.epochs, config.seed, device.type))
        progress({"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.9, "seconds": 1.0})
        return Recognizer(RecognizerConfig(channels=2, features=8)).eval(), {"test_accuracy": 0.9}

    monkeypatch.setattr("numgen.cli.evaluate.train_recognizer", fake_training)
    out = tmp_path / "judge"
    assert main(["recognizer", "train", "--out", str(out), "--epochs", "3", "--seed", "7",
                 "--dataset", "embedded", "--device", "cpu"]) == 0  # fmt: skip
    assert calls == [(4000, 1000, 3, 7, "cpu")]
    assert Recognizer.from_pretrained(out).config.features == 8
    assert "test accuracy 90.00%" in capsys.readouterr().out
