import argparse

import numpy as np
import pytest
import torch

from dip.operators import Denoise, HeldOut
from dip.seeds import generator
from dip.stopping import (
    RULES,
    DiscrepancyStop,
    ExponentialVarianceStop,
    FixedStop,
    HoldoutStop,
    RiskStop,
    WindowedVarianceStop,
    clipped_noise_mse,
    drawing,
    ema_delay,
    estimate_noise_sigma,
    make_rule,
)


def v_shaped_outputs(n=600, minimum=300, size=256, seed=0):
    """Outputs around a fixed image whose jitter shrinks linearly to `minimum`, then grows again."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 1, 16, size // 16, generator=gen)
    for t in range(1, n + 1):
        scale = 0.01 + 0.2 * abs(t - minimum) / n
        yield t, base + scale * torch.randn(base.shape, generator=gen)


def test_windowed_variance_matches_a_direct_computation():
    rule = WindowedVarianceStop(window=20, patience=10_000)
    window = []
    for t, x in v_shaped_outputs(n=120):
        rule.update(t, x, x)
        window = (window + [x.double().flatten()])[-20:]
        if t >= 20:
            stack = torch.stack(window)
            direct = (stack - stack.mean(0)).square().sum(1).mean() / stack.shape[1]
            assert abs(rule.signal.item() - direct.item()) < 1e-6
        else:
            assert np.isnan(rule.signal.item())


def test_es_wmv_stops_near_the_designed_minimum_and_keeps_its_image():
    window, minimum = 20, 300
    rule = WindowedVarianceStop(window=window, patience=100)
    for t, x in v_shaped_outputs(minimum=minimum):
        rule.update(t, x, x * 0 + t)  # the kept image says which iteration it came from
        if rule.should_stop(t):
            break
    # The window ending at t is centred on t - W/2, so its variance is least at minimum + W/2.
    assert abs(rule.chosen_iteration() - (minimum + window // 2)) <= 5
    assert rule.image.flatten()[0].item() == rule.chosen_iteration()
    assert t == rule.chosen_iteration() + 100


def test_with_a_delay_the_image_comes_from_after_the_minimum():
    window, minimum, delay = 20, 300, 99
    rule = WindowedVarianceStop(window=window, patience=60, delay=delay)
    for t, x in v_shaped_outputs(minimum=minimum):
        rule.update(t, x, x * 0 + t)
        if rule.should_stop(t):
            break
    found = rule.minimum_iteration.item()
    assert abs(found - (minimum + window // 2)) <= 5
    # The image is the one `delay` iterations after the minimum, and a patience shorter than the delay
    # is stretched so that the image exists before the fit stops.
    assert rule.chosen_iteration() == found + delay == rule.image.flatten()[0].item()
    assert t == rule.stop_iteration() == found + delay
    assert rule.report(t) == {"iteration": found + delay, "minimum": found, "stop_at": found + delay, "stopped": True}


def test_a_fit_ending_within_the_delay_keeps_its_last_image():
    rule = ExponentialVarianceStop(alpha=0.1, patience=100, delay=99)
    for t, x in v_shaped_outputs(n=340, minimum=300):
        rule.update(t, x, x * 0 + t)
    assert rule.minimum_iteration.item() > 280
    assert rule.chosen_iteration() == 340 == rule.image.flatten()[0].item()
    assert not rule.should_stop(340)


def test_the_delay_is_the_emas_mean_lag():
    assert ema_delay(0.99) == 99 and ema_delay(0.9) == 9 and ema_delay(0.0) == 0
    assert make_rule("es-wmv", 100, ema=0.99).delay == 99
    assert make_rule("es-emv", 100).delay == 0


def test_a_rule_that_would_have_stopped_ignores_later_minima():
    """Recording every rule over the whole budget reports what stopping at the rule would have."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 8, 8, generator=gen)

    def outputs():
        for t in range(1, 901):
            # A trough at 200, then a deeper one at 700 that a fit stopped at 200 + 100 never sees.
            scale = 0.01 if abs(t - 700) < 50 else 0.05 + 0.1 * min(abs(t - 200), 200) / 200
            yield t, base + scale * torch.randn(base.shape, generator=gen)

    stopping, recording = (WindowedVarianceStop(window=10, patience=100, delay=20) for _ in range(2))
    for t, x in outputs():
        recording.update(t, x, x * 0 + t)
        if not stopping.should_stop(t - 1):
            stopping.update(t, x, x * 0 + t)
    assert stopping.report(900) == recording.report(900)
    assert recording.minimum_iteration.item() < 300 and recording.image.flatten()[0].item() < 320
    assert recording.signal.item() > 0  # the statistic itself is still recorded


