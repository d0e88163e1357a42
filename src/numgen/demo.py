"""The main job: the original project, end to end, on the embedded offline digits.

Train the original project's model — the 2-D conv VAE with an MSE loss — then draw every picture
of the original project — the test set in the latent plane, the digit at (0.5, 1.5), the 30×30
manifold over [-1.5, 1.5]² — plus prior samples, reconstructions and loss curves, and write
``report.md`` showing them with figures.

The embedded set has 4,000 training digits, 15 times fewer than MNIST. With the original batch of
128 the model would get only ~300 optimiser steps in 10 epochs, too few for the 2-D latent to
escape the prior (its KL term stays near 0 and every digit decodes to the same blur). So the demo
trains with batch 32 for 20 epochs (2,500 steps; the original made 4,690 on full MNIST).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from numgen import generate, plots
from numgen.checkpoints import read_metrics
from numgen.data import load_digits
from numgen.models import VAE, VAEConfig
from numgen.train import BatchHook, TrainConfig, train

DEMO_POINT = (0.5, 1.5)  # the original project decoded this point (it gave a 7 there)
DEMO_EPOCHS = 20
DEMO_BATCH = 32


def draw_pictures(
    model: VAE, run_dir: Path, out_dir: Path, dataset: str = "embedded", data_dir=None
) -> dict[str, Path]:
    """Every picture of the original project for a trained model; returns name -> path."""
    test = load_digits(dataset, "test", data_dir)
    z = generate.encode(model, test.images, test.labels if model.conditional else None)
    points, axis_names = generate.project_2d(z)
    labels = 7 if model.conditional else None
    point_image = generate.decode(
        model, [list(DEMO_POINT) + [0.0] * (model.config.latent_dim - 2)], labels
    )[0]
    return {
        "data": plots.save_grid(test.images[:100], out_dir / "data_sample.png"),
        "latent": plots.plot_latent(points, test.labels, out_dir / "latent.png", axis_names),
        "decode": plots.plot_digit(
            point_image, out_dir / "decode.png", f"decoded at z = {DEMO_POINT}"
        ),
        "manifold": plots.plot_manifold(
            generate.manifold(model, 30, -1.5, 1.5, labels), -1.5, 1.5, out_dir / "manifold.png"
        ),
        "samples": plots.save_grid(
            generate.sample(model, 64, seed=0), out_dir / "samples.png", 8, 3
        ),
        "reconstructions": plots.plot_reconstructions(
            test.images[:12],
            generate.reconstruct(model, test.subset(12)),
            out_dir / "reconstructions.png",
        ),
        "losses": plots.plot_losses(read_metrics(run_dir), out_dir / "losses.png"),
    }


REPORT = """# numgen demo: the original project on the embedded digits

A variational autoencoder with a **{latent_dim}-D latent space** ({arch} encoder/decoder,
{likelihood} reconstruction loss) trained for **{epochs} epochs** (batch {batch}) on {n_train:,} real MNIST digits
that ship with numgen (the embedded subset; {n_test:,} more are held out for testing), in
{seconds:.0f} s on {device}. The original project trained 10 epochs of batch 128 on 60,000 digits
(4,690 optimiser steps); on 15 times fewer digits the demo takes batch 32 and 20 epochs (2,500
steps) so that the 2-D latent has time to leave the prior — with ~300 steps it stays collapsed.

| epoch | train loss | train recon | train KL | test loss | test recon | test KL |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{table}

## Loss curves
![losses](losses.png)

## The test digits in the latent plane
Each dot is a test digit's posterior mean, coloured by its true label.
![latent](latent.png)

## The digit at z = {point}
![decoded](decode.png)

## 30×30 grid of decoded digits over [-1.5, 1.5]²
![manifold](manifold.png)

## Samples from the prior N(0, I)
![samples](samples.png)

## Test digits and their reconstructions
![reconstructions](reconstructions.png)

## Some of the training data
![data](data_sample.png)

Model files: `{run}` (load with `numgen.load("{run}")`).
Made with `numgen demo --out {out} --epochs {epochs} --seed {seed}`.
"""


def run_demo(
    out_dir: str | Path, epochs: int = DEMO_EPOCHS, seed: int = 0, device: str = "auto",
    on_batch: BatchHook | None = None, on_epoch: Callable[[dict], None] | None = None,
) -> Path:  # fmt: skip
    """Train on the embedded digits into ``out_dir/run``, draw the pictures, write the report;
    returns the path of ``report.md``."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "run"
    model_config = VAEConfig()  # the original project: conv, 2-D latent, MSE
    train_config = TrainConfig(epochs=epochs, batch_size=DEMO_BATCH, seed=seed, dataset="embedded")
    started = time.perf_counter()
    model = train(  # the demo's folder is its own: a second demo replaces the first
        run_dir, model_config, train_config, device=device, on_batch=on_batch, on_epoch=on_epoch,
        overwrite=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    draw_pictures(model, run_dir, out_dir)
    records = read_metrics(run_dir)
    table = "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.2f} | {r['train_recon']:.2f} | {r['train_kl']:.2f} "
        f"| {r['test_loss']:.2f} | {r['test_recon']:.2f} | {r['test_kl']:.2f} |"
        for r in records
    )
    report = out_dir / "report.md"
    report.write_text(
        REPORT.format(
            latent_dim=model_config.latent_dim,
            arch=model_config.arch,
            likelihood=model_config.likelihood,
            epochs=epochs,
            batch=DEMO_BATCH,
            n_train=len(load_digits("embedded", "train")),
            n_test=len(load_digits("embedded", "test")),
            seconds=seconds,
            device=model.device,
            table=table,
            point=DEMO_POINT,
            run=run_dir,
            out=out_dir,
            seed=seed,
        )  # fmt: skip
    )
    return report
