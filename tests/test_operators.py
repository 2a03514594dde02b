import pytest
import torch

from dip import operators as ops


def test_lanczos_taps_match_the_paper():
    taps = ops.lanczos2_taps(4)
    assert len(taps) == 16 and torch.isclose(taps.sum(), torch.tensor(1.0))
    assert torch.allclose(taps, taps.flip(0))


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 6, 8])
def test_downsampler_keeps_a_constant_image_constant(factor):
    x = torch.full((1, 3, 64 - 64 % factor, 48 - 48 % factor), 0.37)
    y = ops.SuperResolve(factor)(x)
    assert y.shape == (1, 3, x.shape[2] // factor, x.shape[3] // factor)
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=1e-6)


def test_sr_observation_and_baselines_have_the_right_shapes(clean64):
    sr = ops.SuperResolve(4)
    low = sr.observe(clean64)
    assert low.shape == (1, 3, 16, 16)
    for method in ("bicubic", "nearest"):
        assert sr.upsample(low, method).shape == clean64.shape


def test_sr_rejects_sizes_not_divisible_by_the_factor():
    with pytest.raises(ValueError, match="not a multiple of the SR factor 4"):
        ops.SuperResolve(4).observe(torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize("factor", [1, 0, -2, 2.5, True])
def test_sr_rejects_factors_that_are_not_integers_of_at_least_two(factor):
    with pytest.raises(ValueError, match="SR factor must be an integer >= 2"):
        ops.SuperResolve(factor)


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 8])
def test_the_loss_operator_is_centred_like_the_observation(factor):
    """On a smooth image, the Lanczos-2 operator and PIL's Lanczos resize (pixel centres aligned) agree;
    a half-pixel shift of the operator's taps (an odd factor sampled at the even factors' phase) would not."""
    size = 24 * factor
    t = torch.linspace(0, 1, size)
    x = (0.5 + 0.4 * torch.sin(2 * torch.pi * t)[:, None] * torch.cos(3 * torch.pi * t)[None, :])[None, None]
    sr = ops.SuperResolve(factor)
    low, observed = sr(x), sr.observe(x.expand(1, 3, -1, -1))[:, :1]
    assert low.shape == observed.shape == (1, 1, 24, 24)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the borders' padding
    assert (low - observed)[inner].abs().max() < 0.01


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_random_drop_fraction_is_within_two_percent(p):
    mask = ops.random_drop(128, 128, p, torch.Generator().manual_seed(1))
    assert abs((1 - mask.mean().item()) - p) < 0.02


def test_masks_are_reproducible_from_their_seed():
    a, b, c = (ops.random_drop(32, 32, 0.5, torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_text_and_box_masks_hide_some_but_not_most_pixels():
    for mask in (ops.text_mask(64, 64), ops.box_mask(64, 64), ops.box_mask(64, 64, 0.3, torch.Generator())):
        assert mask.shape == (1, 1, 64, 64)
        assert 0.02 < 1 - mask.mean().item() < 0.5


def test_inpaint_rejects_a_mask_of_another_size():
    with pytest.raises(ValueError, match="mask is"):
        ops.Inpaint(torch.ones(1, 1, 32, 32)).observe(torch.rand(1, 3, 64, 64))


def test_inpaint_loss_ignores_unknown_pixels():
    mask = ops.box_mask(32, 32)
    inpaint = ops.Inpaint(mask)
    x = torch.rand(1, 3, 32, 32)
    y = inpaint.observe(x)
    changed = x + (1 - mask) * 5  # differs only where the mask hides pixels
    assert inpaint.loss(changed, y).item() == 0


def test_denoise_noise_level_and_clipping(clean64):
    y = ops.Denoise(25).observe(clean64, torch.Generator().manual_seed(0))
    assert 0 <= y.min() and y.max() <= 1
    inner = (clean64 > 0.2) & (clean64 < 0.8)
    assert abs((y - clean64)[inner].std().item() * 255 - 25) < 2.5


@pytest.mark.parametrize("bad", [0, -5])
def test_denoise_rejects_non_positive_sigma(bad):
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ops.Denoise(bad)


def test_jpeg_observation_is_degraded_but_close(clean64):
    y = ops.JpegArtifacts(10).observe(clean64)
    err = (y - clean64).abs().mean().item()
    assert y.shape == clean64.shape and 0.005 < err < 0.1


def test_held_out_pixels_are_drawn_from_the_seed_and_leave_the_loss():
    from dip.operators import Denoise, HeldOut
    from dip.seeds import generator

    y = torch.rand(1, 3, 64, 64)
    held = HeldOut(Denoise(25), y, 0.1, generator(3, "holdout"))
    assert held.held.shape == (1, 1, 64, 64) and abs(held.held.mean().item() - 0.1) < 0.02
    assert torch.equal(held.held, HeldOut(Denoise(25), y, 0.1, generator(3, "holdout")).held)
    assert not torch.equal(held.held, HeldOut(Denoise(25), y, 0.1, generator(4, "holdout")).held)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss = held.loss(x, y)
    keep = held.held[0, 0] == 0
    expected = (x - y).square()[..., keep].mean()  # the MSE over the kept pixels, on the usual scale
    assert torch.allclose(loss, expected)
    loss.backward()
    assert (x.grad[..., ~keep] == 0).all() and (x.grad[..., keep] != 0).any()
    error = held.heldout_error(x.detach(), y)
    assert torch.allclose(error, (x.detach() - y).square()[..., ~keep].mean())


def test_held_out_pixels_are_observed_ones():
    from dip.operators import HeldOut, Inpaint
    from dip.seeds import generator

    mask = ops.random_drop(64, 64, 0.5, generator(0, "observation"))
    op = Inpaint(mask)
    held = HeldOut(op, op.observe(torch.rand(1, 3, 64, 64)), 0.2, generator(0, "holdout"))
    assert held.held.sum() > 0 and (held.held <= mask).all()
    assert held.mask is op.mask


@pytest.mark.parametrize("fraction", [0, 0.5, -0.1])
def test_holdout_fraction_is_checked(fraction):
    from dip.operators import Denoise, HeldOut
    from dip.seeds import generator

    with pytest.raises(ValueError, match="holdout fraction"):
        HeldOut(Denoise(25), torch.rand(1, 1, 8, 8), fraction, generator(0, "holdout"))
