"""Cross-checks of lcal.metrics against independent implementations, and batch/bootstrap properties."""
import functools

import numpy as np
import pytest

from lcal import metrics as M

calibration = pytest.importorskip("calibration")   # uncertainty-calibration (dev extra)
sk_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


@pytest.fixture(scope="module")
def miscalibrated():
    "3,000 distinct confidences, outcomes drawn with probability conf**1.5 (overconfident)."
    rng = np.random.default_rng(7)
    conf = rng.uniform(size=3000)
    return conf, (rng.uniform(size=conf.size) < conf ** 1.5).astype(int)


@pytest.mark.parametrize("n_bins", [10, 15, 40])
def test_ece_matches_uncertainty_calibration(miscalibrated, n_bins):
    conf, correct = miscalibrated
    assert M.ece(conf, correct, n_bins) == pytest.approx(calibration.get_ece_em(conf, correct, num_bins=n_bins))
    assert M.ece(conf, correct, n_bins, binning="equal_width") == pytest.approx(
        calibration.get_ece(conf, correct, num_bins=n_bins))


@pytest.mark.parametrize("binning, theirs", [("equal_mass", "get_equal_bins"), ("equal_width", "get_equal_prob_bins")])
def test_debiased_ece_matches_uncertainty_calibration(miscalibrated, binning, theirs):
    conf, correct = miscalibrated
    expected = calibration.lower_bound_scaling_ce(conf, correct, p=2, debias=True, num_bins=15,
                                                  binning_scheme=getattr(calibration, theirs))
    assert M.debiased_ece(conf, correct, binning=binning) == pytest.approx(expected)


def test_proper_scores_and_auroc_match_sklearn(miscalibrated):
    conf, correct = miscalibrated
    assert M.brier(conf, correct) == pytest.approx(sk_metrics.brier_score_loss(correct, conf))
    clipped = np.clip(conf, 1e-4, 1 - 1e-4)
    assert M.log_loss(conf, correct) == pytest.approx(sk_metrics.log_loss(correct, clipped))
    assert M.auroc(conf, correct) == pytest.approx(sk_metrics.roc_auc_score(correct, conf))
    rounded = np.round(conf, 1)                                          # many ties
    assert M.auroc(rounded, correct) == pytest.approx(sk_metrics.roc_auc_score(correct, rounded))


def reference_lc_ece(conf, correct, n_bins):
    "The LC reference's equal-count ECE restated from its description: stable sort, N // B per bin, rest dropped."
    pairs = sorted(zip(conf, correct), key=lambda pair: pair[0])
    per_bin = len(pairs) // n_bins
    gaps = [abs(np.mean([y for _, y in pairs[b * per_bin:(b + 1) * per_bin]])
                - np.mean([c for c, _ in pairs[b * per_bin:(b + 1) * per_bin]])) for b in range(n_bins)]
    return float(np.mean(gaps))


@pytest.mark.parametrize("n, n_bins", [(1013, 20), (997, 40), (40, 40)])
def test_lc_compat_reproduces_the_reference_quirk(n, n_bins):
    rng = np.random.default_rng(n)
    conf = rng.choice([0.2, 0.5, 0.7, 0.9, 1.0], size=n)                # discrete: ties split across bins
    correct = (rng.uniform(size=n) < conf).astype(int)
    assert M.ece(conf, correct, n_bins, lc_compat=True) == pytest.approx(reference_lc_ece(conf, correct, n_bins))
    if n % n_bins:                                                        # our default keeps the dropped items
        kept = M.reliability_bins(conf, correct, n_bins)["count"].sum()
        assert kept == n and M.reliability_bins(conf, correct, n_bins, lc_compat=True)["count"].sum() < n


def test_equal_mass_bins_keep_everything_and_differ_by_at_most_one():
    rng = np.random.default_rng(1)
    for n in (15, 16, 29, 301):
        bins = M.reliability_bins(rng.uniform(size=n), rng.integers(0, 2, n), n_bins=15)
        assert bins["count"].sum() == n and bins["count"].max() - bins["count"].min() <= 1


