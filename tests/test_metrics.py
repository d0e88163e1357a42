"""The metric maths on cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from numgen import metrics
from numgen.models import VAEConfig, build_model, vae_loss

# --- classification ------------------------------------------------------------------------------


def test_accuracy_and_confusion_on_known_predictions():
    true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    assert metrics.accuracy(pred, true) == pytest.approx(4 / 6)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])  # rows: true, columns: predicted
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, true, num_classes=3), expected)


def test_classification_metrics_reject_bad_labels():
    with pytest.raises(ValueError, match="one length"):
        metrics.accuracy(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        metrics.confusion_matrix(np.array([3]), np.array([0]), num_classes=3)


def test_confidence_and_histogram_entropy():
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    assert metrics.mean_confidence(probs) == pytest.approx(0.8)
    assert metrics.class_histogram_entropy(np.arange(100) % 10) == pytest.approx(math.log(10))
    assert metrics.class_histogram_entropy(np.full(50, 7)) == 0.0


# --- Fréchet distance ----------------------------------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 8))
    assert metrics.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_frechet_matches_hand_computation_for_diagonal_covariances():
    # For diagonal covariances the formula is |mu1 - mu2|² + sum_i (sqrt(a_i) - sqrt(b_i))².
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -3.0])
    a, b = np.array([4.0, 1.0]), np.array([1.0, 9.0])
    expected = 9 + 16 + (2 - 1) ** 2 + (1 - 3) ** 2  # = 30
    assert metrics.gaussian_frechet(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_distance_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -1.0, 0.5])
    root1, root2 = rng.normal(size=(4, 4)) * 0.5, rng.normal(size=(4, 4)) * 0.5
    cov1, cov2 = root1 @ root1.T + np.eye(4), root2 @ root2.T + np.eye(4)
    a = rng.multivariate_normal(mu1, cov1, size=100_000)
    b = rng.multivariate_normal(mu2, cov2, size=100_000)
    exact = metrics.gaussian_frechet(mu1, cov1, mu2, cov2)
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=0.02)


# --- precision and recall ------------------------------------------------------------------------


def test_frechet_distance_agrees_with_torchmetrics():
    """The established implementation (torchmetrics' FID formula, here fed numgen's features
    unchanged through an identity feature extractor) gives the same distance on correlated,
    non-diagonal features of different means."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Features(torch.nn.Module):
        num_features = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(16, 16))
    a = rng.normal(size=(600, 16)) @ mixing
    b = rng.normal(size=(500, 16)) @ (mixing + 0.3 * rng.normal(size=(16, 16))) + 0.5
    fid = FrechetInceptionDistance(feature=Features(), reset_real_features=False)
    fid.update(torch.as_tensor(a), real=True)
    fid.update(torch.as_tensor(b), real=False)
    reference = fid.compute().item()
    assert reference > 10  # a real difference, not two near-zero numbers
    assert metrics.frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)


def test_knn_vote_is_the_majority_of_the_k_nearest_with_ties_to_the_smaller_label():
    ref = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    labels = np.array([3, 3, 1, 1, 1, 0])
    # nearest to 0.4: 0, 1, 2 (labels 3, 3, 1) -> 3; to 11.2: 11, 12, 10 (1, 0, 1) -> 1
    assert metrics.knn_vote(np.array([[0.4], [11.2]]), ref, labels, k=3).tolist() == [3, 1]
    # nearest two to 1.9: 2 and 1 (labels 1 and 3): a tie, won by the smaller label
    assert metrics.knn_vote(np.array([[1.9]]), ref, labels, k=2).tolist() == [1]
    # chunked distances give the same votes as one block
    rng = np.random.default_rng(1)
    query, many = rng.normal(size=(50, 3)), rng.normal(size=(200, 3))
    many_labels = rng.integers(0, 10, 200)
    np.testing.assert_array_equal(
        metrics.knn_vote(query, many, many_labels, 5, chunk=7),
        metrics.knn_vote(query, many, many_labels, 5),
    )


def test_precision_recall_identical_sets_are_one_and_far_sets_zero():
    real = np.random.default_rng(2).normal(size=(300, 5))
    assert metrics.precision_recall(real, real, k=3, chunk=64) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0, k=3, chunk=64) == (0.0, 0.0)


