"""How good is a generator? Every figure of numgen's evaluation, in ``metrics.json`` and a report.

:func:`evaluate` loads a generator of any family (run directory, model directory or bundled name),
computes

1. ``likelihood`` on the test set: reconstruction errors, KL, negative ELBO and, for Bernoulli
   models, the IWAE estimate of the negative log-likelihood on binarized digits;
2. ``latent``: how well test-set encodings separate digits (k-NN accuracy), and the original
   project's 30×30 grid test, done with explicit labels;
3. ``samples``, ``raw`` and ``real``: sample quality read by both judges (:mod:`numgen.judging`:
   recognised shares, Fréchet distance in both feature spaces, precision/recall, confidence,
   class entropy) for digits drawn as users get them (the model's temperature, sampler and
   legibility check, with the check's redraw rate), for the raw model (with ``raw``), and for
   real training digits in their place — the floor and ceiling that generated digits can be held
   against;
4. ``conditional``: for a conditional model, how often a generated digit is recognised as the one
   requested;
5. ``usefulness`` (with ``tstr``): a recognizer trained on generated digits only, tested on real;

parts 1-2 for models with a latent (VAEs) only;

and writes ``metrics.json``, ``report.md`` and the report's pictures into one directory. The maths
lives in :mod:`numgen.metrics`, the judge in :mod:`numgen.recognizer`, the pictures in
:mod:`numgen.plots`, the report's text in :mod:`numgen.report`; this module is the glue and the
protocol (which digits, how many, which seed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from numgen import files, generate, hub, judging, metrics, plots
from numgen import recognizer as judge
from numgen.data import Digits, load_digits, to_tensor
from numgen.errors import NumgenError
from numgen.evaluate_config import EvalConfig
from numgen.evaluate_samples import (
    CONDITIONAL_KEYS,
    drawing_settings,
    random_subset,
    sample_section,
    usefulness_section,
)
from numgen.judging import Judges
from numgen.models import VAE, Generator
from numgen.report import report
from numgen.train import evaluate_loss, select_device

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"

Progress = Callable[[str, int, int], None]  # (stage, steps done, steps in the stage)


# --- 1. likelihood and reconstruction ------------------------------------------------------------


@torch.no_grad()
def reconstruction_errors(
    model: VAE, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Errors of each test image (B, 1, 28, 28) in [0, 1] against its reconstruction, decoded from
    its posterior mean: summed over the 784 pixels and averaged over images.

    ``recon_mse``: squared error of the pixel intensities (the original project's metric, Keras'
    ``mse * 28 * 28``); ``recon_bce``: binary cross-entropy in nats, from the decoder's logits (so
    saturated probabilities cannot give log 0), against the grey-level targets.
    """
    model.eval()
    mse = bce = 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        logits = model.decode_logits(model.encode(xb, yb)[0], yb)
        mse += (torch.sigmoid(logits) - xb).pow(2).sum().item()
        bce += torch.nn.functional.binary_cross_entropy_with_logits(
            logits, xb, reduction="sum"
        ).item()
    return {"recon_mse": mse / len(x), "recon_bce": bce / len(x)}


def iwae_nll(
    model: VAE, x: torch.Tensor, y: torch.Tensor, k: int, seed: int,
    batch_size: int = 50, progress: Progress | None = None,
) -> dict[str, float]:  # fmt: skip
    """Likelihood of binarized test digits under a Bernoulli model, in nats per image.

    The grey-level images ``x`` (N, 1, 28, 28) are binarized once with a generator seeded by
    ``seed`` (:func:`numgen.metrics.binarize`); each then gets ``k`` importance samples. From the
    same log weights: ``iwae_nll`` = −mean IWAE bound (Burda et al. 2016) with ``iwae_nll_stderr``,
    its standard error over images, and ``binarized_neg_elbo`` = −mean ELBO (≥ ``iwae_nll``).
    """
    device = model.device
    binary = metrics.binarize(x.to(device), torch.Generator(device).manual_seed(seed))
    y = y.to(device)
    noise = torch.Generator(device).manual_seed(seed)
    bounds, elbos = [], []
    starts = range(0, len(x), batch_size)
    for step, start in enumerate(starts, 1):
        rows = slice(start, start + batch_size)
        log_w = metrics.log_importance_weights(model, binary[rows], k, noise, y[rows])
        bounds.append(metrics.iwae_bound(log_w).cpu())
        elbos.append(metrics.elbo(log_w).cpu())
        if progress:
            progress("IWAE", step, len(starts))
    nll = -torch.cat(bounds).double()
    return {
        "iwae_nll": nll.mean().item(),
        "iwae_nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "binarized_neg_elbo": -torch.cat(elbos).double().mean().item(),
    }


