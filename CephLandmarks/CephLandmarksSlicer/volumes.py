"""A radiograph volume node read the way detection reads its file: where its pixels lie in RAS
(`pixelToRASMatrix`), its in-plane spacing (`volumeSpacing`) and the library's Radiograph of it
(`radiographFromVolume`), which is what a detection and the clinic dataset are given.

A PNG/JPEG-like file carries no spacing: Slicer shows it with 1 mm pixels, and 0.1 mm is
assumed. That fact is kept on the volume node (SPACING_SOURCE_ATTRIBUTE), because saving the
scene as .mrb rewrites every volume as NRRD, after which its file no longer tells.

Every other node of a detection is placed with `pixelToRASMatrix`, so the points, contours and
heatmaps lie over the radiograph however the volume is oriented or transformed.

MRML only (vtk, numpy, CephLandmarksLib): no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import vtk
from vtk.util import numpy_support

from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.images import DEFAULT_SPACING_MM, Radiograph, user_spacing

# Formats whose files carry no pixel spacing: Slicer shows them with 1 mm pixels.
_NO_SPACING_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
# Node attribute "assumed" where the volume's 1 mm spacing is Slicer's placeholder (saved in the scene).
SPACING_SOURCE_ATTRIBUTE = "CephLandmarks.SpacingSource"


def _matrixToArray(vtkMatrix):
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def arrayToMatrix(array):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r][c]))
    return m


def _inPlaneAxes(dims):
    """(column axis, row axis, normal axis) of IJK for a single-slice volume of dimensions dims."""
    singleton = [a for a in (2, 0, 1) if dims[a] == 1]
    if not singleton:
        raise CephError(f"the volume has {dims[0]} x {dims[1]} x {dims[2]} voxels; "
                        "a radiograph must be a single 2D image (one slice)")
    normal = singleton[0]
    column, row = [a for a in (0, 1, 2) if a != normal]
    return column, row, normal


def pixelToRASMatrix(volumeNode):
    """4x4 matrix taking the image pixel (x = column, y = row, 0, 1) of a single-slice volume to RAS."""
    imageData = volumeNode.GetImageData() if volumeNode else None
    if imageData is None:
        raise CephError("the selected volume has no image data")
    column, row, normal = _inPlaneAxes(imageData.GetDimensions())
    permutation = np.zeros((4, 4))
    permutation[column, 0] = permutation[row, 1] = permutation[normal, 2] = permutation[3, 3] = 1.0
    ijkToRAS = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRAS)
    return _matrixToArray(ijkToRAS) @ permutation


def recordSpacingSource(volumeNode) -> None:
    """Mark the volume's spacing as assumed when it came from a PNG/JPEG-like file (1 mm placeholder);
    call it when the volume is loaded, before the scene can be saved as .mrb."""
    if volumeNode is None or volumeNode.GetAttribute(SPACING_SOURCE_ATTRIBUTE):
        return
    storage = volumeNode.GetStorageNode()
    fileName = (storage.GetFileName() or "") if storage else ""
    if fileName.lower().endswith(_NO_SPACING_SUFFIXES) and np.allclose(volumeNode.GetSpacing(), 1.0):
        volumeNode.SetAttribute(SPACING_SOURCE_ATTRIBUTE, "assumed")


def volumeSpacing(volumeNode):
    """((sx, sy) in mm, source): the volume's in-plane spacing, or 'assumed' 0.1 mm where the volume's
    1 mm is a placeholder (recorded on the node, else read from its file's format)."""
    m = pixelToRASMatrix(volumeNode)
    spacing = (float(np.linalg.norm(m[:3, 0])), float(np.linalg.norm(m[:3, 1])))
    recordSpacingSource(volumeNode)
    # A spacing set since (Volumes module) is the user's: the placeholder mark holds only while it is 1 mm.
    if volumeNode.GetAttribute(SPACING_SOURCE_ATTRIBUTE) == "assumed" and np.allclose(spacing, 1.0):
        return (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed"
    return spacing, "volume"


def radiographFromVolume(volumeNode, spacingMm=None):
    """The library's Radiograph for a single-slice scalar or RGB volume node.

    pixels[y, x] is the voxel at pixel (x, y) as `pixelToRASMatrix` maps it, i.e. the image as
    stored in its file (the same array `read_radiograph` gives).  spacingMm overrides the spacing.
    """
    if volumeNode is None or not volumeNode.IsA("vtkMRMLScalarVolumeNode") and not volumeNode.IsA(
            "vtkMRMLVectorVolumeNode"):
        raise CephError("select a scalar volume (a radiograph) as input")
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        raise CephError(f"volume '{volumeNode.GetName()}' has no image data")
    dims = imageData.GetDimensions()
    column, row, normal = _inPlaneAxes(dims)
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    components = imageData.GetNumberOfScalarComponents()
    array = scalars.reshape(dims[2], dims[1], dims[0], components).astype(np.float32)  # (k, j, i, c)
    array = array[..., :3].mean(axis=-1) if components > 1 else array[..., 0]
    pixels = np.squeeze(array, axis=2 - normal)  # drop the single-slice axis
    if (2 - column) < (2 - row):  # array axes are ordered (k, j, i); want (row, column)
        pixels = pixels.T
    if min(pixels.shape) < 16:
        raise CephError(f"volume '{volumeNode.GetName()}' is too small for a radiograph ({pixels.shape})")
    if not np.isfinite(pixels).all():
        raise CephError(f"volume '{volumeNode.GetName()}' contains NaN or infinite values")
    if spacingMm:
        spacing, source = user_spacing(spacingMm), "user"
    else:
        spacing, source = volumeSpacing(volumeNode)
    m = pixelToRASMatrix(volumeNode)
    rasToLps = np.diag([-1.0, -1.0, 1.0])
    axes = m[:3, :3] / np.maximum(np.linalg.norm(m[:3, :3], axis=0), 1e-12)
    storage = volumeNode.GetStorageNode()
    path = (storage.GetFileName() or "") if storage else ""
    return Radiograph(np.ascontiguousarray(pixels, dtype=np.float32), spacing, source, path or volumeNode.GetName(),
                      tuple(rasToLps @ m[:3, 3]), tuple((rasToLps @ axes).ravel()))
