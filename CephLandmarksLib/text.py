"""Numbers as people read them in reports, markups and tables (no torch: the Slicer MRML code uses it)."""

import math


def probability_text(p) -> str:
    """A probability for people: "32 %", "9.5 %", "0.4 %", "< 0.1 %"; "" when unknown (None or NaN)."""
    if p is None or not math.isfinite(p):
        return ""
    if p < 0.001:
        return "< 0.1 %"
    return f"{100 * p:.1f} %" if p < 0.1 else f"{100 * p:.0f} %"
