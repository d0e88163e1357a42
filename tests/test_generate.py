"""Generation helpers: grids in reading order, decoding, sampling, PCA projection."""

import numpy as np
import pytest
import torch

from numgen import generate
from numgen.data import Digits
from numgen.models import VAEConfig, build_model


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return build_model(VAEConfig(arch="mlp", hidden=16)).eval()


def test_latent_grid_is_in_reading_order() -> None:
    grid = generate.latent_grid(3, -1.5, 1.5)
    assert grid.shape == (9, 2)
    np.testing.assert_allclose(grid[0], [-1.5, 1.5])  # top-left: smallest x, largest y
    np.testing.assert_allclose(grid[2], [1.5, 1.5])
    np.testing.assert_allclose(grid[-1], [1.5, -1.5])
    with pytest.raises(ValueError, match="low end must be below"):
        generate.latent_grid(3, 1.0, -1.0)


def test_manifold_decodes_each_grid_point(vae) -> None:
    grid = generate.manifold(vae, 4, -1.0, 1.0)
    assert grid.shape == (4, 4, 28, 28)
    expected = generate.decode(vae, generate.latent_grid(4, -1.0, 1.0))
    np.testing.assert_array_equal(grid.reshape(16, 28, 28), expected)
    assert grid.min() >= 0.0 and grid.max() <= 1.0


def test_decode_checks_the_latent_shape(vae) -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        generate.decode(vae, np.zeros((3, 5)))


def test_sampling_is_repeatable_by_seed(vae) -> None:
    a, b, c = (
        generate.sample(vae, 6, seed=1),
        generate.sample(vae, 6, seed=1),
        generate.sample(vae, 6, seed=2),
    )
    assert a.shape == (6, 28, 28)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_conditional_model_draws_the_asked_digit_labels() -> None:
    cvae = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=16)).eval()
    z = np.zeros((2, 2), dtype=np.float32)
    three, eight = generate.decode(cvae, z, 3), generate.decode(cvae, z, [3, 8])
    np.testing.assert_array_equal(three[0], eight[0])
    assert not np.array_equal(eight[0], eight[1])
    with pytest.raises(ValueError, match="give the label"):
        generate.decode(cvae, z)


def test_reconstruct_returns_one_image_per_digit(vae, tiny_digits: Digits) -> None:
    out = generate.reconstruct(vae, tiny_digits.subset(5))
    assert out.shape == (5, 28, 28)


def test_project_2d_keeps_2d_and_uses_pca_beyond() -> None:
    z2 = np.random.default_rng(0).normal(size=(50, 2))
    points, names = generate.project_2d(z2)
    assert points is z2 and names == ("z[0]", "z[1]")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    points, names = generate.project_2d(z)
    assert points.shape == (500, 2)
    assert names[0].startswith("PC 1") and "variance" in names[0]
    assert points[:, 0].var() > points[:, 1].var() > 1.0  # the two wide directions, in order


def test_a_bf16_draw_is_near_fp32_repeatable_and_an_option(tmp_path, capsys) -> None:
    """precision="bf16" runs the network passes in bfloat16 (native where the CPU has it,
    emulated elsewhere): digits a little different from fp32's, the same for the same seed."""
    from numgen import compose, export
    from numgen.cli.main import main
    from numgen.errors import ConfigError
    from numgen.hub import load
    from numgen.models.sampling import Sampling

    model = load("onestep")
    fp32, bf16 = (
        model.sampling_with(check=False),
        model.sampling_with(check=False, precision="bf16"),
    )
    a = compose.digits(model, 7, 32, seed=1, sampling=fp32)
    b = compose.digits(model, 7, 32, seed=1, sampling=bf16)
    assert b.shape == a.shape and b.dtype == np.float32 and b.min() >= 0 and b.max() <= 1
    np.testing.assert_array_equal(b, compose.digits(model, 7, 32, seed=1, sampling=bf16))
    assert not np.array_equal(a, b) and np.abs(a - b).mean() < 0.01
    with pytest.raises(ConfigError, match="precision='fp16': choose one of fp32, bf16"):
        Sampling(precision="fp16")
    assert "precision" not in export.ExportConfig(count=1).to_dict()  # older exports unchanged
    config = export.ExportConfig(count=1, precision="bf16")
    assert config.to_dict()["precision"] == "bf16" and "--precision=bf16" in config.command()
    out = str(tmp_path / "x.png")
    assert main(["write", "12", "--precision", "fp16", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: precision='fp16'") and len(err.strip().splitlines()) == 1
    assert main(["digits", "4", "-n", "2", "--precision", "bf16", "--out", out]) == 0


def test_a_draw_in_passes_is_the_same_bytes_as_in_one() -> None:
    """generate.draw splits a call into near-equal passes (of at most 256 digits on a CPU, where
    passes that fit the caches draw faster): every digit in its place, as one wide pass draws it
    (the matrix products of passes of other widths may round a pixel's last bit differently)."""
    from numgen.hub import load
    from numgen.models.sampling import CPU_PASS_ROWS, passes

    cpu = torch.device("cpu")
    n = CPU_PASS_ROWS + 1
    assert [(p.start, p.stop) for p in passes(n, cpu)] == [(0, n // 2), (n // 2, n)]
    assert passes(CPU_PASS_ROWS, cpu) == [slice(0, CPU_PASS_ROWS)]
    for name in ("cvae", "onestep"):
        model = load(name)
        styles = generate.draw_styles(model, n, seed=3)
        labels, seeds = np.arange(n) % 10, generate.digit_seeds(3, n)
        sampling = model.sampling_with(check=False)
        with torch.inference_mode():
            wide = model.draw(
                torch.as_tensor(labels), torch.as_tensor(styles), torch.as_tensor(seeds), sampling
            )
        drawn = generate.draw(model, styles, labels, seeds, sampling)
        np.testing.assert_allclose(drawn, wide.squeeze(1).numpy(), rtol=0, atol=1e-6)
        none = generate.draw(model, styles[:0], labels[:0], seeds[:0], sampling)
        assert none.shape == (0, 28, 28) and none.dtype == np.float32