def test_es_emv_stops_near_the_designed_minimum():
    rule = ExponentialVarianceStop(alpha=0.1, patience=100)
    for t, x in v_shaped_outputs(minimum=300):
        rule.update(t, x, x)
        if rule.should_stop(t):
            break
    assert abs(rule.chosen_iteration() - 300) <= 15


def test_fixed_stop_returns_iteration_n():
    rule = FixedStop(5)
    for t in range(1, 9):
        rule.update(t, torch.zeros(1, 1), torch.full((1, 1), float(t)))
    assert rule.chosen_iteration() == 5 and rule.image.item() == 5 and rule.should_stop(5)


def test_every_registered_rule_is_built_by_its_name_as_its_class():
    observed = torch.rand(1, 1, 16, 16)
    heldout = (HeldOut(Denoise(25), observed, 0.1, generator(0, "holdout")), observed)
    assert set(RULES) == {"fixed", "es-wmv", "es-wmv-paper", "es-emv", "discrepancy", "holdout", "risk"}
    for name, spec in RULES.items():
        rule = make_rule(name, 100, discrepancy=0.01, heldout=heldout, risk=True)
        assert type(rule) is spec.cls and rule.name == name, name
    # The two ES-WMV variants differ by the guard only.
    assert make_rule("es-wmv", 100).settle is not None and make_rule("es-wmv-paper", 100).settle is None


def test_the_discrepancy_rule_needs_a_noise_level():
    with pytest.raises(ValueError, match="noisy observations only"):
        make_rule("discrepancy", 100)


def test_discrepancy_stops_when_the_smoothed_loss_reaches_the_target_and_keeps_the_lagged_image():
    window, delay, target = 25, 99, 0.01
    rule = make_rule("discrepancy", 2000, ema=0.99, discrepancy=target)
    assert (rule.window, rule.delay) == (window, delay)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 2001):
        # A loss falling linearly from 0.05 by 1e-4 per iteration, with jitter the window smooths out.
        loss = torch.tensor(0.05 - 1e-4 * t) + 1e-4 * torch.randn((), generator=gen)
        rule.update(t, torch.zeros(1, 1), torch.full((1, 1), float(t)), loss)
        if rule.should_stop(t):
            break
    # The mean of the last 25 losses is 0.05 - 1e-4 (t - 12): it reaches 0.01 at t = 412.
    crossing = rule.minimum_iteration.item()
    assert abs(crossing - 412) <= 3
    assert rule.chosen_iteration() == crossing + delay == rule.image.item() == t
    report = rule.report(t)
    assert report["stopped"] and report["stop_at"] == crossing + delay and report["target"] == target


def test_discrepancy_that_never_crosses_keeps_the_last_image_and_does_not_stop():
    rule = DiscrepancyStop(0.001, window=5)
    for t in range(1, 50):
        rule.update(t, torch.zeros(1, 1), torch.full((1, 1), float(t)), torch.tensor(0.01))
    assert not rule.should_stop(49) and rule.chosen_iteration() == 49
    assert rule.report(49)["minimum"] is None and rule.stop_iteration() is None


