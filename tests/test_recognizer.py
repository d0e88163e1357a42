"""The recognizer: shapes, batching, training plumbing, save/load and the bundled weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from numgen.data import load_digits, to_tensor
from numgen.hub import CONFIG_FILE, WEIGHTS_FILE, ModelError, resolve
from numgen.recognizer import (
    SECOND_JUDGE,
    Recognizer,
    RecognizerConfig,
    evaluate_accuracy,
    extract_features,
    predict,
    read,
    train_recognizer,
)


@pytest.fixture
def tiny_model() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(RecognizerConfig(channels=4, features=8)).eval()


def test_forward_and_features_shapes(tiny_model):
    x = torch.rand(5, 1, 28, 28)
    assert tiny_model(x).shape == (5, 10)
    feats = tiny_model.features(x)
    assert feats.shape == (5, 8) and (feats >= 0).all()


def test_predict_and_features_do_not_depend_on_the_batch_size(tiny_model):
    x = torch.rand(23, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels, probs = predict(tiny_model, x, batch_size=23)
    labels_small, probs_small = predict(tiny_model, x, batch_size=4)
    assert labels.shape == (23,) and probs.shape == (23, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    np.testing.assert_array_equal(labels, labels_small)
    np.testing.assert_allclose(probs, probs_small, atol=1e-6)
    feats = extract_features(tiny_model, x, batch_size=5)
    np.testing.assert_allclose(feats, tiny_model.features(x).detach().numpy(), atol=1e-6)


def test_the_resnet_is_another_architecture_with_the_same_interface(tmp_path):
    torch.manual_seed(0)
    model = Recognizer(RecognizerConfig(arch="resnet", channels=4, features=8)).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(m.kernel_size == (1, 1) for m in convs)  # the residual blocks' projections
    assert any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    x = torch.rand(6, 1, 28, 28)
    labels, probs, feats = read(model, x, batch_size=4)
    assert feats.shape == (6, 8) and probs.shape == (6, 10)
    np.testing.assert_array_equal(labels, predict(model, x)[0])
    np.testing.assert_allclose(feats, extract_features(model, x), atol=1e-6)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(Recognizer.from_pretrained(tmp_path)(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="arch='vit'"):
        RecognizerConfig(arch="vit")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="dropout=1.5"):
        RecognizerConfig(dropout=1.5)
    with pytest.raises(ValueError, match="kind='vae'"):
        RecognizerConfig(kind="vae")


def test_training_is_deterministic_and_reports_every_epoch(tiny_digits):
    config = RecognizerConfig(channels=4, features=8, epochs=2, batch_size=16)
    rows = []
    model, result = train_recognizer(tiny_digits, tiny_digits, config, progress=rows.append)
    again, _ = train_recognizer(tiny_digits, tiny_digits, config)
    assert [row["epoch"] for row in rows] == [1, 2] and result["history"] == rows
    assert result["test_accuracy"] == evaluate_accuracy(model, tiny_digits)
    x = to_tensor(tiny_digits.images)
    torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)


def test_save_load_round_trip_gives_identical_logits(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["kind"] == "recognizer"
    loaded = Recognizer.from_pretrained(tmp_path)
    assert loaded.config == tiny_model.config and not loaded.training
    x = torch.rand(7, 1, 28, 28)
    torch.testing.assert_close(loaded(x), tiny_model(x), rtol=0, atol=0)


def test_loading_something_else_fails_clearly(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "kind": "vae"}))
    with pytest.raises(ModelError, match="kind 'vae': not numgen's digit recognizer"):
        Recognizer.from_pretrained(tmp_path)
    with pytest.raises(ModelError, match="no such directory and no bundled model"):
        Recognizer.from_pretrained(tmp_path / "missing")


def test_bundled_recognizer_is_marked_and_small():
    assert Recognizer.from_pretrained().config.kind == "recognizer"
    assert (resolve("recognizer") / WEIGHTS_FILE).stat().st_size < 2_000_000


def test_the_bundled_second_judge_is_a_small_resnet():
    judge2 = Recognizer.from_pretrained(SECOND_JUDGE)
    assert judge2.config.arch == "resnet" and Recognizer.from_pretrained().config.arch == "cnn"
    assert (resolve(SECOND_JUDGE) / WEIGHTS_FILE).stat().st_size < 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["recognizer", SECOND_JUDGE])
def test_bundled_judges_accuracy_on_real_mnist(mnist_dir, name):
    test = load_digits("mnist", "test", mnist_dir).subset(2000)
    assert evaluate_accuracy(Recognizer.from_pretrained(name), test) >= 0.99
