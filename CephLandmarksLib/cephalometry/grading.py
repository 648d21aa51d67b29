"""A measurement against its norm: the band, the deviation in SD, the interpretation word, P(outside).

The band is mean +- 1 SD when the norm has an SD, else its range (low-high), else there is
none (a mean alone grades nothing). A value on a bound is within, as the ISBI challenge
counts it. P(outside) is the share of the sampled values outside the band: with samples
drawn from the landmark heatmaps, the probability that the true value lies outside it.
"""

import numpy as np

WITHIN = "within the norm"


def corrected_mean(norm, age_years=None) -> float | None:
    """The norm's mean, moved by its yearly age correction when the patient's age is known."""
    if norm is None or norm.mean is None:
        return None
    if norm.age_correction is None or age_years is None:
        return norm.mean
    return norm.age_correction.mean_at(norm.mean, float(age_years))


def band(norm, mean) -> tuple | None:
    """(low, high) of the norm: mean +- sd, else the range, else None."""
    if norm is None:
        return None
    if norm.sd is not None:
        return (mean - norm.sd, mean + norm.sd)
    if norm.low is not None:
        return (norm.low, norm.high)
    return None


def deviation_sd(value, mean, sd) -> float | None:
    """(value - mean) / sd; None without a value or an SD."""
    if value is None or mean is None or sd is None:
        return None
    return (value - mean) / sd


def side(value, limits) -> str | None:
    """'below', 'within' or 'above' the band; None without a value or a band."""
    if value is None or limits is None:
        return None
    if value < limits[0]:
        return "below"
    return "above" if value > limits[1] else "within"


def interpretation(value, limits, below: str, above: str) -> str | None:
    """The word for where the value lies: the measurement's own below/above words, or 'within the norm'."""
    where = side(value, limits)
    return {"below": below, "above": above, "within": WITHIN}.get(where)


def p_outside(samples, limits) -> float | None:
    """Share of the samples outside the band; None without samples or a band."""
    if limits is None or samples is None or len(samples) == 0:
        return None
    s = np.asarray(samples, dtype=np.float64)
    return float(np.mean((s < limits[0]) | (s > limits[1])))
