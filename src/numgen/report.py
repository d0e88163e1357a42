"""The markdown report of an evaluation: :func:`report` turns the metrics that
:func:`numgen.evaluate.evaluate` measured (as saved in ``metrics.json``) into ``report.md``,
linking the pictures drawn beside it. Text only: nothing here measures."""

from __future__ import annotations

REPORT = """# Evaluation of `{source}`

{description}. Test digits: {test_set}. Training digits (k-NN references and the
real-data reference): {train_set}. Seed {seed}; {seconds:.0f} s on {device}.
Reproduce with `{command}`.

## 1. Reconstruction and likelihood (test set, per digit)

{likelihood_text}

## 2. The latent space

{latent_text}

## 3. Sample quality

{samples:,} digits drawn as users get them: {drawn_text}. In their place as the reference,
{real_digits:,} real training digits drawn at random. Each set is compared with the test digits in
the feature spaces of two judges: numgen's bundled recognizer (a CNN; its 128-d penultimate layer)
and the second judge, `judge2` (a residual network trained apart, used by no legibility check and
no choice of settings). Fréchet distances compare only with others measured with the same judge
and the same number of digits.

{quality_table}

![generated digits](samples.png)

![digit frequencies, generated and test](classes.png)

## 4. Conditional generation

{conditional_text}

## 5. Usefulness as training data

{usefulness_text}
"""

LIKELIHOOD_TEXT = """| metric | value |
| --- | ---: |
| reconstruction MSE, summed over 784 pixels (the original metric) | {recon_mse} |
| reconstruction binary cross-entropy, nats | {recon_bce} |
| KL(q(z\\|x) ‖ N(0, I)), nats | {kl} |
| negative ELBO: the model's reconstruction loss + KL | {neg_elbo} |
| IWAE NLL on binarized digits, nats (K = {iwae_k:,}) | {iwae_cell} |
| negative ELBO on the same binarized digits, nats | {binarized_neg_elbo} |

Reconstructions decode each digit's posterior mean. The negative ELBO draws one latent per digit
and uses the model's own reconstruction term (squared error for an MSE model, cross-entropy against
grey levels for a Bernoulli one) with the KL in closed form. {iwae_text}

![test digits above their reconstructions](reconstructions.png)"""

LATENT_TEXT = """**k-NN accuracy: {knn_accuracy} %**: each test digit's posterior mean is classified by the
majority label of its {knn_k} nearest training posterior means. High when the latent space
separates the digits{knn_note}

![test digits in the latent space](latent.png)

### The original project's grid test, with explicit labels

{grid_text}"""

USEFULNESS_TEXT = """Train on generated digits, test on real ones (Ravuri & Vinyals 2019): a fresh
recognizer, numgen's recipe, trained on {tstr_digits:,} generated digits (the digits 0-9 in
turn) only and tested on the real test set: **{generated} %**; the same recipe trained on
{tstr_digits:,} real training digits: {real} %."""

KNN_CVAE_NOTE = """; a conditional model is given the label, so its latent need hold only
style, and a low value is what it is built for."""

IWAE_TEXT = """IWAE (Burda et al. 2016) on {iwae_digits:,} test digits drawn at random
(seed {seed}), binarized {binarization}; {iwae_k:,} importance samples each; ± is the standard
error over digits. The ELBO row averages the same importance weights, so it is never below the
IWAE NLL."""

CVAE_NLL_NOTE = """ For this conditional model both are of −log p(x | y), each digit given its true
label y: with the ten digits equally likely, p(x) ≥ p(x | y) / 10, so its −log p(x) is at most
ln 10 = 2.30 nats above the IWAE NLL, and it compares with unconditional models' NLL only so."""

GRID_TEXT = """**The recognizer agrees with {agreement} % of the {points} grid digits** (the original
project reported 27.3 % without saying what each digit should be). The {grid_n}×{grid_n} grid over
[{grid_lo}, {grid_hi}]² lies in {plane}. Each grid point should show the majority digit of its
{grid_k} nearest test encodings (Euclidean distance in the whole latent space); it agrees when the
recognizer reads that digit in its decoded image.

![grid with disagreements marked](grid.png)"""