def test_precision_recall_sees_mode_collapse():
    # Fakes that copy one of the two real clusters are all realistic (precision 1) but cover only
    # half of the real data (recall 1/2).
    rng = np.random.default_rng(3)
    real = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 50])
    assert metrics.precision_recall(real, real[:200], k=3) == (1.0, 0.5)


# --- latent space --------------------------------------------------------------------------------


def test_grid_labelling_on_two_known_clusters():
    # Digit 3 lives around (-1, 0), digit 8 around (+1, 0); a grid over [-1.5, 1.5]² must be
    # labelled 3 on the left half and 8 on the right half.
    rng = np.random.default_rng(4)
    ref_z = np.concatenate(
        [rng.normal(size=(100, 2)) * 0.2 + [-1, 0], rng.normal(size=(100, 2)) * 0.2 + [1, 0]]
    )
    ref_y = np.repeat([3, 8], 100)
    axis = np.linspace(-1.5, 1.5, 6)  # no grid point on the boundary x = 0
    grid_z = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    labels = metrics.grid_majority_labels(grid_z, ref_z, ref_y, k=10)
    np.testing.assert_array_equal(labels, np.where(grid_z[:, 0] < 0, 3, 8))


def test_knn_accuracy_separated_and_mixed_labels():
    rng = np.random.default_rng(5)
    z = np.concatenate([rng.normal(size=(100, 2)) - 5, rng.normal(size=(100, 2)) + 5])
    y = np.repeat([0, 1], 100)
    assert metrics.knn_accuracy(z[::2], y[::2], z[1::2], y[1::2], k=5) == 1.0
    shuffled = rng.permutation(y)  # labels unrelated to position: chance level
    assert metrics.knn_accuracy(z[::2], shuffled[::2], z[1::2], shuffled[1::2], k=5) < 0.75


# --- likelihood ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_vae_and_digits():
    torch.manual_seed(0)
    model = build_model(VAEConfig(arch="mlp", likelihood="bernoulli", hidden=16, latent_dim=2))
    with torch.no_grad():  # move q(z|x) away from the prior: KL ~ 6 nats, so its terms matter
        model.to_mu.bias.fill_(2.0)
        model.to_logvar.bias.fill_(-2.0)
    grey = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x = metrics.binarize(grey, torch.Generator().manual_seed(2))
    return model.eval(), x


def test_binarize_gives_zeros_and_ones_with_the_pixel_probabilities():
    grey = torch.full((100, 1, 28, 28), 0.25)
    x = metrics.binarize(grey, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert x.mean().item() == pytest.approx(0.25, abs=0.01)


def test_mean_log_weight_is_the_elbo_that_training_maximises(tiny_vae_and_digits):
    model, x = tiny_vae_and_digits
    generator = torch.Generator().manual_seed(3)
    log_w = metrics.log_importance_weights(model, x, k=500, generator=generator)
    assert log_w.shape == (32, 500)
    # Training's ELBO has the KL term in closed form; average its loss over 500 draws of z too.
    x_rep = x.repeat(500, 1, 1, 1)
    with torch.no_grad():
        logits, mu, logvar = model(x_rep, generator=generator)
        loss = vae_loss(x_rep, logits, mu, logvar, likelihood="bernoulli")["loss"].item()
    assert metrics.elbo(log_w).mean().item() == pytest.approx(-loss, abs=0.5)


def test_iwae_bound_is_above_the_elbo_and_improves_with_k(tiny_vae_and_digits):
    model, x = tiny_vae_and_digits
    generator = torch.Generator().manual_seed(4)
    bounds = []
    for k in (1, 10, 100):
        log_w = metrics.log_importance_weights(model, x, k=k, generator=generator, chunk=256)
        assert (metrics.iwae_bound(log_w) >= metrics.elbo(log_w) - 1e-4).all()
        bounds.append(metrics.iwae_bound(log_w).mean().item())
    assert bounds[0] <= bounds[1] <= bounds[2]


def test_log_importance_weights_of_a_conditional_model():
    torch.manual_seed(0)
    model = build_model(VAEConfig(kind="cvae", arch="mlp", likelihood="bernoulli", hidden=16))
    x = (torch.rand(6, 1, 28, 28) > 0.5).float()
    log_w = metrics.log_importance_weights(model, x, k=7, labels=torch.arange(6), chunk=12)
    assert log_w.shape == (6, 7) and torch.isfinite(log_w).all()
