"""An assumed pixel spacing survives the scene: a PNG/JPEG radiograph shows with Slicer's 1 mm
placeholder, and saving the scene as .mrb rewrites the volume as NRRD, whose 1 mm would then read
as real. The spacing's source is kept on the volume node (CephLandmarksSlicer/volumes.py), against
slicer-core's real MRML (headless)."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScalarVolumeNode"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume  # noqa: E402

from CephLandmarksLib.imaging.images import DEFAULT_SPACING_MM  # noqa: E402
from CephLandmarksSlicer.spacingWatch import watchScene  # noqa: E402
from CephLandmarksSlicer.volumes import (  # noqa: E402
    SPACING_SOURCE_ATTRIBUTE,
    radiographFromVolume,
    recordSpacingSource,
    volumeSpacing,
)


def loadedFrom(scene, fileName, spacing):
    """A volume as Slicer leaves it after reading fileName: its pixels, its spacing, its storage node."""
    pixels = np.random.default_rng(0).uniform(0, 255, size=(60, 50)).astype(np.float32)
    volume = makeVolume(scene, pixels, spacing=spacing, name="radiograph")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(fileName))
    volume.SetAndObserveStorageNodeID(storage.GetID())
    return volume


def reopened(scene, tmp_path):
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))
    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    volume = again.GetFirstNodeByName("radiograph")
    assert volume is not None and volume.GetImageData() is not None
    return volume


def test_an_assumed_spacing_stays_assumed_after_an_mrb(tmp_path):
    scene = headlessScene()
    volume = loadedFrom(scene, tmp_path / "ceph.jpg", (1.0, 1.0))
    recordSpacingSource(volume)  # when it is loaded
    assert volumeSpacing(volume) == ((DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed")
    again = reopened(scene, tmp_path)
    assert again.GetStorageNode().GetFileName().lower().endswith(".nrrd")  # the file no longer tells
    assert again.GetAttribute(SPACING_SOURCE_ATTRIBUTE) == "assumed"
    assert volumeSpacing(again) == ((DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed")
    assert radiographFromVolume(again).spacing_source == "assumed"


def test_reading_the_spacing_records_its_source(tmp_path):
    """A volume the module never loaded (dropped into Slicer) is marked the first time its spacing is read."""
    scene = headlessScene()
    volume = loadedFrom(scene, tmp_path / "ceph.png", (1.0, 1.0))
    assert volumeSpacing(volume)[1] == "assumed"
    assert volumeSpacing(reopened(scene, tmp_path))[1] == "assumed"


@pytest.mark.parametrize(("fileName", "spacing"), [("ceph.nrrd", (1.0, 1.0)), ("ceph.dcm", (0.1, 0.1)),
                                                   ("ceph.png", (0.12, 0.12))])
def test_a_real_spacing_stays_real(tmp_path, fileName, spacing):
    """A 1 mm NRRD, a DICOM, and a PNG whose spacing the user set in Slicer keep their own spacing."""
    scene = headlessScene()
    volume = loadedFrom(scene, tmp_path / fileName, spacing)
    recordSpacingSource(volume)
    assert volume.GetAttribute(SPACING_SOURCE_ATTRIBUTE) is None
    assert volumeSpacing(reopened(scene, tmp_path)) == (pytest.approx(spacing), "volume")


def test_a_spacing_set_after_loading_wins_over_the_mark(tmp_path):
    """Marked as assumed at load, then given 0.15 mm in the Volumes module: the user's spacing counts."""
    scene = headlessScene()
    volume = loadedFrom(scene, tmp_path / "ceph.jpg", (1.0, 1.0))
    recordSpacingSource(volume)
    volume.SetSpacing(0.15, 0.15, 1.0)
    assert volumeSpacing(reopened(scene, tmp_path)) == (pytest.approx((0.15, 0.15)), "volume")


def loadedAsSlicerDoes(scene, fileName, storageFirst=True):
    """A JPEG as Slicer's volume reader leaves it (slicer-core reads no JPEG): Slicer 5.x adds the volume,
    already read (1 mm), to the scene, then attaches its storage node, which names the file
    (vtkSlicerVolumesLogic::AddArchetypeVolume); storageFirst=False: the storage node is attached first and
    names the file later, as older readers did."""
    pixels = np.random.default_rng(0).uniform(0, 255, size=(60, 50)).astype(np.float32)
    volume = makeVolume(scene, pixels, spacing=(1.0, 1.0), name="radiograph")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    if storageFirst:
        storage.SetFileName(str(fileName))
        volume.SetAndObserveStorageNodeID(storage.GetID())
    else:
        volume.SetAndObserveStorageNodeID(storage.GetID())
        storage.SetFileName(str(fileName))
        volume.Modified()  # the reader then sets the image data
    return volume


@pytest.mark.parametrize("storageFirst", [True, False])
def test_a_jpeg_saved_as_mrb_before_the_module_is_opened_stays_assumed(tmp_path, storageFirst):
    """Nothing of the panel runs: only the module's start-up watch of the scene (spacingWatch.py)."""
    unwatched = headlessScene()
    volume = loadedAsSlicerDoes(unwatched, tmp_path / "ceph.jpg", storageFirst)
    assert volume.GetAttribute(SPACING_SOURCE_ATTRIBUTE) is None  # the defect: no mark, so after the .mrb ...
    assert reopened(unwatched, tmp_path).GetAttribute(SPACING_SOURCE_ATTRIBUTE) is None  # ... 1 mm "from the volume"

    scene = headlessScene()
    watch = watchScene(scene)
    assert watchScene(scene) is watch  # once per scene
    volume = loadedAsSlicerDoes(scene, tmp_path / "ceph.jpg", storageFirst)
    assert volume.GetAttribute(SPACING_SOURCE_ATTRIBUTE) == "assumed" and watch.waiting == 0
    again = reopened(scene, tmp_path)
    assert again.GetStorageNode().GetFileName().lower().endswith(".nrrd")
    assert volumeSpacing(again) == ((DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed")


def test_the_watch_leaves_volumes_with_a_spacing_alone(tmp_path):
    """Slicer's own volume reader on a 1 mm NRRD: not marked, and the watch stops watching it."""
    import SimpleITK as sitk

    scene = headlessScene()
    watch = watchScene(scene)
    image = sitk.GetImageFromArray(np.zeros((1, 60, 50), np.uint8))
    sitk.WriteImage(image, str(tmp_path / "ceph.nrrd"))
    reader = slicer.vtkSlicerVolumesLogic()
    reader.SetMRMLApplicationLogic(scene._cephKeepAlive[0])
    reader.SetMRMLScene(scene)
    volume = reader.AddArchetypeVolume(str(tmp_path / "ceph.nrrd"), "ceph", 0)
    assert volume is not None and volume.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    assert volume.GetAttribute(SPACING_SOURCE_ATTRIBUTE) is None and watch.waiting == 0
    made = makeVolume(scene, np.zeros((20, 20), np.float32), spacing=(1.0, 1.0), name="made by a module")
    assert watch.waiting == 1  # no file: watched until it gets one, or leaves the scene
    scene.RemoveNode(made)
    assert watch.waiting == 0
