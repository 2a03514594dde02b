"""SURE and PURE (dip.risk): unbiased estimates of the error to the clean image, checked on fixed linear
denoisers against the true error over many noise draws; the Monte-Carlo divergence; and their use in a fit."""

import pytest
import torch

from dip import restore
from dip.fit import FitSettings
from dip.operators import Denoise, Inpaint, Operator, Poisson, SuperResolve
from dip.risk import PURE, SURE, mc_divergence, risk_estimate
from dip.seeds import generator
from dip.stopping import ema_delay

DRAWS = 4000
SMALL = {"kind": "skip", "channels_down": [8] * 3, "channels_up": [8] * 3, "channels_skip": [2] * 3}


def _clean(h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(1, 1, h, w, generator=generator(1, "observation"), dtype=torch.float64) * 0.8 + 0.1


def _shrink(a: float, y: torch.Tensor) -> torch.Tensor:
    return a * y


@pytest.mark.parametrize("a", [0.3, 0.7, 1.0])
def test_the_mc_divergence_of_a_scaling_is_a_times_n_in_expectation(a):
    y = torch.rand(DRAWS, 3, 4, 4, generator=generator(0, "observation"), dtype=torch.float64)
    b = torch.randn(y.shape, generator=generator(0, "divergence"), dtype=torch.float64)
    eps = 1.6e-3
    div = mc_divergence(_shrink(a, y), _shrink(a, y + eps * b), b, eps)
    n = y[0].numel()
    # Each draw is a·‖b‖², mean a·N, standard error a·sqrt(2N/DRAWS).
    assert abs(div.mean().item() - a * n) < 5 * a * (2 * n / DRAWS) ** 0.5


@pytest.mark.parametrize("a", [0.4, 0.8])
def test_mc_sure_of_a_linear_denoiser_averages_to_its_true_mse(a):
    clean, sigma = _clean(), 0.1
    noise = torch.randn(DRAWS, 1, 8, 8, generator=generator(2, "observation"), dtype=torch.float64)
    y = clean + sigma * noise  # unclipped: SURE's model
    b = torch.randn(y.shape, generator=generator(2, "divergence"), dtype=torch.float64)
    eps = 1.6e-3
    sure = SURE(sigma).loss(_shrink(a, y), _shrink(a, y + eps * b), b, eps, y)
    true = (_shrink(a, y) - clean).square().flatten(1).mean(1)
    # The expected error (1−a)²·mean(x²) + a²σ², and SURE's spread around it over the draws.
    expected = (1 - a) ** 2 * clean.square().mean() + a**2 * sigma**2
    assert abs(true.mean() - expected) < 3e-4  # the check itself is sharp enough
    assert abs(sure.mean() - true.mean()) < 4 * sure.std() / DRAWS**0.5
    # Not a tautology: the plain MSE to the observation is biased by far more than that tolerance.
    mse = (_shrink(a, y) - y).square().flatten(1).mean(1)
    assert abs(mse.mean() - true.mean()) > 10 * sure.std() / DRAWS**0.5


@pytest.mark.parametrize("a", [0.3, 0.9])
def test_mc_pure_of_a_linear_denoiser_averages_to_its_true_mse(a):
    clean, peak = _clean(), 20.0
    counts = torch.poisson((peak * clean).expand(DRAWS, -1, -1, -1), generator=generator(3, "observation"))
    y = counts / peak  # dip's Poisson observation: Poisson(P x) / P
    b = torch.randn(y.shape, generator=generator(3, "divergence"), dtype=torch.float64)
    eps = 1.6e-3
    pure = PURE(peak).loss(_shrink(a, y), _shrink(a, y + eps * b), b, eps, y)
    true = (_shrink(a, y) - clean).square().flatten(1).mean(1)
    expected = a**2 * clean.mean() / peak + (1 - a) ** 2 * clean.square().mean()
    assert abs(true.mean() - expected) < 5e-4
    assert abs(pure.mean() - true.mean()) < 4 * pure.std() / DRAWS**0.5
    mse = (_shrink(a, y) - y).square().flatten(1).mean(1)
    assert abs(mse.mean() - true.mean()) > 10 * pure.std() / DRAWS**0.5


def test_the_estimate_follows_the_operator():
    assert isinstance(risk_estimate(Denoise(25)), SURE) and risk_estimate(Denoise(25)).sigma == pytest.approx(25 / 255)
    assert risk_estimate(Operator(), 0.05).sigma == 0.05
    assert isinstance(risk_estimate(Poisson(10)), PURE)
    for operator in (SuperResolve(4), Inpaint(torch.ones(1, 1, 8, 8))):
        with pytest.raises(ValueError, match="SURE applies to denoising"):
            risk_estimate(operator)
    with pytest.raises(ValueError, match="standard deviation"):
        risk_estimate(Denoise(None))


def test_a_sure_fit_uses_the_observation_as_input_and_its_own_stream(clean64):
    y = Denoise(25).observe(clean64[..., :32, :32], generator(0, "observation"))
    kwargs = dict(arch=SMALL, settings={"iterations": 6, "check_every": 3}, stop=None, device="cpu")
    sure = restore(y, Denoise(25), loss="sure", **kwargs)
    again = restore(y, Denoise(25), loss="sure", **kwargs)
    plain = restore(y, Denoise(25), **kwargs)
    assert torch.equal(sure.image, again.image)  # reproducible: the probes come from the seed
    assert not torch.allclose(sure.image, plain.image)
    with pytest.raises(ValueError, match="loss: SURE applies to denoising"):
        restore(y[..., :16, :16], SuperResolve(4), loss="sure", **kwargs)
    with pytest.raises(ValueError, match="discrepancy"):
        restore(y, Denoise(25), loss="sure", **{**kwargs, "stop": "discrepancy"}, noise_sigma=0.1)
    with pytest.raises(ValueError, match="stop: the risk rule watches a risk-estimate data term"):
        restore(y, Denoise(25), **{**kwargs, "stop": "risk"})


def test_a_sure_fit_stops_by_default_where_its_windowed_estimate_first_reaches_zero(clean64):
    # The rule reads the very estimate the history records: its decision follows from the history alone.
    # 16×16: few pixels, so the small network's estimate falls through 0 within a few hundred iterations.
    y = Denoise(25).observe(clean64[..., :16, :16], generator(0, "observation"))
    settings = {"iterations": 600, "check_every": 25}
    result = restore(y, Denoise(25), arch=SMALL, settings=settings, loss="sure", device="cpu")
    assert set(result.stops) == {"risk"}
    means = result.history.set_index("iteration")["loss"].rolling(25).mean()
    # No crossing counts before three EMA lags (RiskStop's start_at): the EMA image is not yet an average.
    start = 3 * ema_delay(FitSettings().ema)
    crossed = means[(means <= 0) & (means.index >= start)]
    assert len(crossed), "the estimate never reached 0: the test's fit no longer exercises the rule"
    first = int(crossed.index[0])
    assert result.stops["risk"]["stop_at"] == first and result.returned_by == "risk"
    assert result.returned_iteration == first and result.iterations < 600


def test_a_pure_fit_runs_on_a_poisson_observation(clean64):
    from dip.fit import FitSettings, fit

    clean = clean64[..., :32, :32]
    operator = Poisson(10)
    y = operator.observe(clean, generator(0, "observation"))
    settings = FitSettings(iterations=4, check_every=2, input="image")
    result = fit(SMALL, operator, y, settings, clean=clean, input_image=y, risk=risk_estimate(operator))
    assert len(result.history) == 4 and result.history["loss"].notna().all()
    with pytest.raises(ValueError, match="needs the observation as the network's input"):
        fit(SMALL, operator, y, settings, risk=PURE(10))