@pytest.mark.parametrize("level, expected, from_observation", [(0.5, 1.0, 0.02), (0.02, 0.6, 0.2)])
def test_clipped_noise_mse_matches_a_monte_carlo_draw(level, expected, from_observation):
    sigma = 25 / 255
    flat = torch.full((1, 3, 64, 64), level)
    noise = torch.randn((200, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    drawn = float(((flat + sigma * noise).clamp(0, 1) - flat).square().mean())
    observed = (flat + sigma * noise[:1]).clamp(0, 1)
    model = clipped_noise_mse(flat, sigma)
    assert model == pytest.approx(drawn, rel=0.02)
    assert model / sigma**2 == pytest.approx(expected, abs=0.1)  # clipping near black removes ~40 %
    # From the noisy observation itself (what the rule sees): near black, clipping lifts the observed mean
    # and the model overestimates by up to a fifth; at mid-grey it is exact.
    assert clipped_noise_mse(observed, sigma) == pytest.approx(drawn, rel=from_observation)


def test_the_noise_level_is_estimated_from_one_noisy_image(clean64):
    sigma = 25 / 255
    noisy = (clean64 + sigma * torch.randn(clean64.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown stopping rule 'never'"):
        make_rule("never", 10)


def two_trough_fit(n=900, seed=0):
    """Outputs whose jitter has an early, deeper trough at iteration 150 and a later one at 550, with a
    loss that falls fast (halving every 100 iterations) until 400 and is flat after."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 1, 16, 16, generator=gen)
    for t in range(1, n + 1):
        scale = min(0.005 + 0.1 * abs(t - 150) / n, 0.02 + 0.1 * abs(t - 550) / n)
        loss = torch.tensor(0.01 + 0.1 * 0.5 ** (min(t, 400) / 100))
        yield t, base + scale * torch.randn(base.shape, generator=gen), loss


def test_the_guard_lets_no_minimum_win_while_the_loss_still_falls_fast():
    paper, guarded = (
        make_rule("es-wmv-paper", 900, window=40, patience=1000),
        make_rule("es-wmv", 900, window=40, patience=1000),
    )
    assert (paper.name, guarded.name) == ("es-wmv-paper", "es-wmv") and paper.settle is None
    for t, x, loss in two_trough_fit():
        paper.update(t, x, x, loss)
        guarded.update(t, x, x, loss)
    # The published rule takes the early trough; the guarded one waits for the loss to settle.
    assert abs(paper.report(900)["minimum"] - 170) <= 25
    assert abs(guarded.report(900)["minimum"] - 570) <= 25


def test_the_guarded_rule_needs_the_loss():
    rule = make_rule("es-wmv", 100, window=5)
    with pytest.raises(ValueError, match="needs the loss"):
        rule.update(1, torch.zeros(1, 4), torch.zeros(1, 4))


def test_holdout_keeps_the_image_that_predicts_the_held_out_pixels_best():
    # Images that first approach the clean image and then take on the observation's noise, everywhere
    # except at the held-out pixels, where the noise was never seen: the clean image comes at t = 60
    # (the cross term between the structure error and the held-out noise may move the minimum a little).
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 48, 48, generator=gen)
    observed = clean + 0.1 * torch.randn(clean.shape, generator=gen)
    op = HeldOut(Denoise(25), observed, 0.1, generator(0, "holdout"))
    rule = make_rule("holdout", 1000, patience=50, heldout=(op, observed))
    blur = torch.rand(clean.shape, generator=gen) - 0.5
    bleed = 0.1 * torch.randn(clean.shape, generator=gen)  # what fitted neighbours leak into held-out pixels
    images = {}
    for t in range(1, 1001):
        structure = max(0.0, 1 - t / 60)  # the error the fit removes first
        noise = max(0.0, (t - 60) / 200)  # the noise it fits later
        images[t] = clean + structure * blur + noise * ((observed - clean) * (1 - op.held) + bleed * op.held)
        rule.update(t, images[t], images[t])
        if rule.should_stop(t):
            break
    assert abs(rule.chosen_iteration() - 60) <= 3 and t == rule.chosen_iteration() + 50
    assert torch.equal(rule.image, images[rule.chosen_iteration()])
    assert set(rule.state_dict()) >= {"best_value", "image"} and "observed" not in rule.state_dict()


def test_the_holdout_rule_needs_held_out_pixels():
    with pytest.raises(ValueError, match="holds pixels out"):
        make_rule("holdout", 100)
    with pytest.raises(ValueError, match="holds pixels out"):
        HoldoutStop(Denoise(25), torch.zeros(1, 1, 8, 8))


def test_every_rule_the_cli_accepts_is_registered_with_its_class_and_how_figures_draw_it():
    from matplotlib.colors import to_rgba
    from matplotlib.markers import MarkerStyle

    from dip.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    stop = next(a for a in sub.choices["fit"]._actions if a.dest == "stop")
    assert list(stop.choices) == list(RULES)
    observed = torch.rand(1, 3, 16, 16, generator=generator(0, "observation"))
    heldout = (HeldOut(Denoise(25), observed, 0.1, generator(0, "holdout")), observed)
    for name in stop.choices:
        rule = make_rule(name, 100, discrepancy=0.01, heldout=heldout, risk=True)
        assert type(rule) is RULES[name].cls and rule.name == name
        style = drawing(name)
        assert style.label == name and to_rgba(style.color)
        assert style.marker is None or MarkerStyle(style.marker).get_path().vertices.size
    # Told apart in a figure: no two rules (nor the oracle) share a marker, a colour or a label.
    styles = [drawing(name) for name in ("oracle", *RULES)]
    markers = [s.marker for s in styles if s.marker is not None]
    assert len(set(markers)) == len(markers) and len({s.color for s in styles}) == len(styles)
    assert len({s.label for s in styles}) == len(styles) and drawing("oracle").label == "oracle (analysis)"
    with pytest.raises(KeyError):
        drawing("never")


def test_the_risk_rule_stops_where_the_windowed_estimate_first_reaches_zero():
    # A risk estimate (one per fit) that falls through 0 at different iterations for the two fits; the
    # kept image is the image of the crossing's iteration, with no patience and no lag.
    rule = make_rule("risk", 200, risk=True)
    assert isinstance(rule, RiskStop) and rule.window == 25 and rule.delay == 0
    estimates = {0: lambda t: 0.01 - t * 1e-4, 1: lambda t: 0.01 - t * 5e-5}  # first below 0 past t = 100 / 200
    first_zero = {}
    for b, f in estimates.items():
        means = [np.mean([f(u) for u in range(t - 24, t + 1)]) for t in range(25, 201)]
        first_zero[b] = next((t for t, m in zip(range(25, 201), means) if m <= 0), None)
    for t in range(1, 201):
        loss = torch.tensor([estimates[0](t), estimates[1](t)])
        images = torch.full((2, 1, 2, 2), float(t))
        rule.update(t, images, images, loss)
    assert first_zero[0] == 112 and first_zero[1] is None  # the window's centre lags its end by 12
    assert rule.stop_iterations() == [112, None]
    assert rule.chosen_iteration(0) == 112 and rule.image[0].max().item() == 112
    assert rule.should_stop(112, 0) and not rule.should_stop(200, 1)
    assert rule.chosen_iteration(1) == 200  # undecided: the kept image follows the fit
    with pytest.raises(ValueError, match="risk-estimate data term"):
        make_rule("risk", 200)
    # With the output EMA on, no crossing counts in its first three lags (the EMA still holds the start).
    late = make_rule("risk", 200, ema=0.99, risk=True)
    assert late.start_at == 297 and make_rule("risk", 200, ema=0.9, risk=True).start_at == 27
    warming = RiskStop(start_at=150)
    for t in range(1, 201):
        warming.update(t, torch.full((1, 1), float(t)), torch.full((1, 1), float(t)), torch.tensor([estimates[0](t)]))
    assert warming.stop_iterations() == [150] and warming.chosen_iteration() == 150
