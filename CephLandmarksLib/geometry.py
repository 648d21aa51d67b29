"""All coordinate mappings: image pixels <-> model pixels <-> millimetres.

Conventions (used everywhere in the library):
- A point is (x, y): x = column, y = row, in pixels; a pixel's centre has integer
  coordinates, so pixel (i, j) covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5].
- The model sees the image scaled by (sx, sy) and placed at `offset` (model pixels)
  inside a canvas of the model's input size; the rest of the canvas is padding.
  Scaling acts on pixel edges, so  u = (x + 0.5) * sx - 0.5 + offset_x.
- Millimetres are measured from the centre of image pixel (0, 0) along the image
  axes: x_mm = x * spacing_x.  RAS positions are made from these by the Slicer
  module with the volume's IJK-to-RAS matrix (`ijk_to_ras` below).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelFrame:
    """How one image sits in the model's input canvas."""

    image_size: tuple[int, int]  # (width, height) of the image, pixels
    model_size: tuple[int, int]  # (width, height) of the model input, pixels
    scaled_size: tuple[int, int]  # (width, height) of the scaled image inside the canvas
    offset: tuple[int, int] = (0, 0)  # where the scaled image's top-left pixel edge sits

    @classmethod
    def fit(cls, image_size, model_size):
        """Scale the image, keeping its aspect ratio, to fit the canvas; pad right and bottom."""
        w, h = image_size
        mw, mh = model_size
        s = min(mw / w, mh / h)
        scaled = (min(mw, max(1, round(w * s))), min(mh, max(1, round(h * s))))
        return cls(tuple(image_size), tuple(model_size), scaled)

    @property
    def scale(self) -> np.ndarray:
        """(sx, sy): model pixels per image pixel along each axis."""
        return np.array(
            [self.scaled_size[0] / self.image_size[0], self.scaled_size[1] / self.image_size[1]]
        )

    def image_to_model(self, xy_px):
        xy = np.asarray(xy_px, dtype=np.float64)
        return (xy + 0.5) * self.scale - 0.5 + np.asarray(self.offset, dtype=np.float64)

    def model_to_image(self, uv):
        uv = np.asarray(uv, dtype=np.float64)
        return (uv + 0.5 - np.asarray(self.offset, dtype=np.float64)) / self.scale - 0.5

    def image_mask(self) -> np.ndarray:
        """(mh, mw) bool: the model pixels covered by the image (False on the padding)."""
        mask = np.zeros(self.model_size[::-1], dtype=bool)
        ox, oy = self.offset
        mask[oy : oy + self.scaled_size[1], ox : ox + self.scaled_size[0]] = True
        return mask

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


def to_model_input(pixels: np.ndarray, frame: ModelFrame):
    """Normalised image (H, W) -> model input tensor (1, mh, mw): antialiased resize into the canvas."""
    import torch  # imported here so that the mappings above work without torch (Slicer's MRML code)
    import torch.nn.functional as F

    t = torch.as_tensor(np.ascontiguousarray(pixels), dtype=torch.float32)[None, None]
    sw, sh = frame.scaled_size
    scaled = F.interpolate(t, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
    mw, mh = frame.model_size
    canvas = torch.zeros((1, mh, mw), dtype=torch.float32)
    ox, oy = frame.offset
    canvas[0, oy : oy + sh, ox : ox + sw] = scaled[0, 0]
    return canvas
