"""The anatomical frame: every configuration in coordinates that anatomy, not the image, orients.

The named analyses take their signs from anatomy (docs/analyses.md, "Sign rule"). Each
configuration (S, 19, 2), in mm on image axes, is expressed in its own frame: origin S,
x along S->N (anterior), y perpendicular to it on the side away from the jaws (superior).
A mirrored (left-facing) image or a rotated head gives the same local coordinates, so
every signed quantity computed from them is the same.

The reference horizontal is a direction in that frame: Frankfort (Po->Or) or the
constructed horizontal (S-N rotated by a few degrees, anterior end down, as in
Burstone's analysis) for when porion is doubtful.
"""

from dataclasses import dataclass

import numpy as np

from ..landmarks import ISBI_LANDMARKS

INDEX = {lm.abbreviation: lm.index - 1 for lm in ISBI_LANDMARKS}
EPS_MM = 1e-6  # two points closer than this coincide: the line through them is undefined
LOWER_FACE = ("Me", "Gn", "Pog", "B", "A", "ANS", "PNS", "Go")  # all below S-N on any head

HORIZONTALS = {
    "FH": ("Frankfort horizontal (Po-Or)", ("Po", "Or")),
    "constructed": ("constructed horizontal (S-N rotated 7 deg)", ("S", "N")),
}


@dataclass(frozen=True)
class Frame:
    """Configurations in their anatomical frame.

    local: (S, 19, 2) coordinates, x anterior, y superior (image coordinates where the frame
    is undefined, so rotation-invariant quantities stay right). valid: (S,) whether S and N
    are apart, i.e. whether anterior is defined. reason: why it is not, for the report.
    """

    local: np.ndarray
    valid: np.ndarray
    reason: str


@dataclass(frozen=True)
class Horizontal:
    """The reference horizontal in the anatomical frame: unit directions (S, 2) pointing anteriorly."""

    name: str  # "FH" or "constructed"
    label: str
    direction: np.ndarray
    valid: np.ndarray
    reason: str
    rests_on: tuple


def unit_vectors(d: np.ndarray) -> tuple:
    """(unit vectors (..., 2), valid (...,)): a vector shorter than EPS_MM has no direction (zeros)."""
    length = np.linalg.norm(d, axis=-1)
    valid = length > EPS_MM
    safe = np.where(valid, length, 1.0)
    return np.where(valid[..., None], d / safe[..., None], 0.0), valid


def lower_face(p: np.ndarray) -> np.ndarray:
    """(S, 2) centre of the lower-face landmarks present (all lie below S-N): which way is inferior."""
    q = p[:, [INDEX[k] for k in LOWER_FACE]]
    present = np.isfinite(q).all(axis=-1)
    count = present.sum(axis=1)
    total = np.where(present[..., None], q, 0.0).sum(axis=1)
    return total / np.maximum(count, 1)[:, None]


def anatomical_frame(points_mm) -> Frame:
    """The anatomical frame of each configuration (S, 19, 2) or (19, 2) -> Frame over (S,)."""
    p = np.asarray(points_mm, dtype=np.float64)
    p = p[None] if p.ndim == 2 else p
    s, n = p[:, INDEX["S"]], p[:, INDEX["N"]]
    x_axis, valid = unit_vectors(n - s)
    perp = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=-1)
    side = np.where(((n - lower_face(p)) * perp).sum(axis=-1) < 0, -1.0, 1.0)  # superior: away from the jaws
    y_axis = perp * side[:, None]
    rel = p - s[:, None, :]
    local = np.stack([(rel * x_axis[:, None, :]).sum(-1), (rel * y_axis[:, None, :]).sum(-1)], axis=-1)
    local = np.where(valid[:, None, None], local, p)
    if np.isfinite(p[:, [INDEX["S"], INDEX["N"]]]).all():
        reason = "S and N coincide: the anatomical frame (anterior along S-N) is undefined"
    else:
        reason = "S or N is missing: the anatomical frame (anterior along S-N) is undefined"
    return Frame(local, valid, reason)


def horizontal(frame: Frame, name: str, constructed_deg: float) -> Horizontal:
    """The reference horizontal `name` ("FH" or "constructed") of each configuration of `frame`."""
    label, rests_on = HORIZONTALS[name]
    count = len(frame.valid)
    if name == "FH":
        d = frame.local[:, INDEX["Or"]] - frame.local[:, INDEX["Po"]]
        direction, apart = unit_vectors(d)
        valid = apart & frame.valid
        reason = frame.reason if not frame.valid.all() else "Po and Or coincide: the Frankfort horizontal is undefined"
    else:
        t = np.radians(constructed_deg)
        direction = np.tile([np.cos(t), -np.sin(t)], (count, 1))  # S-N turned anterior end down
        valid = frame.valid.copy()
        reason = frame.reason
        label = f"constructed horizontal (S-N rotated {constructed_deg:g} deg)"
    return Horizontal(name, label, direction, valid, reason, rests_on)
