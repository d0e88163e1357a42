"""Training, the original project's pictures, and the demo: `numgen train`, `sample`,
`reconstruct`, `plot losses`, `demo` (`decode`, `manifold` and `plot latent`: numgen.cli.latent)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from numgen import generate, plots
from numgen.checkpoints import option_name, read_metrics, saved_configs, with_options
from numgen.cli.common import (
    DataDir,
    Dataset,
    Device,
    Model,
    Seed,
    app,
    console,
    make_config,
    out_path,
    plot_app,
    progress_bar,
    writable,
)
from numgen.cli.compose import Guidance, OdeSteps, load_for_drawing
from numgen.cli.latent import check_label, load_latent_model
from numgen.data import load_digits, resolve_data_dir
from numgen.demo import DEMO_EPOCHS, run_demo
from numgen.distributed import is_main_process, launch, launched_world_size
from numgen.errors import TrainingError
from numgen.hub import ModelError, load
from numgen.models import FlowConfig, OneStepConfig, VAEConfig
from numgen.train import BatchHook, TrainConfig, train


@contextmanager
def epoch_progress(
    name: str, describe: Callable[[dict], str]
) -> Iterator[tuple[BatchHook, Callable[[dict], None]]]:
    """A progress bar over each epoch's batches, and a line per finished epoch:
    yields the (on_batch, on_epoch) hooks that :func:`numgen.train.train` takes."""
    with progress_bar(name) as progress:
        task = progress.add_task("epoch 1", total=None, status="")

        def on_batch(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, status=f"loss {loss:.2f}")

        def on_epoch(r: dict) -> None:
            progress.update(task, description=f"epoch {r['epoch'] + 1}")
            progress.console.print(f"epoch {r['epoch']}: {describe(r)}")

        yield on_batch, on_epoch


def describe_epoch(r: dict) -> str:
    """'train 31.20 (recon 25.10, KL 6.10)  test ...' — whatever parts the model's loss has."""

    def parts(split: str) -> str:
        names = [
            k[len(split) + 1 :] for k in r if k.startswith(f"{split}_") and k != f"{split}_loss"
        ]
        inner = ", ".join(f"{name} {r[f'{split}_{name}']:.2f}" for name in names)
        return f"{split} {r[f'{split}_loss']:.2f}" + (f" ({inner})" if len(names) > 1 else "")

    return f"{parts('train')}  {parts('test')}  {r['seconds']:.1f} s"