def test_metrics_are_permutation_invariant_with_ties():
    rng = np.random.default_rng(2)
    conf = rng.choice([0.3, 0.6, 0.9], size=500)
    correct = (rng.uniform(size=500) < conf).astype(int)
    perm = rng.permutation(500)
    for metric in (M.ece, M.debiased_ece, M.auroc, M.aurc):
        assert metric(conf[perm], correct[perm]) == pytest.approx(metric(conf, correct))


@pytest.mark.parametrize("metric", [M.ece, functools.partial(M.ece, binning="equal_width"),
                                    functools.partial(M.ece, n_bins=20, lc_compat=True), M.debiased_ece,
                                    M.brier, M.log_loss, M.auroc, M.aurc, M.accuracy])
def test_batched_call_equals_row_by_row(metric):
    rng = np.random.default_rng(3)
    conf = np.round(rng.uniform(size=(6, 200)), 2)
    correct = (rng.uniform(size=conf.shape) < conf).astype(int)
    np.testing.assert_allclose(metric(conf, correct), [metric(c, y) for c, y in zip(conf, correct)])


def test_calibrated_forecaster_has_near_zero_debiased_error_and_overconfident_does_not():
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.5, 1, size=20_000)
    honest = rng.uniform(size=conf.size) < conf
    overconfident = rng.uniform(size=conf.size) < conf - 0.1
    assert M.debiased_ece(conf, honest) < 0.01
    assert M.debiased_ece(conf, overconfident) == pytest.approx(0.1, abs=0.01)


def test_brier_decomposition_identity_and_constant_forecaster():
    rng = np.random.default_rng(5)
    conf = rng.uniform(size=2000)
    correct = (rng.uniform(size=2000) < conf).astype(int)
    d = M.brier_decomposition(conf, correct, n_bins=20)
    assert d["brier"] == pytest.approx(d["reliability"] - d["resolution"] + d["uncertainty"] + d["within_bin"])
    assert d["uncertainty"] == pytest.approx(correct.mean() * (1 - correct.mean()))
    const = M.brier_decomposition(np.full(2000, 0.4), correct, n_bins=20)
    assert const["resolution"] == pytest.approx(0, abs=1e-12) and const["reliability"] == pytest.approx((0.4 - correct.mean()) ** 2)


def test_bootstrap_matches_scipy_percentile_interval():
    rng = np.random.default_rng(6)
    correct = (rng.uniform(size=800) < 0.6).astype(int)
    ours = M.bootstrap_ci(M.accuracy, np.ones(800), correct, n_resamples=10_000, seed=1)
    theirs = scipy_stats.bootstrap((correct,), np.mean, n_resamples=10_000, method="percentile",
                                   random_state=1).confidence_interval
    assert ours.estimate == pytest.approx(correct.mean())
    assert ours.low == pytest.approx(theirs.low, abs=0.004) and ours.high == pytest.approx(theirs.high, abs=0.004)


def test_bootstrap_skips_resamples_where_the_metric_is_undefined():
    "The interval of a metric that is undefined on some resamples still comes out finite."
    ci = M.bootstrap_ci(M.auroc, [0.9, 0.8, 0.2, 0.1, 0.5], [1, 1, 0, 0, 1], n_resamples=500)
    assert np.isfinite(ci.low) and ci.low <= ci.estimate <= ci.high


def test_bad_input_is_one_line_error():
    for conf, correct, message in [([0.2, 0.4], [1], "shape"), ([1.2], [1], "[0, 1]"), ([], [], "at least one"),
                                   ([0.5], [0.5], "0/1"), ([np.nan], [1], "NaN")]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
            M.ece(conf, correct)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="binning"):
        M.ece([0.5], [1], binning="quantile")


def test_smooth_ece_matches_relplot():
    relplot = pytest.importorskip("relplot")
    rng = np.random.default_rng(8)
    for n, power in [(2000, 1.0), (5000, 1.5), (500, 3.0)]:
        conf = rng.uniform(size=n)
        correct = (rng.uniform(size=n) < conf ** power).astype(float)
        assert M.smooth_ece(conf, correct) == pytest.approx(relplot.smECE(conf, correct), abs=2e-3)
        assert M.smooth_ece(conf, correct, sigma=0.05) == pytest.approx(relplot.smECE_sigma(conf, correct, 0.05), abs=2e-3)
