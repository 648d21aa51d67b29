"""The named analysis in the module's panel, on the installed extension in the headless harness: the
selector shows the chosen analysis' table and lines; dragging a point updates both; a bad clinic norms
file is a message box that leaves the choice as it was."""

import sys

import numpy as np
import pytest
from test_slicer_module_installed import detectAndWait, loadRadiograph, skull, writeNrrd

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


def tableColumn(table, name):
    t = table.GetTable()
    return [t.GetValueByName(r, name).ToString() for r in range(t.GetNumberOfRows())]


def test_the_chosen_analysis_and_its_lines_follow_a_dragged_point(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)
    node = widget._parameterNode.landmarks
    lines = sys.modules["CephLandmarksSlicer.analysisLines"]

    def expected(key):  # the synthetic image's points mean nothing: some lines may be undefined
        return {line.name for line, _, _ in lines.linesRAS(node, [(key, "FH")])}

    table = widget.ui.analysisTableView.mrmlTableNode()
    assert table is not None and table.GetName().endswith("Steiner")  # the default choice
    assert any("SNB" in n for n in tableColumn(table, "Measurement"))
    assert set(lines.analysisLineNodes(node)) == expected("steiner") and "NA" in expected("steiner")

    na = lines.analysisLineNodes(node)["NA"]
    before = np.array(na.GetNthControlPointPosition(1))
    values = tableColumn(table, "Value")
    a = sys.modules["CephLandmarksSlicer.markups"].controlPointIndex(node, 5)  # A point
    position = np.array(node.GetNthControlPointPosition(a))
    node.SetNthControlPointPosition(a, *(position + [3.0, 2.0, 0.0]))
    harness.process_events(until=lambda: tableColumn(widget.ui.analysisTableView.mrmlTableNode(), "Value") != values,
                           timeout_s=5)
    assert lines.analysisLineNodes(node)["NA"] is na  # the same line node, moved with the point
    assert not np.allclose(np.array(na.GetNthControlPointPosition(1)), before)

    widget.ui.analysisSelector.setCurrentIndex(widget.ui.analysisSelector.findData("downs"))
    table = widget.ui.analysisTableView.mrmlTableNode()
    assert table.GetName().endswith("Downs") and any("Facial angle" in n for n in tableColumn(table, "Measurement"))
    assert set(lines.analysisLineNodes(node)) == expected("downs") and "SN" not in expected("downs")
    assert node.GetAttribute("CephLandmarks.Analysis") == "downs"

    bad = tmp_path / "norms.json"
    bad.write_text("{")
    widget.ui.analysisNormsPathLineEdit.setCurrentPath(str(bad))
    assert len(harness.message_boxes) == 1 and "norms.json" in str(harness.message_boxes[0])
    assert node.GetAttribute("CephLandmarks.Analysis") == "downs" and harness.slot_errors == []