VAE_OPTIONS = ("kind", "arch", "latent_dim", "likelihood", "beta", "hidden", "depth")
FLOW_OPTIONS = ("start", "sigma", "steps", "channels", "base")
ONESTEP_OPTIONS = (
    "teacher", "adversarial", "legible", "channels", "prior_layers", "temperature", "check",
    "anchors", "anchor_pull", "balance_anchors", "anchor_floor", "loose_pull",
)  # fmt: skip
MODEL_OPTIONS = {"flow": (FlowConfig, FLOW_OPTIONS), "onestep": (OneStepConfig, ONESTEP_OPTIONS)}
OPTION_OF = {"kind": "model", "teacher": "base", "check": "base"}  # config field -> its option
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)  # an enum of Typer's own copy of Click
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _foreign_options(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The model options given on the command line that a family of config fields ``names``
    has no use for (``--channels`` for a vae): refused, rather than silently left out."""
    families = (VAE_OPTIONS, FLOW_OPTIONS, ONESTEP_OPTIONS)
    every = {OPTION_OF.get(field, field) for family in families for field in family}
    mine = {OPTION_OF.get(field, field) for field in names} | {"model"}
    return [option_name(name) for name in sorted(every - mine) if _given(ctx, name)]


@app.command("train")
def train_command(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="Run directory for checkpoints and logs.")] = Path(
        "runs/vae"
    ),
    model: Annotated[
        str,
        typer.Option(
            help="vae, cvae (conditioned on the digit), flow (flow matching) or onestep (a flow "
            "distilled into one step)."
        ),
    ] = "vae",
    arch: Annotated[str, typer.Option(help="conv (Keras example) or mlp.")] = "conv",
    latent_dim: Annotated[int, typer.Option(help="Size of the latent space.")] = 2,
    likelihood: Annotated[str, typer.Option(help="mse (original project) or bernoulli.")] = "mse",
    beta: Annotated[float, typer.Option(help="Weight of the KL term.")] = 1.0,
    hidden: Annotated[
        int | None, typer.Option(help="Dense width (default 16 conv, 400 mlp).")
    ] = None,
    depth: Annotated[int, typer.Option(help="Hidden layers of an mlp encoder and decoder.")] = 1,
    epochs: Annotated[int, typer.Option(help="Epochs to train (in total, when resuming).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    lr_decay: Annotated[
        float, typer.Option(help="Fraction of the run at its end over which the LR falls to 0.")
    ] = 0.3,
    kl_warmup: Annotated[
        float, typer.Option(help="Epochs over which the KL weight ramps from 0 up to --beta.")
    ] = 0.0,
    seed: Seed = 0,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training digits.")] = None,
    device: Device = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the run's last checkpoint; of the options, only --epochs and "
            "--data-dir may differ from the run's."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Start over in a RUN that already holds a run (replacing it).")
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            help="flow: the trained CVAE it refines (default cvae); onestep: the trained flow it "
            "distils (default flow). A name or a directory."
        ),
    ] = None,
    start: Annotated[
        str, typer.Option(help="flow: 'cvae' (refine the base's digits) or 'noise'.")
    ] = "cvae",
    channels: Annotated[
        int | None,
        typer.Option(help="flow, onestep: U-Net width at 28×28 (default 12; onestep: the flow's)."),
    ] = None,
    sigma: Annotated[float, typer.Option(help="flow: noise added to the base's digit.")] = 0.3,
    steps: Annotated[int, typer.Option(help="flow: default Euler steps when sampling.")] = 4,
    adversarial: Annotated[
        float, typer.Option(help="onestep: weight of the critic's term (0: distillation only).")
    ] = 0.0,
    prior_layers: Annotated[
        int, typer.Option(help="onestep: coupling layers of the learnt style prior (0: none).")
    ] = 6,
    legible: Annotated[
        float,
        typer.Option(
            help="onestep: weight of the bundled checker's cross-entropy (where it is under 90 % "
            "sure) on digits of sampled styles (0: none)."
        ),
    ] = 0.0,
    anchors: Annotated[
        int,
        typer.Option(
            help="onestep: styles of training digits kept per class, that sampled styles are "
            "pulled towards (0: none)."
        ),
    ] = 0,
    anchor_pull: Annotated[
        float,
        typer.Option(
            help="onestep: share of the way (0-1) each sampled style moves to its class's "
            "nearest kept style."
        ),
    ] = 0.0,
    balance_anchors: Annotated[
        bool,
        typer.Option(
            help="onestep: each kept style drawn equally often (offsets fitted at the end of "
            "each epoch that kept styles, ~100 s on 2 CPU cores), not the nearest, which "
            "favours a few."
        ),
    ] = False,
    anchor_floor: Annotated[
        float,
        typer.Option(
            help="onestep: at the end of each epoch that kept styles, drop each whose drawings "
            "the bundled checker reads as asked with a mean probability under this (0: none; "
            "~3-5 min on 2 CPU cores, the offsets fitted again)."
        ),
    ] = 0.0,
    loose_pull: Annotated[
        float,
        typer.Option(
            help="onestep: a looser pull than --anchor-pull for each kept style whose drawings, "
            "drawn at it, the bundled checker reads as asked with a mean probability of 0.99 or "
            "more; the others keep --anchor-pull (fitted at the end of each epoch that kept "
            "styles; 0: none; ~1-2 min on 2 CPU cores)."
        ),
    ] = 0.0,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="onestep: style temperature T, styles ~ N(0, T² I) (default: the teacher's)."
        ),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 products where the hardware has them), bf16 or fp32.")
    ] = "auto",
    nproc: Annotated[
        int,
        typer.Option(
            help="Train in N processes (DDP) on this machine, started as `torchrun "
            "--standalone --nproc-per-node N` would; the batch is split among them. A rank's "
            "failure ends the others and is the exit code.",
            min=1,
        ),
    ] = 1,
) -> None:
    """Train a model. The defaults are the original project: a VAE with a 2-D latent, conv, MSE,
    10 epochs. `--model flow` trains flow matching on top of a CVAE (`--base`)."""
    writable(run, "RUN", folder=True)
    if nproc > 1 and launched_world_size() == 1:
        if batch_size % nproc:
            raise typer.BadParameter(
                f"{batch_size} does not split evenly across {nproc} processes; "
                f"use a multiple of {nproc}",
                param_hint="--batch-size",
            )
        raise typer.Exit(launch(nproc, without_nproc(sys.argv[1:])))
    base_model = None
    if base is None:  # each family's own default
        base = "flow" if model == "onestep" else "cvae"
    if model == "flow" and start == "cvae":
        base_model = load(base)
    elif model == "onestep":
        base_model = load(base)
        if base_model.config.kind not in ("flow", "onestep"):
            raise ModelError(f"--base {base}: onestep distils a flow (or trains on from a "
                             f"onestep), not a {base_model.config.kind}")  # fmt: skip
    teacher = None
    if model == "onestep":  # the flow distilled: the base, or the base's own teacher
        onestep_base = base_model.config.kind == "onestep"
        teacher = base_model.teacher.config if onestep_base else base_model.config
    data_dir = resolve_data_dir(data_dir)
    options = {
        "kind": model, "arch": arch, "latent_dim": latent_dim, "likelihood": likelihood,
        "beta": beta, "hidden": hidden, "depth": depth, "start": start, "sigma": sigma,
        "steps": steps, "channels": (teacher.channels if teacher else 12) if channels is None else channels,
        "base": base_model.config.to_dict() if model == "flow" and base_model else None,
        "teacher": teacher.to_dict() if teacher else None, "adversarial": adversarial,
        "prior_layers": prior_layers,
        # the student draws as its teacher: its temperature and legibility threshold
        "temperature": temperature if temperature is not None
        else (teacher.temperature if teacher else None),
        "check": teacher.check if teacher else None,
        "legible": legible, "anchors": anchors, "anchor_pull": anchor_pull,
        "balance_anchors": balance_anchors, "anchor_floor": anchor_floor, "loose_pull": loose_pull,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None, "limit": limit, "kl_warmup": kl_warmup,
        "lr_decay": lr_decay, "precision": precision,
    }  # fmt: skip
    saved = saved_configs(run, TrainConfig) if resume and not overwrite else None
    if saved:  # the run's own configs, with the options given on this command line
        given = {k: v for k, v in options.items() if _given(ctx, OPTION_OF.get(k, k))}
        if data_dir:  # where the same data lies may change
            given["data_dir"] = options["data_dir"]
        train_fields = {f.name for f in fields(TrainConfig)}
        model_config = with_options(
            saved[0], {k: v for k, v in given.items() if k not in train_fields}
        )
        train_config = with_options(saved[1], {k: v for k, v in given.items() if k in train_fields})
    else:
        config_class, names = MODEL_OPTIONS.get(model, (VAEConfig, VAE_OPTIONS))
        model_config = make_config(config_class, **{k: options[k] for k in names})
        foreign = _foreign_options(ctx, names)
        if foreign:
            raise TrainingError(
                f"{', '.join(foreign)}: not an option of a {model} model; leave it out, or "
                "choose the --model it belongs to"
            )
        train_config = make_config(TrainConfig, **{k: options[k] for k in TRAIN_OPTIONS})
    if not is_main_process():  # ranks above 0 of a torchrun launch train silently
        train(
            run, model_config, train_config, device=device, resume=resume, base=base_model,
            overwrite=overwrite,
        )  # fmt: skip
        return
    with epoch_progress("train", describe_epoch) as (on_batch, on_epoch):
        train(
            run,
            model_config,
            train_config,
            device=device,
            resume=resume,
            on_batch=on_batch,
            on_epoch=on_epoch,
            base=base_model,
            overwrite=overwrite,
        )
    console.print(f"model saved in [green]{run}[/green]; metrics in {run / 'metrics.jsonl'}")


def without_nproc(argv: list[str]) -> list[str]:
    """This command line less its ``--nproc`` option, for each rank to run."""
    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
        elif arg == "--nproc":
            skip = True
        else:
            args.append(arg)
    return args


# --- the original project's pictures (the latent ones: numgen.cli.latent) ---------------------


@app.command("sample")
def sample_command(
    model: Model,
    n: Annotated[int, typer.Option("-n", "--n", help="How many digits.", min=1, max=10_000)] = 64,
    seed: Seed = 0,
    label: Annotated[int | None, typer.Option(help="Digit to draw (conditional models).")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("samples.png"),
    ode_steps: OdeSteps = None,
    guidance: Guidance = None,
) -> None:
    """Digits drawn from the prior (styles at temperature 1), as a grid."""
    writable(out)
    generator, sampling = load_for_drawing(model, ode_steps, guidance)
    check_label(generator, label, model)
    images = generate.sample(generator, n, seed, label, sampling)
    out_path(plots.save_grid(images, out, scale=3))


@app.command("reconstruct")
def reconstruct_command(
    model: Model,
    n: Annotated[int, typer.Option("-n", "--n", help="How many test digits.", min=1, max=50)] = 12,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("reconstructions.png"),
) -> None:
    """Test digits above their reconstructions."""
    writable(out)
    vae = load_latent_model(model)
    test = load_digits(dataset, "test", data_dir).subset(n)
    out_path(plots.plot_reconstructions(test.images, generate.reconstruct(vae, test), out))


@plot_app.command("losses")
def plot_losses_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("losses.png"),
) -> None:
    """Train and test loss curves of a run (reconstruction and KL apart)."""
    writable(out)
    records = read_metrics(run)
    if not records:
        raise TrainingError(f"{run}: no metrics.jsonl with finished epochs")
    out_path(plots.plot_losses(records, out))


# --- the main job --------------------------------------------------------------------------------


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the model, pictures and report.")] = Path(
        "demo_out"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = DEMO_EPOCHS,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """The original project end to end on the embedded digits (offline): train the 2-D VAE,
    draw every picture, write report.md."""
    writable(out, folder=True)

    def losses(r: dict) -> str:
        return f"train loss {r['train_loss']:.2f}, test loss {r['test_loss']:.2f}"

    with epoch_progress("demo", losses) as (on_batch, on_epoch):
        report = run_demo(
            out, epochs=epochs, seed=seed, device=device, on_batch=on_batch, on_epoch=on_epoch
        )
    console.print(
        f"report: [green]{report}[/green]  (pictures beside it, model in {report.parent / 'run'})"
    )
