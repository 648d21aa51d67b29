"""All coordinate mappings: image pixels <-> model pixels <-> millimetres.

Conventions (used everywhere in the library):
- A point is (x, y): x = column, y = row, in pixels; a pixel's centre has integer
  coordinates, so pixel (i, j) covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5].
- The model sees the image scaled by (sx, sy) and placed at `offset` (model pixels)
  inside a canvas of the model's input size; the rest of the canvas is padding.
  Scaling acts on pixel edges, so  u = (x + 0.5) * sx - 0.5 + offset_x.
  A negative offset, or a scaled image larger than the canvas, crops: the parts of
  the image outside the canvas are not seen by the model.
- `mirror_x`: the model sees the image mirrored left-right (a left-facing profile
  turned to face right); x is replaced by W - 1 - x before the scaling.
- Framings: `fit` (scale to fit the canvas, pad right and bottom; used when the pixel
  spacing is unknown) and `physical` (scale to the model's own mm per pixel, centred;
  used when the spacing is known, so anatomy has the same size in model pixels).
- Millimetres are measured from the centre of image pixel (0, 0) along the image
  axes: x_mm = x * spacing_x.  RAS positions are made from these by the Slicer
  module with the volume's IJK-to-RAS matrix (`ijk_to_ras` below).
"""

from dataclasses import dataclass

import numpy as np

FRAMING_PHYSICAL = "physical"  # ModelFrame.physical: scaled to the model's mm per pixel (the spacing is known)
FRAMING_FIT = "fit-width"  # ModelFrame.fit: scaled to fit the model's canvas (the spacing is unknown)


@dataclass(frozen=True)
class ModelFrame:
    """How one image sits in the model's input canvas."""

    image_size: tuple[int, int]  # (width, height) of the image, pixels
    model_size: tuple[int, int]  # (width, height) of the model input, pixels
    scaled_size: tuple[int, int]  # (width, height) of the scaled image inside the canvas
    offset: tuple[int, int] = (0, 0)  # where the scaled image's top-left pixel edge sits (may be < 0: cropped)
    mirror_x: bool = False  # the model sees the image mirrored left-right

    @classmethod
    def fit(cls, image_size, model_size):
        """Scale the image, keeping its aspect ratio, to fit the canvas; pad right and bottom."""
        w, h = image_size
        mw, mh = model_size
        s = min(mw / w, mh / h)
        scaled = (min(mw, max(1, round(w * s))), min(mh, max(1, round(h * s))))
        return cls(tuple(image_size), tuple(model_size), scaled)

    @classmethod
    def physical(cls, image_size, spacing_mm, model_size, model_mm_per_px, mirror_x=False):
        """Scale the image to `model_mm_per_px` millimetres per model pixel, centred on the canvas.

        An image smaller than the canvas is padded on both sides; a larger one is cropped
        symmetrically (the centre of the image is kept; what lies beyond the canvas is
        not seen, and landmarks there are reported missing).
        """
        w, h = image_size
        mw, mh = model_size
        sx, sy = np.asarray(spacing_mm, dtype=np.float64) / float(model_mm_per_px)
        scaled = (max(1, round(w * sx)), max(1, round(h * sy)))
        offset = (int(np.floor((mw - scaled[0]) / 2)), int(np.floor((mh - scaled[1]) / 2)))
        return cls(tuple(image_size), tuple(model_size), scaled, offset, bool(mirror_x))

    def mirrored(self, mirror_x: bool = True) -> "ModelFrame":
        """The same frame for the image mirrored left-right (or not)."""
        return ModelFrame(self.image_size, self.model_size, self.scaled_size, self.offset, bool(mirror_x))

    def moved(self, scale: float, shift_uv) -> "ModelFrame":
        """The frame whose model points are about scale * u + shift of this one's (the image
        resampled by `scale` and moved), to whole model pixels."""
        k = float(scale)
        sw, sh = (max(1, round(n * k)) for n in self.scaled_size)
        kx, ky = sw / self.scaled_size[0], sh / self.scaled_size[1]
        ox = kx * (self.offset[0] - 0.5) + 0.5 + float(shift_uv[0])
        oy = ky * (self.offset[1] - 0.5) + 0.5 + float(shift_uv[1])
        return ModelFrame(self.image_size, self.model_size, (sw, sh), (round(ox), round(oy)), self.mirror_x)

    @property
    def scale(self) -> np.ndarray:
        """(sx, sy): model pixels per image pixel along each axis."""
        return np.array(
            [self.scaled_size[0] / self.image_size[0], self.scaled_size[1] / self.image_size[1]]
        )

    def _flip(self, xy: np.ndarray) -> np.ndarray:
        if not self.mirror_x:
            return xy
        out = np.array(xy, dtype=np.float64, copy=True)
        out[..., 0] = self.image_size[0] - 1 - out[..., 0]
        return out

    def image_to_model(self, xy_px):
        xy = self._flip(np.asarray(xy_px, dtype=np.float64))
        return (xy + 0.5) * self.scale - 0.5 + np.asarray(self.offset, dtype=np.float64)

    def model_to_image(self, uv):
        uv = np.asarray(uv, dtype=np.float64)
        return self._flip((uv + 0.5 - np.asarray(self.offset, dtype=np.float64)) / self.scale - 0.5)

    def model_to_image_matrix(self) -> np.ndarray:
        """3 x 3 affine taking (u, v, 1) model pixels to (x, y, 1) image pixels: model_to_image as a
        matrix (mirroring included), for placing model-grid images such as heatmaps over the image."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        m = np.array([[1 / sx, 0, (0.5 - ox) / sx - 0.5], [0, 1 / sy, (0.5 - oy) / sy - 0.5], [0, 0, 1.0]])
        if self.mirror_x:
            m = np.array([[-1.0, 0, self.image_size[0] - 1], [0, 1, 0], [0, 0, 1]]) @ m
        return m

    def visible_box(self):
        """((u0, u1), (v0, v1)): the canvas pixel ranges (end exclusive) covered by the image."""
        (ox, oy), (sw, sh), (mw, mh) = self.offset, self.scaled_size, self.model_size
        return (max(0, ox), min(mw, ox + sw)), (max(0, oy), min(mh, oy + sh))

    def image_mask(self) -> np.ndarray:
        """(mh, mw) bool: the model pixels covered by the image (False on the padding)."""
        mask = np.zeros(self.model_size[::-1], dtype=bool)
        (u0, u1), (v0, v1) = self.visible_box()
        mask[v0:v1, u0:u1] = True
        return mask

    def inside_image(self, xy_px) -> np.ndarray:
        """(N,) bool: image points inside the image and seen by the model (not cropped away)."""
        xy = np.atleast_2d(np.asarray(xy_px, dtype=np.float64))
        w, h = self.image_size
        inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
        uv = self.image_to_model(xy)
        (u0, u1), (v0, v1) = self.visible_box()
        seen = (uv[:, 0] >= u0 - 0.5) & (uv[:, 0] <= u1 - 0.5) & (uv[:, 1] >= v0 - 0.5) & (uv[:, 1] <= v1 - 0.5)
        return inside & seen

    def model_pixel_mm(self, spacing_mm) -> np.ndarray:
        """(mm per model pixel along x, along y) for an image of the given spacing."""
        return np.asarray(spacing_mm, dtype=np.float64) / self.scale


def px_to_mm(xy_px, spacing_mm):
    return np.asarray(xy_px, dtype=np.float64) * np.asarray(spacing_mm, dtype=np.float64)


def mm_to_px(xy_mm, spacing_mm):
    return np.asarray(xy_mm, dtype=np.float64) / np.asarray(spacing_mm, dtype=np.float64)


def px_to_lps(xy_px, spacing_mm, origin_lps, direction_lps):
    """Image pixel (x, y) -> LPS millimetres, as ITK and Slicer place the image in space."""
    xy = np.atleast_2d(np.asarray(xy_px, dtype=np.float64))
    ij0 = np.column_stack([xy * np.asarray(spacing_mm, dtype=np.float64), np.zeros(len(xy))])
    return np.asarray(origin_lps, dtype=np.float64) + ij0 @ np.reshape(direction_lps, (3, 3)).T


def ijk_to_ras(xy_px, ijk_to_ras_matrix):
    """Image pixel (x, y) on slice k=0 -> RAS, with a volume's 4x4 IJK-to-RAS matrix."""
    xy = np.atleast_2d(np.asarray(xy_px, dtype=np.float64))
    ijk1 = np.column_stack([xy, np.zeros(len(xy)), np.ones(len(xy))])
    return (ijk1 @ np.asarray(ijk_to_ras_matrix, dtype=np.float64).T)[:, :3]


