"""Accuracy and calibration metrics on arrays of results (pure numpy)."""

import numpy as np

SDR_RADII_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors_mm(pred_px, true_px, spacing_mm) -> np.ndarray:
    """(N, L) Euclidean errors in mm; spacing_mm (N, 2) or (2,)."""
    sp = np.asarray(spacing_mm, dtype=float)
    sp = sp[:, None, :] if sp.ndim == 2 else sp
    return np.linalg.norm((np.asarray(pred_px) - np.asarray(true_px)) * sp, axis=-1)


def sdr_percent(errors_mm, radii=SDR_RADII_MM) -> dict:
    """Successful detection rate: % of points within each radius."""
    e = np.asarray(errors_mm).ravel()
    return {f"{r:.1f}": float(100.0 * np.mean(e <= r)) for r in radii}


# The paper's code bins confidence in 10 bins of 0.015 up to 0.135, the last bin taking
# everything above (most heatmap maxima are small); uniform 10 bins on [0, 1] are also reported.
PAPER_BIN_EDGES = tuple(np.round(np.linspace(0, 0.15, 11), 4)[:-1].tolist()) + (1.0,)
UNIFORM_BIN_EDGES = tuple(np.round(np.linspace(0, 1, 11), 4).tolist())
# A prediction is "correct" when the argmax pixel's centre lies within the circle of one
# pixel's area around the true point (radius 1/sqrt(pi) model pixels), as in the paper's code.
HIT_RADIUS_PX = 1 / np.sqrt(np.pi)
ECE_DEFINITION = ("ECE as in the paper's code: 10 confidence bins, 0.015 wide up to 0.135 and one open bin above; "
                  "correct = the argmax pixel within one pixel's area (radius 1/√π px) of the truth.")


def hits(peak_uv, true_uv) -> np.ndarray:
    """(N, L) bool: argmax pixel (model px) within HIT_RADIUS_PX of the true point (model px)."""
    return np.linalg.norm(np.asarray(peak_uv, float) - np.asarray(true_uv, float), axis=-1) < HIT_RADIUS_PX


def reliability(confidence, correct, edges=PAPER_BIN_EDGES) -> dict:
    """Reliability bins and ECE (in %).  Bin k holds edges[k] < c <= edges[k + 1] (0 in the first);
    empty bins are skipped (they carry zero weight), so the result is never NaN."""
    conf = np.asarray(confidence, dtype=float).ravel()
    ok = np.asarray(correct, dtype=float).ravel()
    edges = np.asarray(edges, dtype=float)
    n_bins = len(edges) - 1
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    sums_c = np.bincount(which, conf, n_bins)
    sums_a = np.bincount(which, ok, n_bins)
    nonempty = counts > 0
    mean_c = np.divide(sums_c, counts, out=np.zeros(n_bins), where=nonempty)
    mean_a = np.divide(sums_a, counts, out=np.zeros(n_bins), where=nonempty)
    ece = float(np.sum(counts * np.abs(mean_a - mean_c)) / max(1, counts.sum()) * 100.0)
    return {"ece": ece, "edges": edges.tolist(), "bin_centres": ((edges[:-1] + edges[1:]) / 2).tolist(),
            "accuracy": mean_a.tolist(), "confidence": mean_c.tolist(), "counts": counts.tolist()}


def grouped_correlation(ere_mm, error_mm, group_size: int = 36):
    """Sort landmarks by ERE, average ERE and error in groups of `group_size`, Pearson r of the means
    (the paper's protocol).  Returns (r, (G, 2) group means)."""
    ere = np.asarray(ere_mm, dtype=float).ravel()
    err = np.asarray(error_mm, dtype=float).ravel()
    order = np.argsort(ere, kind="stable")
    n_groups = len(ere) // group_size
    if n_groups < 2:
        return float("nan"), np.zeros((0, 2))
    idx = order[: n_groups * group_size].reshape(n_groups, group_size)
    means = np.column_stack([ere[idx].mean(1), err[idx].mean(1)])
    if means[:, 0].std() == 0 or means[:, 1].std() == 0:
        return 0.0, means
    return float(np.corrcoef(means[:, 0], means[:, 1])[0, 1]), means


def trapezoid_area(y, x) -> float:
    """The area under the polyline (x, y) by the trapezoid rule: np.trapezoid, which NumPy 1.x lacks
    (and np.trapz, which NumPy 2 deprecates), written out."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_curve(scores, positives):
    """ROC of `scores` (higher = more suspicious) for boolean `positives`: (fpr, tpr, thresholds, auc).

    Point k flags every sample with score >= thresholds[k]; ties are handled jointly.
    """
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(positives, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / max(n_pos, 1)]
    fpr = np.r_[0.0, fp / max(n_neg, 1)]
    thresholds = np.r_[np.inf, s[last]]
    auc = trapezoid_area(tpr, fpr) if n_pos and n_neg else float("nan")
    return fpr, tpr, thresholds, auc


def threshold_at_tpr(scores, positives, target_tpr: float = 0.9) -> float:
    """The largest score threshold whose true-positive rate reaches `target_tpr`."""
    fpr, tpr, thr, _ = roc_curve(scores, positives)
    k = int(np.argmax(tpr >= target_tpr - 1e-12))
    return float(thr[k])


def summarise(errors_mm, landmark_names) -> dict:
    """MRE, its SD, SDR overall and per landmark.  A non-finite error (a point reported missing, whose
    error counts as infinite) is a miss at every SDR radius; MRE and SD are over the finite errors,
    and n_missing_points counts the others."""
    e = np.asarray(errors_mm, dtype=float)
    return {
        "n_images": int(e.shape[0]),
        "mre_mm": finite_mean(e),
        "mre_std_mm": finite_std(e),
        "sdr": sdr_percent(e),
        "n_missing_points": int((~np.isfinite(e)).sum()),
        "per_landmark": [
            {"index": i + 1, "name": n, "mre_mm": finite_mean(e[:, i]), "std_mm": finite_std(e[:, i]),
             "sdr": sdr_percent(e[:, i])}
            for i, n in enumerate(landmark_names)
        ],
    }


def finite_mean(x) -> float:
    """Mean of the finite values; NaN when there are none."""
    x = _finite(x)
    return float(x.mean()) if x.size else float("nan")


def finite_std(x) -> float:
    """Standard deviation of the finite values; NaN when there are none."""
    x = _finite(x)
    return float(x.std()) if x.size else float("nan")


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]
