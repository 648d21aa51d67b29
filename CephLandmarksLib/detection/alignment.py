"""Second look: move (and, with an unknown spacing, rescale) the image in the canvas so that
the anatomy sits where it sat in training.

A first pass finds the confident landmarks; the similarity (scale, shift) taking them to
their mean training positions (`reference_uv`, model pixels) says how far the image's
framing is from the training data's, e.g. after a collimator cut moved the skull in a
centred frame, or when an unknown spacing left the anatomy at another size.  When the
change is worth it, the network runs again on the moved frame; the pass with the higher
mean confidence is kept.  With a known spacing only the shift is used (the physical scale
is trusted).
"""

import numpy as np

# Mean ISBI 2015 training landmarks (mean of the two doctors), mm from the centre of the
# top-left pixel: the reference of models written before `reference_uv` was stored.
ISBI_MEAN_LANDMARKS_MM = (
    (80.7, 103.8), (139.0, 96.9), (127.8, 121.9), (60.0, 121.2), (138.4, 151.3), (135.7, 185.1), (135.2, 198.0),
    (129.2, 204.1), (133.4, 202.1), (73.3, 173.5), (142.0, 168.9), (143.7, 170.1), (155.6, 160.9), (153.3, 181.0),
    (149.7, 149.0), (144.5, 201.2), (97.4, 142.8), (140.1, 144.5), (67.0, 132.7),
)
MIN_POINTS = 5  # confident landmarks needed to estimate the move
SHIFT_MIN_PX = 6.0  # model pixels; smaller moves are not worth a second pass
SCALE_MIN = 0.05  # relative; smaller rescales are not worth a second pass
SCALE_RANGE = (0.6, 1.6)


def reference_uv(info, mm_per_px: float):
    """(L, 2) mean training positions in model pixels, or None when unknown."""
    if getattr(info, "reference_uv", None):
        return np.asarray(info.reference_uv, dtype=np.float64)
    if len(info.landmark_names) == len(ISBI_MEAN_LANDMARKS_MM):
        return (np.asarray(ISBI_MEAN_LANDMARKS_MM) + 0.05) / mm_per_px - 0.5  # ISBI at 0.1 mm, fit framing
    return None


def similarity_to_reference(uv, ref, use, allow_scale: bool):
    """(scale, shift (2,)) with ref ~ scale * uv + shift over the landmarks `use` (least squares)."""
    u, r = np.asarray(uv, dtype=np.float64)[use], np.asarray(ref, dtype=np.float64)[use]
    ub, rb = u.mean(0), r.mean(0)
    scale = 1.0
    if allow_scale:
        scale = float(np.clip(((r - rb) * (u - ub)).sum() / max(((u - ub) ** 2).sum(), 1e-9), *SCALE_RANGE))
    return scale, rb - scale * ub


def realigned_frame(frame, uv, ref, confident, allow_scale: bool):
    """The moved frame, or None when there are too few confident points or the move is too small."""
    confident = np.asarray(confident, dtype=bool)
    if ref is None or confident.sum() < MIN_POINTS:
        return None
    scale, shift = similarity_to_reference(uv, ref, confident, allow_scale)
    centre = np.asarray(uv, dtype=np.float64)[confident].mean(0)
    if abs(scale - 1) < SCALE_MIN and np.linalg.norm(scale * centre + shift - centre) < SHIFT_MIN_PX:
        return None
    return frame.moved(scale, shift)


# Shape check.  After the median shift that best matches the confident landmarks to their
# training places, no landmark of the 400 ISBI 2015 images (both doctors' mean) lies more
# than 22 mm from its mean place; a detected landmark beyond SHAPE_LIMIT_MM is implausible.
SHAPE_LIMIT_MM = 25.0
SHAPE_FIT_MAX_MM = 10.0  # the check needs the confident landmarks to match the training shape this well (median)


def expected_places(uv, ref, confident, mm_per_px: float):
    """(L, 2) where the confident landmarks put every landmark (the reference shape moved by their
    median offset, model pixels), or None when that cannot be judged: too few confident landmarks,
    or these do not match the training shape (median distance over SHAPE_FIT_MAX_MM), so that the
    reference says nothing about this image."""
    confident = np.asarray(confident, dtype=bool)
    if ref is None or confident.sum() < MIN_POINTS:
        return None
    uv, ref = np.asarray(uv, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    expected_uv = ref - np.median(ref[confident] - uv[confident], axis=0)
    if np.median(np.linalg.norm(uv - expected_uv, axis=1)[confident] * mm_per_px) > SHAPE_FIT_MAX_MM:
        return None
    return expected_uv


def shape_check(uv, ref, confident, frame, mm_per_px: float, limit_mm: float = SHAPE_LIMIT_MM):
    """((L,) implausible, (L,) expected outside the image), both False when it cannot be judged
    (expected_places is None).

    implausible: the point is over `limit_mm` from where the confident landmarks put it;
    expected outside: that expected place is outside the image (or the model's view of it),
    as for anatomy cut off by the collimator.
    """
    n = len(uv)
    expected_uv = expected_places(uv, ref, confident, mm_per_px)
    if expected_uv is None:
        return np.zeros(n, bool), np.zeros(n, bool)
    distance_mm = np.linalg.norm(np.asarray(uv, dtype=np.float64) - expected_uv, axis=1) * mm_per_px
    implausible = distance_mm > limit_mm
    expected_outside = ~frame.inside_image(frame.model_to_image(expected_uv))
    return implausible, expected_outside
