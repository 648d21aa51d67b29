"""The score the flag rule reads, without torch (the detection result and Slicer's process use it).

The shipped model flags a point when its ERE exceeds a threshold; an adapted model when its
P(error > 4 mm), weighed with the same image's other points, reaches one (docs/adaptation.md, Flags).
"""

import numpy as np

# The adapted flag score (docs/adaptation.md, Flags): a point's P(error > 4 mm) moved by how hard its image is.
IMAGE_WEIGHT = 0.5  # log-odds moved per unit of the image's other landmarks' mean log-odds; chosen on Test1
TYPICAL_P_LARGE = 0.001  # the image mean that moves nothing: about the median on Test1 (logit -6.8), adapted


def log_odds(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def image_adjusted_p_large(p_large, weight: float = IMAGE_WEIGHT, counted=None) -> np.ndarray:
    """P(error > 4 mm) of (..., L) points, one row of L landmarks per image, with each point's log-odds
    raised by `weight` x how far the mean log-odds of the same image's other landmarks (NaN left out)
    lies above TYPICAL_P_LARGE's: unchanged on an image of typical difficulty, higher on a hard one,
    lower on an easy one.  NaN stays NaN; weight 0 returns P itself.  `counted` (..., L bool; default
    all) says which points may weigh on the others: a landmark cut off by the image's edge has a
    vague map for that reason alone, which says nothing about how hard the rest of the image is.

    A hard image (poor contrast, unusual anatomy) misleads several maps at once, more than each map
    says of itself; the image's other landmarks carry that evidence.
    """
    p = np.asarray(p_large, dtype=np.float64)
    seen = np.isfinite(p)
    if weight == 0:
        return np.where(seen, np.clip(p, 0.0, 1.0), np.nan)
    own = np.where(seen, log_odds(p), 0.0)
    weighs = seen if counted is None else seen & np.asarray(counted, dtype=bool)
    counted_log_odds = np.where(weighs, own, 0.0)
    n_others = weighs.sum(-1, keepdims=True) - weighs
    others = (counted_log_odds.sum(-1, keepdims=True) - counted_log_odds) / np.maximum(n_others, 1)
    lift = np.where(n_others > 0, weight * (others - log_odds(TYPICAL_P_LARGE)), 0.0)
    return np.where(seen, 1 / (1 + np.exp(-(own + lift))), np.nan)


def threshold_fraction(rule: dict, ere_mm, p_large, missing, ere_threshold_mm: float) -> np.ndarray:
    """Each point's flag score as a fraction of the rule's threshold (1: at it), for one image's L
    points: ERE / threshold, or P(error > 4 mm), weighed as the rule weighs it, / threshold.

    `rule` is Detection.flag_rule ({} or score "ere_mm": ERE over `ere_threshold_mm`); `missing`
    points do not weigh on the others.  What colours a point from confident to flagged."""
    if rule.get("score") == "p_large_error":
        counted = ~np.asarray(missing, dtype=bool)
        p = image_adjusted_p_large(p_large, float(rule.get("image_weight", 0.0)), counted)
        return p / float(rule["threshold"])
    return np.asarray(ere_mm, dtype=np.float64) / max(float(ere_threshold_mm), 1e-9)
