"""The module's self-test (Reload and Test, and the Extensions build machines' test run) on a bare
Slicer: without torch it skips the detection and says why, instead of failing.

Skips when ../shared/slicer-5.12, slicer-core or cmake is missing (CI has all three)."""

import sys

import pytest

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


def test_self_test_skips_detection_without_the_requirements(harness, monkeypatch, tmp_path):
    """torch is missing in Slicer and in PythonSlicer (a shadow package that cannot be imported)."""
    shadow = tmp_path / "bare"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    for name in ("torch", "torchvision"):
        monkeypatch.setitem(sys.modules, name, None)
    module = harness.load_module("CephLandmarks")
    harness.app.setTestingEnabled(True)
    test = module.CephLandmarksTest()
    messages = []
    test.delayDisplay = lambda message, *args, **kwargs: messages.append(message)
    test.runTest()
    skipped = [m for m in messages if m.startswith("Detection skipped")]
    assert len(skipped) == 1 and "torch, torchvision" in skipped[0], messages
    assert "Test passed" not in messages
    assert harness.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 0
    assert harness.slot_errors == []
