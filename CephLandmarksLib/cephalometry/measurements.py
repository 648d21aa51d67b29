"""Cephalometric measurements defined by the 19 ISBI landmarks, with their classes.

Every measurement is a pure function of landmark positions in millimetres, shape
(S, 19, 2) -> (S,), x = column, y = row (pointing DOWN, as in images), landmarks in
the challenge's order (landmarks.py).  Vectorised over S so that thousands of
sampled landmark configurations are measured at once (measurement_uncertainty.py).

The eight ISBI 2015 measurements and their class thresholds are those of the
challenge (Wang et al., "A benchmark for comparison of dental radiography analysis
algorithms", Medical Image Analysis 31, 2016, Table 2), as implemented by the
challenge's classification script; we followed the public port of that script in
LucasL-3/Cephalometric-AI, yolo-webapp/analysis.py (same formulas, same thresholds,
same vector orientations and sign rules).  Differences from that script: coordinates
are not truncated to whole pixels, everything is in mm (the script divides pixel
distances by 10, i.e. assumes 0.1 mm), and a profile facing left is mirrored first.
Note that the challenge's "FMA" is the angle between S-N and Go-Gn (strictly an
SN-mandibular plane angle), and its "MW" is the signed incisor tip distance.

The extras are textbook measurements these 19 points define; they carry no classes
(norms depend on age, sex and population).  Not definable from these 19 points:
the interincisal angle (needs the incisor apices) and Ricketts' E-line (needs
pronasale); the lips are given against Burstone's Sn-Pog' line instead.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# 0-based indices of the 19 ISBI landmarks (landmarks.py order)
S, N, OR, PO, A, B, POG, ME, GN, GO, LIT, UIT, UL, LL, SN, POG_S, PNS, ANS, AR = range(19)


# --- geometry on (S, 19, 2) arrays ------------------------------------------------

def facing_right(points_mm: np.ndarray) -> np.ndarray:
    """Mirror x of every configuration whose profile faces left (nasion left of sella).

    The challenge's signed angles assume the face looks towards +x, as in its images.
    """
    p = np.array(points_mm, dtype=np.float64, copy=True)
    left = p[..., N, 0] < p[..., S, 0]
    p[left, :, 0] *= -1.0
    return p


def angle_between_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unsigned angle (0..180 degrees) between vectors u and v (..., 2)."""
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    dot = (u * v).sum(axis=-1)
    return np.degrees(np.abs(np.arctan2(cross, dot)))


def signed_angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle from u to v (-180..180 degrees), positive when v is clockwise from u on screen (y down)."""
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return np.degrees(np.arctan2(cross, (u * v).sum(axis=-1)))


def angle_at_deg(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unsigned angle a-vertex-b at the vertex, degrees."""
    return angle_between_deg(a - vertex, b - vertex)


def distance_mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(b - a, axis=-1)


