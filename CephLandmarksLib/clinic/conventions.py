"""Clinic conventions: a per-landmark offset in the head frame, moving a point and its heatmap.

A clinic may place a landmark by another convention than the training set's annotators
(Menton 2 mm further along the mandible, say).  That is a constant offset in a frame that
turns with the head: along sella->nasion and its normal (geometry.head_axes), in mm.  The
offsets are learnt from the clinic's annotated images (adaptation.py) and applied by
detection to the point and to its whole heatmap, so ERE, regions, P(error > 4 mm) and the
measurements move with it.  Everything here works in the model frame, where a left-facing
image is already mirrored, so one offset serves both orientations.
"""

import numpy as np

from ..imaging.geometry import head_axes, to_head_frame


def residuals_mm(pred_uv, true_uv, mm_per_px, s: int, n: int) -> np.ndarray:
    """(L, 2) true minus predicted position of each landmark in the head frame of the predicted
    sella and nasion, mm.  Points in model pixels (L, 2); mm_per_px (2,) mm per model pixel."""
    mm = np.asarray(mm_per_px, dtype=np.float64)
    pred_mm = np.asarray(pred_uv, dtype=np.float64) * mm
    axes = head_axes(pred_mm[s], pred_mm[n])
    return to_head_frame(np.asarray(true_uv, dtype=np.float64) * mm - pred_mm, axes)


def robust_offsets(residuals) -> np.ndarray:
    """(L, 2) offsets from residuals (n images, L, 2): the median of each component, which one
    image with a gross error or a misplaced annotation cannot move far."""
    return np.median(np.asarray(residuals, dtype=np.float64), axis=0)
