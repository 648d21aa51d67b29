"""Small things a user of the panel meets in a real Slicer: no modal dialog under the wait cursor,
unset folder fields shown empty (not "."), the model path's browse button opening a file to read,
and one message (not two) when installing the requirements fails on Slicer 5.12.

Skips when ../shared/slicer-5.12, slicer-core or cmake is missing (CI has all three)."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from slicer_fixtures import syntheticDetection

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))

PATH_FIELDS = ("datasetPathLineEdit", "trainModelPathLineEdit", "evaluateOutputPathLineEdit",
               "clinicFolderPathLineEdit")


def test_unset_folder_fields_are_shown_empty(widget, tmp_path):
    ui = widget.ui
    assert {name: getattr(ui, name).currentPath for name in PATH_FIELDS} == dict.fromkeys(PATH_FIELDS, "")
    widget._parameterNode.epochs = 7  # any change of the parameter node rewrites every field
    assert {name: getattr(ui, name).currentPath for name in PATH_FIELDS} == dict.fromkeys(PATH_FIELDS, "")
    ui.datasetPathLineEdit.currentPath = str(tmp_path)
    assert str(widget._parameterNode.datasetFolder) == str(tmp_path)
    assert ui.datasetPathLineEdit.currentPath == str(tmp_path)


def test_model_path_browse_opens_a_model_to_read(harness, widget, tmp_path):
    """Calibrate and Evaluate read it: an Open dialog, not a Save dialog that asks to overwrite."""
    harness.queue_file_dialog(str(tmp_path / "m.safetensors"))
    widget.ui.trainModelPathLineEdit.browse()
    assert [d["kind"] for d in harness.file_dialogs] == ["getOpenFileName"]
    assert str(widget._parameterNode.trainModelPath) == str(tmp_path / "m.safetensors")


# --- installing the requirements -----------------------------------------------------------------

MISSING = [("tqdm", "tqdm>=4.60")]


class InstallationAbortedError(Exception):
    """The name Slicer 5.12's slicer.packaging raises when the user declines its own confirmation."""


@pytest.fixture
def install(harness, widget, monkeypatch):
    """ensureDependencies() with tqdm missing and slicer.util.pip_install replaced by `pipInstall`."""
    import importlib

    import slicer

    deps = importlib.import_module("CephLandmarksSlicer.dependencies")  # the installed copy (harness)
    monkeypatch.setattr(deps, "missingRequirements", lambda requirements: MISSING)

    def run(pipInstall):
        monkeypatch.setattr(slicer.util, "pip_install", pipInstall)
        return widget.ensureDependencies()

    return run


def test_a_failed_install_that_slicer_reports_gives_one_message(harness, install):
    """Slicer 5.12's pip_install shows its own error (a constraint conflict), then raises."""
    import slicer

    calls = []

    def pipInstall(requirements, **kwargs):
        calls.append(kwargs)
        slicer.util.errorDisplay("Cannot install packages for tqdm>=4.60 because it would violate constraints")
        raise subprocess.CalledProcessError(1, ["uv", "pip", "install", "--dry-run"])

    assert install(pipInstall) is False
    assert calls == [{"interactive": False}]  # the module has asked: Slicer does not ask again
    assert [b["kind"] for b in harness.message_boxes] == ["question", "error"], harness.message_boxes
    assert not any(b["waitCursor"] for b in harness.message_boxes)
    assert harness.override_cursor_depth == 0 and harness.slot_errors == []


def test_a_failed_install_gives_its_reason_once(harness, install):
    def pipInstall(requirements):  # Slicer 5.10: no `interactive`, no dialog of its own
        raise subprocess.CalledProcessError(1, ["pip", "install", "tqdm>=4.60"])

    assert install(pipInstall) is False
    errors = [b for b in harness.message_boxes if b["kind"] == "error"]
    assert len(errors) == 1 and "could not be installed" in errors[0]["text"] and "exit status 1" in errors[0]["text"]
    assert not errors[0]["waitCursor"] and harness.override_cursor_depth == 0


def test_a_declined_install_gives_no_error(harness, install):
    def pipInstall(requirements, interactive=True):
        raise InstallationAbortedError(requirements, "CephLandmarks")

    assert install(pipInstall) is False
    assert [b["kind"] for b in harness.message_boxes] == ["question"]


def test_a_working_install_runs_under_the_wait_cursor(harness, install):
    import qt

    depths = []
    assert install(lambda requirements: depths.append(qt.QApplication.overrideCursor() is not None)) is False
    # (missingRequirements still says tqdm is missing: "Still missing after installation")
    assert depths == [True] and harness.override_cursor_depth == 0
    assert [b["kind"] for b in harness.message_boxes] == ["question", "error"]
    assert "Still missing" in harness.message_boxes[1]["text"]


