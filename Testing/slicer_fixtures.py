"""Helpers for the slicer-core tests: a headless MRML scene and a synthetic Detection."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "CephLandmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def headlessScene():
    """A vtkMRMLScene with the application, colour and markups logics registered (as Slicer does)."""
    import tempfile

    import slicer

    scene = slicer.vtkMRMLScene()
    # .mrb reading unpacks into the cache folder of the scene's data I/O manager
    cacheManager = slicer.vtkCacheManager()
    cacheManager.SetRemoteCacheDirectory(tempfile.mkdtemp(prefix="ceph-mrml-cache-"))
    dataIOManager = slicer.vtkDataIOManager()
    dataIOManager.SetCacheManager(cacheManager)
    scene.SetCacheManager(cacheManager)
    scene.SetDataIOManager(dataIOManager)
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    appLogic.GetColorLogic().SetMRMLScene(scene)
    appLogic.GetColorLogic().AddDefaultColorNodes()
    markupsLogic = slicer.vtkSlicerMarkupsLogic()
    markupsLogic.SetMRMLApplicationLogic(appLogic)
    markupsLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Markups", markupsLogic)
    scene._cephKeepAlive = (appLogic, markupsLogic, cacheManager, dataIOManager)  # noqa: SLF001 - keep the logics alive with the scene
    return scene


def makeVolume(scene, pixels, spacing=(0.1, 0.1), origin=(0.0, 0.0, 0.0), directions=None, name="radiograph"):
    """A single-slice scalar volume node from a (H, W) array; directions: 3x3 IJK-to-RAS directions."""
    import vtk
    from vtk.util import numpy_support

    h, w = pixels.shape
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(pixels, dtype=np.float32).ravel(), deep=True,
                                   array_type=vtk.VTK_FLOAT))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volume.SetAndObserveImageData(image)
    volume.SetSpacing(spacing[0], spacing[1], 1.0)
    volume.SetOrigin(*origin)
    if directions is not None:
        m = vtk.vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                m.SetElement(r, c, directions[r][c])
        volume.SetIJKToRASDirectionMatrix(m)
    volume.CreateDefaultDisplayNodes()
    return volume


def syntheticDetection(image_size=(200, 240), spacing=(0.1, 0.1), model_size=(96, 112), seed=0,
                       flagged=(3, 7, 12)):
    """A Detection with 19 landmarks on a grid, Gaussian heatmaps and circular credible contours."""
    from CephLandmarksLib.detection.result import Detection, LandmarkResult
    from CephLandmarksLib.imaging.geometry import ModelFrame
    from CephLandmarksLib.landmarks import ISBI_LANDMARKS

    rng = np.random.default_rng(seed)
    frame = ModelFrame.fit(image_size, model_size)
    w, h = image_size
    landmarks, probs = [], []
    vv, uu = np.mgrid[0:model_size[1], 0:model_size[0]]
    for lm in ISBI_LANDMARKS:
        x, y = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        is_flagged = lm.index in flagged
        radius = 12.0 if is_flagged else 5.0
        t = np.linspace(0, 2 * np.pi, 33)
        circle = lambda r, x=x, y=y, t=t: np.column_stack([x + r * np.cos(t), y + r * np.sin(t)])  # noqa: E731
        u, v = frame.image_to_model([x, y])
        sigma = radius * frame.scale[0]
        p = np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma ** 2))
        probs.append(p / p.sum())
        landmarks.append(LandmarkResult(
            lm.index, lm.name, lm.abbreviation, float(x), float(y), float(x * spacing[0]), float(y * spacing[1]),
            float(p.max() / p.sum()), 2.5 if is_flagged else 0.8, is_flagged,
            {"50": [circle(radius)], "90": [circle(2 * radius)]}, False,
            0.2 + 0.01 * lm.index if is_flagged else 0.001))
    return Detection("synthetic.png", image_size, spacing, "user", {"name": "synthetic", "version": "0",
                                                                     "sha256": "0" * 64},
                     1.5, landmarks, np.asarray(probs, dtype=np.float32), frame)