def anterior_distance_to_line_mm(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Perpendicular distance of p from the line a-b (a above b), positive when p lies in front (+x)."""
    d = b - a
    cross = d[..., 0] * (p - a)[..., 1] - d[..., 1] * (p - a)[..., 0]
    return -cross / np.linalg.norm(d, axis=-1)


# --- the ISBI 2015 measurements ------------------------------------------------------

def sna_deg(p):
    return angle_at_deg(p[:, S], p[:, N], p[:, A])


def snb_deg(p):
    return angle_at_deg(p[:, S], p[:, N], p[:, B])


def anb_deg(p):
    return sna_deg(p) - snb_deg(p)


def palatal_to_fh_deg(p):
    """FH (Po->Or) to palatal plane (PNS->ANS); positive when the palate tips down anteriorly."""
    return signed_angle_deg(p[:, OR] - p[:, PO], p[:, ANS] - p[:, PNS])


def odi_deg(p):
    """Kim's overbite depth indicator: AB plane to mandibular plane (Go-Me), plus palatal plane to FH."""
    return angle_between_deg(p[:, GO] - p[:, ME], p[:, A] - p[:, B]) + palatal_to_fh_deg(p)


def apdi_deg(p):
    """Kim's anteroposterior dysplasia indicator: facial angle + AB-to-facial-plane + palatal plane to FH."""
    facial = angle_between_deg(p[:, PO] - p[:, OR], p[:, POG] - p[:, N])
    ab_to_facial = -signed_angle_deg(p[:, POG] - p[:, N], p[:, B] - p[:, A])  # + when B lies ahead of A
    return facial + ab_to_facial + palatal_to_fh_deg(p)


def fhi_ratio(p):
    return distance_mm(p[:, S], p[:, GO]) / distance_mm(p[:, N], p[:, ME])


def fma_challenge_deg(p):
    return angle_between_deg(p[:, N] - p[:, S], p[:, GN] - p[:, GO])


def mw_mm(p):
    """Signed UIT-LIT distance: positive when the upper incisor tip lies in front of the lower."""
    d = distance_mm(p[:, LIT], p[:, UIT])
    return np.where(p[:, UIT, 0] < p[:, LIT, 0], -d, d)


# --- extras --------------------------------------------------------------------------

def fh_to_mandibular_deg(p):
    return angle_between_deg(p[:, OR] - p[:, PO], p[:, ME] - p[:, GO])


def gonial_deg(p):
    return angle_at_deg(p[:, AR], p[:, GO], p[:, ME])


def saddle_deg(p):
    return angle_at_deg(p[:, N], p[:, S], p[:, AR])


def articular_deg(p):
    return angle_at_deg(p[:, S], p[:, AR], p[:, GO])


def bjork_sum_deg(p):
    return saddle_deg(p) + articular_deg(p) + gonial_deg(p)


def facial_angle_deg(p):
    return angle_between_deg(p[:, PO] - p[:, OR], p[:, POG] - p[:, N])


def y_axis_deg(p):
    return angle_between_deg(p[:, OR] - p[:, PO], p[:, GN] - p[:, S])


def lower_face_height_percent(p):
    return 100.0 * distance_mm(p[:, ANS], p[:, ME]) / distance_mm(p[:, N], p[:, ME])


def upper_lip_to_sn_pog_mm(p):
    return anterior_distance_to_line_mm(p[:, UL], p[:, SN], p[:, POG_S])


def lower_lip_to_sn_pog_mm(p):
    return anterior_distance_to_line_mm(p[:, LL], p[:, SN], p[:, POG_S])


# --- classes -------------------------------------------------------------------------

def three_way(low: float, high: float) -> Callable:
    """Class index 0 below `low`, 1 within [low, high] (bounds normal, as the challenge), 2 above."""
    return lambda v: (np.asarray(v) >= low).astype(int) + (np.asarray(v) > high)


def mw_classes(v):
    """The challenge's MW rule: [2, 4.5] normal; > 4.5 large overjet; exactly 0 edge to edge;
    any other value below 2 mm its class 3 ("anterior cross bite")."""
    v = np.asarray(v)
    return np.select([(v >= 2) & (v <= 4.5), v > 4.5, v == 0], [0, 3, 1], default=2)


@dataclass(frozen=True)
class Measurement:
    key: str
    name: str
    unit: str  # "deg", "mm", "ratio" or "%"
    definition: str
    fn: Callable  # (S, 19, 2) mm, facing right -> (S,)
    classes: tuple = ()  # ((challenge code, label), ...) in the order `classify` numbers them
    classify: Callable | None = None  # values -> class index into `classes`
    source: str = "extra"

    def __call__(self, points_mm) -> np.ndarray:
        p = np.asarray(points_mm, dtype=np.float64)
        single = p.ndim == 2
        out = self.fn(facing_right(p[None] if single else p))
        return out[0] if single else out

    def class_index(self, values) -> np.ndarray:
        return np.asarray(self.classify(values), dtype=int)


def _isbi(key, name, unit, definition, fn, low, high, below, normal, above):
    return Measurement(key, name, unit, definition, fn, (below, normal, above), three_way(low, high), "ISBI 2015")


ISBI_MEASUREMENTS = (
    _isbi("ANB", "ANB angle", "deg", "SNA minus SNB: sagittal relation of maxilla and mandible",
          anb_deg, 3.2, 5.7, ("3", "Class III (< 3.2)"), ("1", "Class I (3.2-5.7)"), ("2", "Class II (> 5.7)")),
    _isbi("SNB", "SNB angle", "deg", "angle S-N-B: mandible relative to the cranial base",
          snb_deg, 74.6, 78.7, ("2", "retrognathic mandible (< 74.6)"), ("1", "normal mandible (74.6-78.7)"),
          ("3", "prognathic mandible (> 78.7)")),
    _isbi("SNA", "SNA angle", "deg", "angle S-N-A: maxilla relative to the cranial base",
          sna_deg, 79.4, 83.2, ("3", "retrognathic maxilla (< 79.4)"), ("1", "normal maxilla (79.4-83.2)"),
          ("2", "prognathic maxilla (> 83.2)")),
    _isbi("ODI", "Overbite depth indicator", "deg", "angle A-B to Go-Me plus palatal plane (PNS-ANS) to FH (Po-Or)",
          odi_deg, 68.4, 80.5, ("3", "open bite tendency (< 68.4)"), ("1", "normal (68.4-80.5)"),
          ("2", "deep bite tendency (> 80.5)")),
    _isbi("APDI", "Anteroposterior dysplasia indicator", "deg",
          "FH to N-Pog, plus A-B to N-Pog, plus palatal plane to FH",
          apdi_deg, 77.6, 85.2, ("2", "Class II tendency (< 77.6)"), ("1", "normal (77.6-85.2)"),
          ("3", "Class III tendency (> 85.2)")),
    _isbi("FHI", "Facial height index", "ratio", "posterior face height S-Go over anterior face height N-Me",
          fhi_ratio, 0.65, 0.75, ("3", "long face tendency (< 0.65)"), ("1", "normal (0.65-0.75)"),
          ("2", "short face tendency (> 0.75)")),
    _isbi("FMA", "Mandibular plane angle (challenge FMA)", "deg", "angle between S-N and Go-Gn",
          fma_challenge_deg, 26.8, 31.4, ("3", "low angle tendency (< 26.8)"), ("1", "normal (26.8-31.4)"),
          ("2", "high angle tendency (> 31.4)")),
    Measurement("MW", "Modified Wits (incisor overjet)", "mm",
                "UIT-LIT distance, negative when the upper incisor tip lies behind the lower", mw_mm,
                (("1", "normal (2-4.5)"), ("2", "edge to edge (= 0)"), ("3", "cross bite / small (< 2)"),
                 ("4", "large overjet (> 4.5)")), mw_classes, "ISBI 2015"),
)

EXTRA_MEASUREMENTS = (
    Measurement("FH-MP", "Frankfort-mandibular plane angle (Tweed)", "deg", "angle between FH (Po-Or) and Go-Me",
                fh_to_mandibular_deg),
    Measurement("Gonial", "Gonial angle", "deg", "angle Ar-Go-Me", gonial_deg),
    Measurement("Saddle", "Saddle angle", "deg", "angle N-S-Ar", saddle_deg),
    Measurement("Articular", "Articular angle", "deg", "angle S-Ar-Go", articular_deg),
    Measurement("Bjork", "Bjork sum", "deg", "saddle + articular + gonial angles", bjork_sum_deg),
    Measurement("Facial", "Facial angle (Downs)", "deg", "angle between FH (Po-Or) and N-Pog", facial_angle_deg),
    Measurement("Y-axis", "Y-axis (Downs)", "deg", "angle between FH (Po-Or) and S-Gn", y_axis_deg),
    Measurement("LAFH", "Lower anterior face height", "%", "ANS-Me as a share of N-Me", lower_face_height_percent),
    Measurement("UL-SnPog'", "Upper lip to Sn-Pog' line", "mm",
                "distance of the upper lip in front of the subnasale-soft-tissue-pogonion line (Burstone)",
                upper_lip_to_sn_pog_mm),
    Measurement("LL-SnPog'", "Lower lip to Sn-Pog' line", "mm",
                "distance of the lower lip in front of the subnasale-soft-tissue-pogonion line (Burstone)",
                lower_lip_to_sn_pog_mm),
)

MEASUREMENTS = ISBI_MEASUREMENTS + EXTRA_MEASUREMENTS
BY_KEY = {m.key: m for m in MEASUREMENTS}


def measure_all(points_mm) -> dict:
    """{key: value(s)} for one (19, 2) configuration or a stack (S, 19, 2)."""
    return {m.key: m(points_mm) for m in MEASUREMENTS}


def class_probabilities(m: Measurement, values) -> np.ndarray:
    """Share of the sampled values in each of m's classes (sums to 1)."""
    counts = np.bincount(m.class_index(np.ravel(values)), minlength=len(m.classes))
    return counts / max(1, counts.sum())
