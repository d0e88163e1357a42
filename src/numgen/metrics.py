"""Metric maths for judging generative models of digits: pure functions, no files, no printing.

- classification: :func:`accuracy`, :func:`confusion_matrix`, :func:`mean_confidence`,
  :func:`class_histogram_entropy`;
- sample quality in a feature space (the recognizer's penultimate layer):
  :func:`frechet_distance` (Heusel et al. 2017) and :func:`precision_recall`
  (Kynkäänniemi et al. 2019);
- latent space: :func:`knn_accuracy` and :func:`grid_majority_labels`, both a k-nearest-neighbour
  vote (:func:`knn_vote`);
- likelihood of a Bernoulli VAE: :func:`log_importance_weights`, then :func:`iwae_bound`
  (Burda et al. 2016) and :func:`elbo` on the same weights.

Arrays are NumPy (anything ``np.asarray`` accepts, CPU tensors included) except for the
likelihood functions, which work on torch tensors on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from numgen.models import VAE


# --- classification ------------------------------------------------------------------------------


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Share of equal labels, in [0, 1]. ``pred``, ``true``: integer labels (N,), N >= 1."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(
            f"need two non-empty label vectors of one length, got {pred.shape} and {true.shape}"
        )
    return float(np.mean(pred == true))


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Counts int64 (num_classes, num_classes): row = true label, column = predicted label."""
    pred, true = np.asarray(pred, dtype=np.int64), np.asarray(true, dtype=np.int64)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"need two label vectors of one length, got {pred.shape} and {true.shape}")
    for name, labels in (("pred", pred), ("true", true)):
        if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
            raise ValueError(f"{name} labels must lie in 0..{num_classes - 1}")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def mean_confidence(probs: np.ndarray) -> float:
    """Mean over images of the largest class probability. ``probs``: (N, C), rows sum to 1."""
    return float(np.asarray(probs).max(axis=1).mean())


def class_histogram_entropy(pred_labels: np.ndarray, num_classes: int = 10) -> float:
    """Entropy in nats of the histogram of predicted labels (N,).

    ``log(num_classes)`` (2.303 for 10 digits) when every class is equally frequent, 0 when all
    samples get one label: low values reveal a generator that collapsed onto a few digits.
    """
    counts = np.bincount(np.asarray(pred_labels, dtype=np.int64), minlength=num_classes)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# --- Fréchet distance ----------------------------------------------------------------------------


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D), float64, of features (N, D): compute once, reuse."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need features of shape (N, D) with N >= 2, got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def gaussian_frechet(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, cov1) and N(mu2, cov2):

        |mu1 - mu2|² + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^½)

    Means (D,), covariances (D, D). As in the reference FID code: if the matrix square root is
    not finite (a singular product), ``eps`` is added to both diagonals and it is retried; the
    tiny imaginary parts that round-off leaves in the square root are dropped.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"shapes do not match: mu {mu1.shape}, {mu2.shape}; cov {cov1.shape}, {cov2.shape}"
        )
    from scipy import linalg  # imported here: `import numgen` stays free of scipy

    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has imaginary part {np.abs(covmean.imag).max()}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    With Inception features this is FID; numgen uses its recognizer's features, so values are
    comparable only between reports that use the same recognizer.
    """
    return gaussian_frechet(*feature_statistics(feats_a), *feature_statistics(feats_b))


# --- precision and recall ------------------------------------------------------------------------


def _distance_chunks(
    a: torch.Tensor, b: torch.Tensor, chunk: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (rows, distances) for row blocks of ``a``: Euclidean distances (len(rows), N_b)."""
    for start in range(0, len(a), chunk):
        rows = slice(start, start + chunk)
        yield rows, torch.cdist(a[rows], b)


def _knn_radii(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance (N,) from each point to its k-th nearest neighbour in its own set, self excluded."""
    radii = torch.empty(len(feats), dtype=feats.dtype)
    for rows, dist in _distance_chunks(feats, feats, chunk):
        # the k+1 smallest include the point itself at distance 0
        radii[rows] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def precision_recall(
    real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, chunk: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, https://arxiv.org/abs/1904.06991).

    Each set's manifold is the union of balls around its points, each ball reaching to that
    point's k-th nearest neighbour in the same set. Precision is the share of fake samples inside
    the real manifold (are samples realistic?); recall the share of real samples inside the fake
    manifold (is the data's variety covered?). Features (N_real, D) and (N_fake, D); distances are
    computed ``chunk`` rows at a time, so 10,000 × 10,000 needs only ``chunk × N`` floats at once.
    """
    real = torch.as_tensor(np.asarray(real_feats, dtype=np.float64))
    fake = torch.as_tensor(np.asarray(fake_feats, dtype=np.float64))
    if min(len(real), len(fake)) <= k:
        raise ValueError(
            f"k={k}: each set needs more than k points ({len(real)} real, {len(fake)} fake)"
        )
    real_radii, fake_radii = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    fake_in_real = torch.zeros(len(fake), dtype=torch.bool)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool)
    for rows, dist in _distance_chunks(fake, real, chunk):  # dist: (chunk of fake, N_real)
        fake_in_real[rows] = (dist <= real_radii[None, :]).any(dim=1)
        real_in_fake |= (dist <= fake_radii[rows, None]).any(dim=0)
    return fake_in_real.double().mean().item(), real_in_fake.double().mean().item()


