"""The networks and the loss: shapes, config validation, the closed-form KL."""

import pytest
import torch

from numgen.models import CVAE, VAE, VAEConfig, build_model, vae_loss


@pytest.mark.parametrize("kind", ["vae", "cvae"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_shapes(kind: str, arch: str) -> None:
    model = build_model(VAEConfig(kind=kind, arch=arch, latent_dim=3))
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    logits, mu, logvar = model(x, y, generator=torch.Generator().manual_seed(0))
    assert logits.shape == (5, 1, 28, 28)
    assert mu.shape == logvar.shape == (5, 3)
    images = model.sample(4, torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_registry_builds_the_right_class() -> None:
    assert type(build_model(VAEConfig(kind="vae"))) is VAE
    assert type(build_model(VAEConfig(kind="cvae"))) is CVAE


def test_default_config_is_the_original_project() -> None:
    config = VAEConfig()
    assert (config.arch, config.latent_dim, config.likelihood, config.hidden) == (
        "conv",
        2,
        "mse",
        16,
    )
    assert VAEConfig(arch="mlp").hidden == 400


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"arch": "rnn"}, "arch='rnn'"),
        ({"likelihood": "l1"}, "likelihood='l1'"),
        ({"latent_dim": 0}, "latent_dim=0"),
        ({"beta": -1.0}, "beta=-1.0"),
        ({"kind": "gan"}, "kind='gan'"),
        ({"depth": 0}, "depth=0"),
    ],
)
def test_bad_config_names_the_value(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        VAEConfig(**values)


def test_unknown_config_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown config keys"):
        VAEConfig.from_dict({"arch": "mlp", "layers": 3})


def test_kl_is_zero_at_the_prior_and_matches_closed_form() -> None:
    x = torch.full((2, 1, 28, 28), 0.5)
    logits = torch.zeros_like(x)  # sigmoid(0) = 0.5: perfect MSE reconstruction
    zero = torch.zeros(2, 2)
    parts = vae_loss(x, logits, zero, zero, "mse")
    assert parts["recon"].item() == pytest.approx(0.0)
    assert parts["kl"].item() == pytest.approx(0.0)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    expected = 0.5 * (1.0**2) + 0.5 * (torch.e**2 - 1 - 2.0)
    parts = vae_loss(x[:1], logits[:1], mu, logvar, "bernoulli", beta=2.0)
    assert parts["kl"].item() == pytest.approx(expected, rel=1e-5)
    assert parts["recon"].item() == pytest.approx(
        784 * torch.log(torch.tensor(2.0)).item(), rel=1e-5
    )
    assert parts["loss"].item() == pytest.approx(parts["recon"].item() + 2.0 * expected, rel=1e-5)


def test_conditional_model_needs_valid_labels() -> None:
    model = build_model(VAEConfig(kind="cvae", arch="mlp"))
    with pytest.raises(ValueError, match="needs labels"):
        model.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        model.decode(torch.zeros(2, 2), torch.tensor([3, 10]))


def test_mlp_depth_adds_hidden_layers_and_keeps_depth_one_weights() -> None:
    one = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=8))
    assert list(one.decoder.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight",
                                              "net.2.bias"]  # fmt: skip
    two = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=8, depth=2))
    linears = [m for m in two.decoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 8), (8, 8), (8, 784)]
    assert len([m for m in two.encoder.net if isinstance(m, torch.nn.Linear)]) == 2


def test_soft_labels_blend_digits() -> None:
    model = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=8)).eval()
    z = torch.zeros(1, 2)
    three = torch.nn.functional.one_hot(torch.tensor([3]), 10).float()
    torch.testing.assert_close(model.decode(z, three), model.decode(z, torch.tensor([3])))
    with pytest.raises(ValueError, match="soft labels must have shape"):
        model.decode(z, torch.ones(1, 9))