# --- showing a detection -------------------------------------------------------------------------

def test_questions_and_warnings_after_a_detection_are_not_under_the_wait_cursor(harness, widget):
    """The 'assumed spacing' warning, then (points corrected) the 'keep my corrections?' question."""
    import slicer

    volume = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "radiograph")
    slicer.util.updateVolumeFromArray(volume, np.zeros((1, 240, 200), dtype=np.float32))
    widget._parameterNode.inputVolume = volume
    detection = dataclasses.replace(syntheticDetection(image_size=(200, 240)), spacing_source="assumed")
    widget.onDetectionDone(volume, detection, None, False)
    node = widget._parameterNode.landmarks
    assert node is not None and [b["kind"] for b in harness.message_boxes] == ["warning"]
    node.SetNthControlPointPosition(0, *[v + 3.0 for v in node.GetNthControlPointPosition(0)])  # a correction
    harness.queue_answer("New node")
    widget.onDetectionDone(volume, detection, None, False)
    assert [b["kind"] for b in harness.message_boxes] == ["warning", "question", "warning"]
    assert [b["waitCursor"] for b in harness.message_boxes] == [False, False, False]
    assert harness.override_cursor_depth == 0 and harness.slot_errors == []


def test_a_region_not_localised_is_marked_with_a_question_mark_in_the_slice_views(harness, widget):
    """The overlay and the report write "?" beside the dashed ring of a region not localised; in Slicer it
    is a locked point labelled "?" beside the landmarks, shown and hidden with the contours."""
    import slicer

    volume = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "radiograph")
    slicer.util.updateVolumeFromArray(volume, np.zeros((1, 240, 200), dtype=np.float32))
    widget._parameterNode.inputVolume = volume
    detection = syntheticDetection(image_size=(200, 240))
    far = detection.landmarks[9]  # Go
    far.region_90_area_mm2 = 17_900.0
    widget.onDetectionDone(volume, detection, None, False)
    node = widget._parameterNode.landmarks
    labels = node.GetNodeReference("CephLandmarksRegionLabels")
    assert labels is not None and labels.GetNumberOfControlPoints() == 1 and labels.GetNthControlPointLabel(0) == "?"
    assert labels.GetNthControlPointDescription(0) == "Go: 90 % region not localised: 179 cm\u00b2"
    assert labels.GetLocked() and labels.GetDisplayNode().GetVisibility()
    widget.ui.showContoursCheckBox.checked = False
    assert not labels.GetDisplayNode().GetVisibility()
    widget.ui.showContoursCheckBox.checked = True
    assert labels.GetDisplayNode().GetVisibility()
    assert widget._parameterNode.landmarks is node and harness.slot_errors == []


def test_a_jpeg_saved_as_mrb_before_the_panel_is_opened_keeps_its_assumed_spacing(harness, tmp_path):
    """Slicer instantiates the module at start-up; the panel is never opened. A JPEG loaded then (as Slicer
    5.x's volume reader leaves it) and saved as .mrb reopens with its spacing still 'assumed'."""
    import slicer
    from slicer_fixtures import headlessScene, makeVolume

    from slicer_harness.core import emit

    harness.load_module("CephLandmarks")  # no widget: the panel is never opened
    emit(slicer.app, "startupCompleted()")  # the module watches the scene once, whichever comes first
    spacingWatch = sys.modules["CephLandmarksSlicer.spacingWatch"]
    watch = getattr(harness.scene, spacingWatch._ATTRIBUTE, None)  # set up by the module, not by this test
    assert watch is not None and spacingWatch.watchScene(harness.scene) is watch
    assert getattr(slicer.modules, "CephLandmarksWidget", None) is None
    pixels = np.random.default_rng(0).uniform(0, 255, size=(60, 50)).astype(np.float32)
    volume = makeVolume(harness.scene, pixels, spacing=(1.0, 1.0), name="ceph")
    storage = harness.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "ceph.jpg"))
    volume.SetAndObserveStorageNodeID(storage.GetID())
    assert harness.scene.WriteToMRB(str(tmp_path / "case.mrb"))
    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    reopened = again.GetFirstNodeByName("ceph")
    assert reopened.GetStorageNode().GetFileName().endswith(".nrrd")
    volumes = sys.modules["CephLandmarksSlicer.volumes"]
    assert volumes.volumeSpacing(reopened) == ((0.1, 0.1), "assumed")