def ras_to_ijk(ras, ijk_to_ras_matrix):
    ras = np.atleast_2d(np.asarray(ras, dtype=np.float64))
    ras1 = np.column_stack([ras, np.ones(len(ras))])
    return (ras1 @ np.linalg.inv(np.asarray(ijk_to_ras_matrix, dtype=np.float64)).T)[:, :3]


def head_axes(sella_xy, nasion_xy) -> np.ndarray:
    """2 x 2 matrix whose columns are the head frame's axes in (x, y): the unit vector from sella
    to nasion, then that vector turned a quarter towards +y (downwards in a right-facing image).

    Offsets expressed in this frame do not change with head tilt; given in mm they do not
    change with pixel size either (clinic conventions, adaptation.py).
    """
    d = np.asarray(nasion_xy, dtype=np.float64) - np.asarray(sella_xy, dtype=np.float64)
    length = float(np.hypot(*d))
    if not np.isfinite(length) or length == 0:
        raise ValueError("sella and nasion coincide or are undefined: no head frame")
    e1 = d / length
    return np.array([[e1[0], -e1[1]], [e1[1], e1[0]]])


def to_head_frame(vectors_xy, axes) -> np.ndarray:
    """(..., 2) vectors in (x, y) -> their components along the head axes (head_axes)."""
    return np.asarray(vectors_xy, dtype=np.float64) @ np.asarray(axes)


def from_head_frame(components, axes) -> np.ndarray:
    """Inverse of to_head_frame: (..., 2) head-frame components -> (x, y) vectors."""
    return np.asarray(components, dtype=np.float64) @ np.asarray(axes).T


SELLA, NASION = "S", "N"  # abbreviations of the landmarks spanning the head frame


def frame_landmarks(abbreviations) -> tuple[int, int]:
    """Indices of sella and nasion among the model's landmarks; ValueError if it lacks them."""
    abbreviations = list(abbreviations)
    if SELLA not in abbreviations or NASION not in abbreviations:
        raise ValueError(f"the model has no {SELLA} and {NASION} landmarks to build a head frame from")
    return abbreviations.index(SELLA), abbreviations.index(NASION)


def shifts_uv(pred_uv, offsets_mm, mm_per_px, s: int, n: int) -> np.ndarray:
    """(L, 2) model-pixel shifts that apply head-frame offsets (L, 2, mm) to predicted points (L, 2)."""
    mm = np.asarray(mm_per_px, dtype=np.float64)
    pred_mm = np.asarray(pred_uv, dtype=np.float64) * mm
    axes = head_axes(pred_mm[s], pred_mm[n])
    return from_head_frame(np.asarray(offsets_mm, dtype=np.float64), axes) / mm