def likelihood_section(
    model: VAE, test: Digits, config: EvalConfig, out_dir: Path, progress: Progress | None = None
) -> dict[str, float | None]:
    """Reconstruction errors, KL and negative ELBO on the test set; the IWAE figures for a
    Bernoulli model (None otherwise). Draws ``reconstructions.png``."""
    x, y = to_tensor(test.images).to(model.device), torch.from_numpy(test.labels).to(model.device)
    parts = evaluate_loss(model, x, y, seed=config.seed)  # one latent draw per digit
    result = {
        **reconstruction_errors(model, x, y),
        "kl": parts["kl"],
        "neg_elbo": parts["recon"] + parts["kl"],  # the ELBO weighs the KL by 1, whatever β
    }
    if model.config.likelihood == "bernoulli":
        subset = random_subset(test, config.iwae_digits, config.seed)
        x, y = to_tensor(subset.images), torch.from_numpy(subset.labels)
        result |= iwae_nll(model, x, y, config.iwae_k, config.seed, progress=progress)
    else:
        result |= dict.fromkeys(SKIPPED_KEYS["iwae"])
    reconstructions = generate.reconstruct(model, test.subset(12))
    plots.plot_reconstructions(test.images[:12], reconstructions, out_dir / "reconstructions.png")
    return result


# --- 2. the latent space -------------------------------------------------------------------------