FIRST_TWO_DIMS = "the first two latent dimensions, the others held at 0"

CONDITIONAL_TEXT = """**{accuracy} % of the generated digits are recognised as the digit
requested** (digits 0-9 requested in turn, {per_digit:,} each).

| digit | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| recognised as requested, % | {per_class} |

![confusion matrix](confusion.png)

![per-class accuracy](per_class.png)"""


QUALITY_ROWS = (  # (row, key, format, scale)
    ("recognised as asked by the judge, %", "recognised", ".2f", 100),
    ("recognised as asked by the second judge, %", "recognised_second", ".2f", 100),
    ("Fréchet distance to the test digits (judge's features)", "frechet", ".2f", 1),
    ("Fréchet distance to the test digits (second judge's features)", "frechet_second", ".2f", 1),
    ("precision (Kynkäänniemi et al. 2019, k = {pr_k})", "precision", ".3f", 1),
    ("recall (k = {pr_k})", "recall", ".3f", 1),
    ("mean recognizer confidence", "confidence", ".3f", 1),
    ("entropy of the recognised-digit histogram, nats (2.303 if balanced)", "class_entropy",
     ".3f", 1),
    ("styles redrawn by the legibility check per digit asked for", "redraw_rate", ".4f", 1),
)  # fmt: skip


