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


# --- Tied confidences (LC confidences take a few values): the debiased estimator and the bootstrap ---------------

LC_VALUES = np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0])      # what linguistic confidences map to
LC_SHARES = np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.1])
LC_ACCURACY = np.array([0.15, 0.25, 0.4, 0.5, 0.6, 0.65, 0.8])  # true P(correct | confidence): overconfident
LC_TRUE_L2 = float(np.sqrt((LC_SHARES * (LC_VALUES - LC_ACCURACY) ** 2).sum()))   # 0.1854


def lc_style(rng, size):
    "Confidences drawn from LC_VALUES and outcomes from LC_ACCURACY (arrays of shape `size`)."
    pick = rng.choice(len(LC_VALUES), size=size, p=LC_SHARES)
    return LC_VALUES[pick], (rng.uniform(size=size) < LC_ACCURACY[pick]).astype(int)


def kumar_squared_error(conf, correct, n_bins):
    """Kumar, Liang & Ma (2019), the debiased squared calibration error on equal-mass bins of the given item order:
    sum over bins of n_b/N * [(mean y - mean c)^2 - mean y (1 - mean y) / (n_b - 1)], bins of fewer than 2 items 0."""
    n, total = len(conf), 0.0
    bounds = np.cumsum([0] + [n // n_bins + (b < n % n_bins) for b in range(min(n_bins, n))])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi - lo < 2: continue
        y, c = np.mean(correct[lo:hi]), np.mean(conf[lo:hi])
        total += (hi - lo) / n * ((y - c) ** 2 - y * (1 - y) / (hi - lo - 1))
    return total


def kumar_over_tie_orders(conf, correct, n_bins, n_orders, seed):
    "Mean and standard error of `kumar_squared_error` over random orders of tied items (each sorted by confidence)."
    rng, values = np.random.default_rng(seed), []
    for _ in range(n_orders):
        shuffled = rng.permutation(len(conf))
        order = shuffled[np.argsort(conf[shuffled], kind="stable")]
        values.append(kumar_squared_error(conf[order], correct[order], n_bins))
    return np.mean(values), np.std(values) / np.sqrt(n_orders)


@pytest.mark.parametrize("binning, theirs", [("equal_mass", "get_equal_bins"), ("equal_width", "get_equal_prob_bins")])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_debiased_ece_of_a_constant_forecaster_matches_uncertainty_calibration(binning, theirs, n_bins):
    "Confidence 0.7 on every item, half of them right: the gap is 0.2, less the noise of one group of 100."
    conf, correct = np.full(100, 0.7), np.r_[np.ones(50), np.zeros(50)].astype(int)
    expected = calibration.lower_bound_scaling_ce(conf, correct, p=2, debias=True, num_bins=n_bins,
                                                  binning_scheme=getattr(calibration, theirs))
    assert expected == pytest.approx(np.sqrt(0.2 ** 2 - 0.25 / 99))
    assert M.debiased_ece(conf, correct, n_bins, binning=binning) == pytest.approx(expected)


def test_debiased_ece_matches_uncertainty_calibration_when_tie_blocks_fill_the_bins():
    "Seven confidences with 40 items each in 7 equal-mass bins: both implementations bin by confidence value."
    rng = np.random.default_rng(9)
    pick = rng.permutation(np.repeat(np.arange(7), 40))
    conf, correct = LC_VALUES[pick], (rng.uniform(size=280) < LC_ACCURACY[pick]).astype(int)
    expected = calibration.lower_bound_scaling_ce(conf, correct, p=2, debias=True, num_bins=7)
    assert M.debiased_ece(conf, correct, n_bins=7) == pytest.approx(expected)


@pytest.mark.parametrize("n, n_bins", [(60, 15), (137, 15), (301, 20)])
def test_debiased_ece_on_ties_is_the_paper_estimator_averaged_over_tie_orders(n, n_bins):
    "Where equal-mass bins cut through tie blocks, the estimate is Kumar et al.'s formula averaged over tie orders."
    conf, correct = lc_style(np.random.default_rng(n), n)
    expected, error = kumar_over_tie_orders(conf, correct, n_bins, n_orders=4000, seed=n)
    assert expected > 0 and M.debiased_ece(conf, correct, n_bins) ** 2 == pytest.approx(expected, abs=4 * error)


@pytest.mark.parametrize("n, tolerance", [(100, 0.03), (300, 0.02), (1000, 0.01)])
def test_debiased_ece_agrees_with_uncertainty_calibration_on_lc_style_data(n, tolerance):
    "uncertainty-calibration puts a tie block cut by a bin edge wholly in one bin, so agreement is close, not exact."
    rng = np.random.default_rng(10 + n)
    ours, theirs = [], []
    for _ in range(40):
        conf, correct = lc_style(rng, n)
        ours.append(M.debiased_ece(conf, correct))
        theirs.append(calibration.lower_bound_scaling_ce(conf, correct, p=2, debias=True, num_bins=15))
    np.testing.assert_allclose(ours, theirs, atol=tolerance)
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=tolerance / 4)


@pytest.mark.parametrize("n", [100, 300, 1000])
def test_debiased_ece_is_unbiased_on_lc_style_data(n):
    "400 data sets of n items with a known true L2 calibration error: the squared estimate is right on average."
    conf, correct = lc_style(np.random.default_rng(n), (400, n))
    estimates = M.debiased_ece(conf, correct)
    assert np.mean(estimates ** 2) == pytest.approx(LC_TRUE_L2 ** 2, abs=0.003)
    assert np.mean(estimates) == pytest.approx(LC_TRUE_L2, abs=0.02)        # sqrt of an unbiased square: a bit low


def file_ordered_ties(seed=11, n=200):
    "LC-style items as a file might hold them: sorted by confidence, right answers first within each confidence."
    rng = np.random.default_rng(seed)
    conf = rng.choice([0.3, 0.5, 0.7, 0.9], size=n, p=[0.2, 0.3, 0.3, 0.2])
    correct = (rng.uniform(size=n) < conf - 0.1).astype(int)
    order = np.lexsort((-correct, conf))
    return conf[order], correct[order]


def test_bootstrap_resamples_keep_draw_order_within_ties():
    "Each resample reaches the metric sorted by confidence, but tied items stay in the order they were drawn."
    conf, correct = np.full(100, 0.5), np.r_[np.ones(50), np.zeros(50)]
    seen = []
    def record(c, y):
        seen.append((c, y))
        return y.mean(-1)
    M.bootstrap_ci(record, conf, correct, n_resamples=200, chunk=50)
    rows = np.concatenate([y for _, y in seen[:-1]])                   # the last call is the point estimate
    assert rows.shape == (200, 100)
    right_answers_first = (np.diff(rows, axis=-1) <= 0).all(-1)       # what sorting the drawn indices gives
    assert right_answers_first.mean() < 0.01
    tied = np.c_[np.full(60, 0.2), np.full(60, 0.9)]
    rows = []
    M.bootstrap_ci(lambda c, y: rows.append(c) or y.mean(-1), tied.ravel(), np.ones(120), n_resamples=20)
    assert all((np.diff(r, axis=-1) >= 0).all() for r in rows[:-1])   # the point estimate sees the input order


def test_lc_compat_bootstrap_follows_the_reference_procedure():
    "The reference draws each resample, keeps its order and stable-sorts by confidence; lc_compat bins depend on it."
    conf, correct = file_ordered_ties()
    metric = functools.partial(M.ece, n_bins=20, lc_compat=True)
    ours = M.bootstrap_ci(metric, conf, correct, n_resamples=10_000, seed=0)
    rng = np.random.default_rng(1)
    reference = [metric(conf[index], correct[index]) for index in (rng.choice(conf.size, conf.size) for _ in range(10_000))]
    low, high = np.percentile(reference, [2.5, 97.5])
    assert ours.estimate == pytest.approx(metric(conf, correct))
    assert ours.low == pytest.approx(low, abs=0.006) and ours.high == pytest.approx(high, abs=0.006)
