"""Crop frames: a small full-resolution window around a point, with its own pixel <-> image mapping.

The second stage (the refiner) looks at one such window per landmark.  A crop has `size`
(width, height) crop pixels of `mm_per_px` millimetres each, centred on `centre_px` (image
pixels, sub-pixel), so a crop pixel (u, v) maps to the image by

    x = centre_x + (u - (w - 1) / 2) * mm_per_px / spacing_x        (mirrored: minus the offset)
    y = centre_y + (v - (h - 1) / 2) * mm_per_px / spacing_y

Pixel centres have integer coordinates, as everywhere in the library (imaging.geometry).
`mirror_x`: the crop sees the image mirrored left-right, as the model sees a left-facing
profile, so the refiner always looks at right-facing anatomy.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropFrame:
    """Where one crop sits on the image."""

    centre_px: tuple[float, float]  # image pixel (x, y) under the crop's centre
    size: tuple[int, int]  # (width, height) of the crop, crop pixels
    mm_per_px: float  # millimetres per crop pixel
    spacing_mm: tuple[float, float]  # the image's (x, y) millimetres per image pixel
    mirror_x: bool = False

    @property
    def scale(self) -> np.ndarray:
        """(kx, ky): crop pixels per image pixel along each axis."""
        return np.asarray(self.spacing_mm, dtype=np.float64) / float(self.mm_per_px)

    @property
    def _half(self) -> np.ndarray:
        return (np.asarray(self.size, dtype=np.float64) - 1) / 2

    @property
    def _sign(self) -> np.ndarray:
        return np.array([-1.0 if self.mirror_x else 1.0, 1.0])

    def image_to_crop(self, xy_px) -> np.ndarray:
        d = np.asarray(xy_px, dtype=np.float64) - np.asarray(self.centre_px, dtype=np.float64)
        return d * self._sign * self.scale + self._half

    def crop_to_image(self, uv) -> np.ndarray:
        d = (np.asarray(uv, dtype=np.float64) - self._half) / self.scale * self._sign
        return d + np.asarray(self.centre_px, dtype=np.float64)

    def crop_to_image_matrix(self) -> np.ndarray:
        """3 x 3 affine taking (u, v, 1) crop pixels to (x, y, 1) image pixels (for placing the fine map)."""
        a = self._sign / self.scale
        t = np.asarray(self.centre_px, dtype=np.float64) - a * self._half
        return np.array([[a[0], 0, t[0]], [0, a[1], t[1]], [0, 0, 1.0]])

    def contains(self, xy_px) -> np.ndarray:
        """(...,) bool: image points whose crop coordinates lie within the crop's pixel edges."""
        uv = self.image_to_crop(xy_px)
        w, h = self.size
        return (uv[..., 0] >= -0.5) & (uv[..., 0] <= w - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= h - 0.5)

    def pixel_area_mm2(self) -> float:
        return float(self.mm_per_px) ** 2

    def to_array(self) -> np.ndarray:
        """(7,) float: centre x, y, width, height, mm per px, spacing x, y; mirror as the sign of mm per px."""
        sign = -1.0 if self.mirror_x else 1.0
        return np.array([*self.centre_px, *self.size, sign * self.mm_per_px, *self.spacing_mm], dtype=np.float64)

    @classmethod
    def from_array(cls, a) -> "CropFrame":
        a = np.asarray(a, dtype=np.float64)
        return cls((float(a[0]), float(a[1])), (int(a[2]), int(a[3])), float(abs(a[4])), (float(a[5]), float(a[6])),
                   bool(a[4] < 0))


def crop_frames(points_px, spacing_mm, size, mm_per_px, mirror_x=False) -> list[CropFrame]:
    """One CropFrame per point (L, 2) image pixels, all of the same size and scale."""
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    return [CropFrame((float(x), float(y)), (int(size[0]), int(size[1])), float(mm_per_px), spacing, bool(mirror_x))
            for x, y in np.asarray(points_px, dtype=np.float64).reshape(-1, 2)]