# --- latent space --------------------------------------------------------------------------------


def knn_vote(
    query_z: np.ndarray, ref_z: np.ndarray, ref_y: np.ndarray, k: int, chunk: int = 1000
) -> np.ndarray:
    """Label (Q,) of each query point (Q, D): the most common label among its ``k`` nearest
    reference points (N, D) with labels (N,) in 0..C-1, by Euclidean distance; ties go to the
    smaller label. Distances are computed ``chunk`` query rows at a time."""
    query = torch.as_tensor(np.asarray(query_z, dtype=np.float64))
    ref = torch.as_tensor(np.asarray(ref_z, dtype=np.float64))
    labels = torch.as_tensor(np.asarray(ref_y, dtype=np.int64))
    if not 1 <= k <= len(ref):
        raise ValueError(f"k={k}: must be between 1 and the {len(ref)} reference points")
    votes = torch.empty(len(query), dtype=torch.int64)
    for rows, dist in _distance_chunks(query, ref, chunk):
        nearest = labels[dist.topk(k, dim=1, largest=False).indices]  # (chunk, k)
        counts = F.one_hot(nearest, int(labels.max()) + 1).sum(dim=1)  # (chunk, C)
        votes[rows] = counts.argmax(dim=1)  # the first of equal counts: the smaller label
    return votes.numpy()


def knn_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a k-NN classifier on latent codes: how well the latent space separates digits.

    Codes (N, D) with labels (N,); the test codes are classified by vote of the training codes.
    """
    return accuracy(knn_vote(test_z, train_z, train_y, k), test_y)


def grid_majority_labels(
    grid_z: np.ndarray, ref_z: np.ndarray, ref_y: np.ndarray, k: int = 10
) -> np.ndarray:
    """The digit each latent grid point (G, D) "should" show: the majority label of its ``k``
    nearest reference encodings (N, D) (the test set's, with labels (N,)).

    This makes the original project's grid test explicit: a decoded grid point counts as correct
    when the recognizer's label equals this one.
    """
    return knn_vote(grid_z, ref_z, ref_y, k)


# --- likelihood ----------------------------------------------------------------------------------

_LOG_2PI = math.log(2 * math.pi)


def binarize(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stochastic binarization: each pixel becomes 1 with probability equal to its intensity.

    Images (N, 1, 28, 28) in [0, 1] -> the same shape in {0, 1}. This is the "stochastically
    binarized MNIST" on which IWAE log-likelihoods are reported (Burda et al. 2016), drawn once
    with a seeded ``generator`` (on the images' device) so every model is scored on the same
    binary digits. Thresholding at 0.5 would make a different, easier data set whose nats could
    not be compared with published numbers.
    """
    return torch.bernoulli(images, generator=generator)


@torch.no_grad()
def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
    chunk: int = 4096,
) -> torch.Tensor:
    """Log importance weights (B, K) in nats of a Bernoulli-likelihood VAE:

        log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),   z_k ~ q(z|x),  k = 1..K

    with p(x|z) the product of Bernoulli pixels whose logits the decoder gives, p(z) = N(0, I) and
    q(z|x) = N(mu, diag(exp(logvar))) from the encoder. ``x``: binary images (B, 1, 28, 28) (see
    :func:`binarize`); ``labels`` (B,) for a conditional model. At most ``chunk`` images are
    decoded at once (memory), i.e. ``chunk // B`` samples per image per pass.
    """
    if k < 1:
        raise ValueError(f"k={k}: need at least one importance sample")
    mu, logvar = model.encode(x, labels)  # (B, D) each
    batch, _ = mu.shape
    target = x.flatten(1)  # (B, 784)
    per_pass = max(1, chunk // batch)
    weights = []
    for start in range(0, k, per_pass):
        n = min(per_pass, k - start)
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)  # (n, B, D)
        logits = model.decode_logits(z.flatten(0, 1), None if labels is None else labels.repeat(n))
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits.view(n, batch, -1), target.expand(n, -1, -1), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + logvar + _LOG_2PI).sum(-1)  # (z - mu)/sigma = eps
        weights.append(log_px_z + log_pz - log_qz)  # (n, B)
    return torch.cat(weights).T


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """IWAE estimate of log p(x) (Burda et al. 2016): log mean_k exp(log w_k), per example.

    ``log_weights`` (B, K) from :func:`log_importance_weights` -> (B,) in nats. In expectation a
    lower bound on log p(x) that tightens as K grows; the negative mean over a test set is the
    reported NLL.
    """
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])


def elbo(log_weights: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo ELBO per example: the plain mean of the K log weights (B, K) -> (B,), nats.

    By Jensen's inequality it is never above :func:`iwae_bound` of the same weights. It estimates
    the same ELBO that training maximises (there with the KL term in closed form).
    """
    return log_weights.mean(dim=1)