def quality_table(m: dict) -> str:
    """Section 3's table: the digits as shipped, the raw model's (if measured) and the real
    training digits' (the floor; recognised: the test digits), one row per figure."""
    columns = {"as shipped": "samples"}
    if m.get("raw"):
        columns["raw model"] = "raw"
    columns["real digits"] = "real"
    spread = m.get("spread") or {}  # with several draws: each figure's standard deviation
    lines = ["| metric | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, key, spec, scale in QUALITY_ROWS:
        cells = []
        for part in columns.values():
            value, sd = m[part].get(key), (spread.get(part) or {}).get(key)
            cell = _num(None if value is None else scale * value, spec)
            cells.append(cell if sd is None else f"{cell} ± {_num(scale * sd, spec)}")
        lines.append(f"| {name.format(**m['settings'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drawn_text(m: dict) -> str:
    """How the digits of section 3 were drawn (the settings it measured)."""
    d = m["settings"].get("drawn", {})
    text = f"through `{d.get('path', '?')}` at temperature {d.get('temperature')}"
    sampler = ", ".join(f"{k} {d[k]}" for k in ("steps", "solver", "guidance") if k in d)
    text += f", {sampler}" if sampler else ""
    text += (
        ", no legibility check" if d.get("check") is None else f", legibility check {d['check']}"
    )
    if m.get("raw"):
        text += "; the raw model: styles from the prior at temperature 1, no check (`--raw`)"
    draws, seed = m["settings"].get("draws", 1), m["settings"]["seed"]
    if draws > 1:
        text += (
            f". Each figure is the mean ± standard deviation of {draws} independent draws (seeds "
            f"{seed} to {seed + draws - 1}, each with its own real digits); pictures and per-digit "
            "figures are the first draw's"
        )
    return text


def _num(value: float | None, spec: str = ".2f") -> str:
    """A figure for the report; "—" for one that was not computed."""
    return "—" if value is None else format(value + 0.0, spec)  # + 0.0: no "-0.000"


def report(m: dict) -> str:
    """The markdown report of metrics ``m`` (as :func:`evaluate` returns them), linking the
    pictures that the sections drew beside it."""
    model, s, skipped = m["model"], m["settings"], m["skipped"]
    cond = m["conditional"]
    command = (
        f"numgen evaluate {model['source']} --samples {s['samples']} --iwae-k {s['iwae_k']} "
        f"--iwae-digits {s['iwae_digits']} --seed {s['seed']}"
        + (" --dataset embedded" if s["dataset"] == "embedded" else "")
        + (f" --tstr {s['tstr']}" if s.get("tstr") else "")
        + (" --raw" if s.get("raw") else "")
        + (f" --draws {s['draws']}" if s.get("draws", 1) > 1 else "")
    )
    figures = {key: _num(value) for key, value in m["likelihood"].items()}
    # an estimate ± its standard error; a lone "—" where it was not computed
    figures["iwae_cell"] = (
        "—" if "iwae" in skipped else f"{figures['iwae_nll']} ± {figures['iwae_nll_stderr']}"
    )
    if "iwae" in skipped:
        iwae_text = f"IWAE NLL: not computed, because {skipped['iwae']}."
    else:
        iwae_text = IWAE_TEXT.format(**s) + ("" if "conditional" in skipped else CVAE_NLL_NOTE)
    if "grid" in skipped:
        grid_text = f"Not run: {skipped['grid']}."
    else:
        grid_text = GRID_TEXT.format(
            agreement=_num(100 * m["latent"]["grid_agreement"], ".1f"),
            points=s["grid_n"] ** 2,
            plane="the latent plane" if model.get("latent_dim", 2) <= 2 else FIRST_TWO_DIMS,
            **s,
        )
    if "likelihood" in skipped:
        likelihood_text = f"Not applicable: {skipped['likelihood']}."
    else:
        likelihood_text = LIKELIHOOD_TEXT.format(**s, **figures, iwae_text=iwae_text)
    if "latent" in skipped:
        latent_text = f"Not applicable: {skipped['latent']}."
    else:
        latent_text = LATENT_TEXT.format(
            **s, grid_text=grid_text, knn_accuracy=_num(100 * m["latent"]["knn_accuracy"], ".1f"),
            knn_note="." if "conditional" in skipped else KNN_CVAE_NOTE,
        )  # fmt: skip
    use = m["usefulness"]
    if "usefulness" in skipped:
        usefulness_text = f"Not measured: {skipped['usefulness']}."
    else:
        usefulness_text = USEFULNESS_TEXT.format(
            tstr_digits=use["digits"], generated=_num(100 * use["generated"]),
            real=_num(100 * use["real"]),
        )  # fmt: skip
    if "conditional" in skipped:
        conditional_text = f"Not applicable: {skipped['conditional']}."
    else:
        conditional_text = CONDITIONAL_TEXT.format(
            accuracy=_num(100 * cond["class_accuracy"]),
            per_digit=s["samples"] // 10,
            per_class=" | ".join(_num(100 * a, ".1f") for a in cond["per_class_accuracy"]),
        )
    return REPORT.format(
        **model,
        **s,
        **figures,
        description=describe(model),
        drawn_text=drawn_text(m),
        quality_table=quality_table(m),
        seconds=sum(m["seconds"].values()),
        command=command,
        likelihood_text=likelihood_text,
        latent_text=latent_text,
        conditional_text=conditional_text,
        usefulness_text=usefulness_text,
    )


def describe(model: dict) -> str:
    """One sentence on the model of a ``metrics.json``: its family and sizes."""
    if model["kind"] == "flow":
        start = "refining the digits of a CVAE" if model["start"] == "cvae" else "from noise"
        return (
            f"A FLOW (flow matching {start}, U-Net {model['channels']} channels at 28×28, "
            f"{model['steps']} {model['solver']} steps, guidance {model['guidance']}, "
            f"{model['parameters']:,} parameters)"
        )
    if model["kind"] == "onestep":
        return (
            f"A ONE-STEP model (a flow distilled into one evaluation of a U-Net "
            f"{model['channels']} channels wide at 28×28, styles through a learnt prior of "
            f"{model['prior_layers']} couplings, {model['parameters']:,} parameters with its "
            f"frozen teacher)"
        )
    return (
        f"A {model['kind'].upper()} ({model['arch']} encoder/decoder, {model['latent_dim']}-D "
        f"latent, {model['likelihood']} likelihood, β = {model['beta']}, "
        f"{model['parameters']:,} parameters)"
    )