def grid_test(
    model: VAE, recognizer: judge.Recognizer, test_z: np.ndarray, test_labels: np.ndarray,
    config: EvalConfig,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The original project's test, with its labels made explicit.

    The ``grid_n``² points of [grid_lo, grid_hi]² (in the first two latent dimensions, the others
    0) are decoded; each point's intended digit is the majority label of its ``grid_k`` nearest
    test encodings ``test_z`` (N, latent_dim), by Euclidean distance in the whole latent space.
    Returns (share of grid digits the recognizer reads as intended, decoded grid (n, n, 28, 28),
    intended labels (n²,), recognizer labels (n²,)).
    """
    n, dim = config.grid_n, model.config.latent_dim
    plane = generate.latent_grid(n, config.grid_lo, config.grid_hi)  # (n², 2), reading order
    z = np.zeros((n * n, dim), dtype=np.float32)
    z[:, : min(2, dim)] = plane[:, :dim]
    images = generate.decode(model, z)  # (n², 28, 28)
    intended = metrics.grid_majority_labels(z, test_z, test_labels, config.grid_k)
    predicted, _ = judge.predict(recognizer, _batch(images))
    return metrics.accuracy(predicted, intended), images.reshape(n, n, 28, 28), intended, predicted


def latent_section(
    model: VAE, recognizer: judge.Recognizer, test: Digits, train: Digits, config: EvalConfig,
    out_dir: Path,
) -> dict[str, float | None]:  # fmt: skip
    """k-NN accuracy of the test encodings (training encodings vote) and, for a VAE, the grid
    test (None for a CVAE). Draws ``latent.png`` and ``grid.png``."""
    cvae = model.conditional  # a CVAE encodes each digit given its label
    test_z = generate.encode(model, test.images, test.labels if cvae else None)
    train_z = generate.encode(model, train.images, train.labels if cvae else None)
    points, axis_names = generate.project_2d(test_z)
    plots.plot_latent(points, test.labels, out_dir / "latent.png", axis_names)
    result = {
        "knn_accuracy": metrics.knn_accuracy(
            train_z, train.labels, test_z, test.labels, config.knn_k
        ),
        "grid_agreement": None,
    }
    if not model.conditional:
        agreement, grid, intended, recognised = grid_test(
            model, recognizer, test_z, test.labels, config
        )
        result["grid_agreement"] = agreement
        plots.plot_grid_agreement(
            grid, intended, recognised, config.grid_lo, config.grid_hi, out_dir / "grid.png"
        )
    return result


# --- 3. sample quality ---------------------------------------------------------------------------


def _batch(images: np.ndarray) -> torch.Tensor:
    """Decoded images (N, 28, 28) in [0, 1] -> a float tensor (N, 1, 28, 28) for the recognizer."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)


# --- the whole evaluation ------------------------------------------------------------------------

BINARIZATION = (
    "stochastically: each pixel of a test digit (intensity in [0, 1]) is set to 1 with probability "
    "equal to its intensity, once, by torch.bernoulli with a generator seeded by the evaluation "
    "seed (Burda et al. 2016's protocol; not a 0.5 threshold)"
)
# The parts of the evaluation that apply to some models only, and the figures each gives.
SKIPPED_KEYS = {
    "likelihood": ("recon_mse", "recon_bce", "kl", "neg_elbo"),
    "iwae": ("iwae_nll", "iwae_nll_stderr", "binarized_neg_elbo"),
    "latent": ("knn_accuracy",),
    "grid": ("grid_agreement",),
    "conditional": CONDITIONAL_KEYS,
    "usefulness": ("generated", "real", "digits"),
}


def skipped_parts(model: Generator, config: EvalConfig) -> dict[str, str]:
    """The parts of the evaluation (keys of ``SKIPPED_KEYS``) that do not apply to ``model``, each
    with the reason; their figures are None in ``metrics.json``."""
    skipped = {}
    if not model.has_latent:
        why = (
            f"a {model.config.kind} model has no encoder and latent of its own to reconstruct "
            "with, bound a likelihood of, or look into"
        )
        skipped |= dict.fromkeys(("likelihood", "iwae", "latent", "grid"), why)
    elif model.config.likelihood == "mse":
        skipped["iwae"] = (
            "the model's likelihood is 'mse': its squared-error loss is not a normalised "
            "probability of binary images, so a log-likelihood in nats is not defined for it; "
            "IWAE NLL and the ELBO on binarized digits are reported for Bernoulli models only"
        )
    if model.conditional:
        skipped.setdefault("grid", (
            "a conditional model draws the digit it is given, whatever the latent point: no digit "
            "belongs to a place in its latent plane, so the grid test does not apply; the "
            "per-class accuracy of generated digits (conditional) measures what it would"
        ))  # fmt: skip
    else:
        skipped["conditional"] = "an unconditional model is not asked for a digit"
    if not config.tstr:
        skipped["usefulness"] = "it trains two recognizers; ask for it with --tstr 60000"
    elif not model.conditional:
        skipped["usefulness"] = "an unconditional model's digits come without labels to train on"
    return skipped


def evaluate(
    model: str | Path, out_dir: str | Path, config: EvalConfig | None = None,
    device: str = "auto", progress: Progress | None = None,
) -> dict:  # fmt: skip
    """Evaluate ``model`` (a run or model directory, or a bundled name) as shipped, with numgen's
    bundled recognizer and second judge (:mod:`numgen.judging`); write ``metrics.json``, ``report.md`` and the report's pictures into
    ``out_dir``. Returns the metrics. ``progress(stage, done, total)`` is called as work goes on."""
    config = config or EvalConfig()
    dev = select_device(device)
    generator = hub.load(model, dev)
    if generator.conditional and config.samples < generator.config.num_classes:
        raise NumgenError(f"samples={config.samples}: a conditional model needs one per digit")
    judges = Judges.bundled(dev)
    test = load_digits(config.dataset, "test", config.data_dir)
    train = load_digits(config.dataset, "train", config.data_dir)
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    skipped = skipped_parts(generator, config)
    likelihood = dict.fromkeys(SKIPPED_KEYS["likelihood"] + SKIPPED_KEYS["iwae"])
    latent = dict.fromkeys(SKIPPED_KEYS["latent"] + SKIPPED_KEYS["grid"])
    usefulness = dict.fromkeys(SKIPPED_KEYS["usefulness"])
    if "likelihood" not in skipped:
        with _stage("likelihood", seconds, progress):
            likelihood = likelihood_section(generator, test, config, out_dir, progress)
    if "latent" not in skipped:
        with _stage("latent space", seconds, progress):
            latent = latent_section(generator, judges.first, test, train, config, out_dir)
    with _stage("sample quality", seconds, progress):
        test_reading = judging.read_digits(judges, test.images / np.float32(255))
        quality = sample_section(generator, judges, test, test_reading, train, config, out_dir)
    if "usefulness" not in skipped:
        with _stage("usefulness", seconds, progress):
            usefulness = usefulness_section(generator, test, train, config)
    result = {
        "model": {
            "source": str(model),
            **generator.config.to_dict(),
            "parameters": sum(p.numel() for p in generator.parameters()),
        },
        "settings": {
            **asdict(config),
            "iwae_digits": min(config.iwae_digits, len(test)),
            "real_digits": min(config.samples, len(train)),
            "test_set": f"{test.source}: {len(test):,} digits",
            "train_set": f"{train.source}: {len(train):,} digits",
            "binarization": BINARIZATION,
            "drawn": drawing_settings(generator),
            "judges": [judge.BUNDLED, judge.SECOND_JUDGE],
            "device": str(dev),
        },
        "likelihood": likelihood,
        "latent": latent,
        **quality,
        "usefulness": usefulness,
        "skipped": skipped,
        "seconds": seconds,
    }
    files.write_json(out_dir / METRICS_FILE, result)
    text = report(result)
    files.atomic_write(out_dir / REPORT_FILE, lambda tmp: tmp.write_text(text))
    return result


@contextmanager
def _stage(name: str, seconds: dict[str, float], progress: Progress | None) -> Iterator[None]:
    """Log and time one stage of the evaluation, recording its wall-clock seconds."""
    log.info("evaluating: %s", name)
    if progress:
        progress(name, 0, 1)
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start
