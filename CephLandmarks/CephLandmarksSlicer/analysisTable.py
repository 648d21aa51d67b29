"""The chosen named analysis of a landmarks node, as a table node: value, 90 % interval, norm,
deviation in SD, interpretation, P(outside the norm) and a note (flagged point, surrogate, reference).
Only the ISBI 2015 analysis grades by the challenge's class bands; its rows' notes say they are
"ISBI 2015 challenge classes (benchmark, not clinical norms)".

The choice (analysis key, a clinic's norms file, the horizontal, the patient's age and sex) is kept
on the landmarks node as attributes, so it is saved with the scene. The values follow the
clinician's corrections exactly as the measurements table does (review.currentDetection: corrected
points exact, the others drawn from the stored heatmaps, same seed); a corrected or confirmed
point no longer counts as flagged.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import json

from CephLandmarksLib.cephalometry.detection_analyses import AnalysisOptions, analyses_for_detection
from CephLandmarksLib.cephalometry.measurement_uncertainty import DEFAULT_SAMPLES, DEFAULT_SEED

from .review import currentDetection
from .tables import resetTable

ANALYSIS_ATTRIBUTE = "CephLandmarks.Analysis"  # the chosen analysis' key
ANALYSIS_OPTIONS_ATTRIBUTE = "CephLandmarks.AnalysisOptions"  # JSON: norms, horizontal, age_years, sex
ANALYSIS_TABLE_REFERENCE = "CephLandmarksAnalysisTable"
DEFAULT_ANALYSIS = "steiner"
FLAGGED_MARK = "\u26a0 "
CHALLENGE_NOTE = "ISBI 2015 challenge class (benchmark, not a clinical norm)"
ANALYSIS_COLUMNS = (("Measurement", "string"), ("Unit", "string"), ("Value", "double"), ("5 %", "double"),
                    ("95 %", "double"), ("Norm", "string"), ("Deviation (SD)", "double"),
                    ("Interpretation", "string"), ("P(outside) (%)", "double"), ("Note", "string"),
                    ("Definition", "string"))


def analysisChoices():
    """[(key, name)] of the catalogue's analyses, the default set first."""
    from CephLandmarksLib.cephalometry.analyses import shipped_catalogue

    catalogue = shipped_catalogue()
    first = list(catalogue.default_analyses)
    rank = {key: k for k, key in enumerate(first)}
    ordered = sorted(catalogue.analyses, key=lambda a: rank.get(a.key, len(first)))
    return [(a.key, a.name) for a in ordered]


def chosenAnalysis(node):
    return (node.GetAttribute(ANALYSIS_ATTRIBUTE) if node else None) or DEFAULT_ANALYSIS


def analysisSettings(node):
    text = node.GetAttribute(ANALYSIS_OPTIONS_ATTRIBUTE) if node else None
    return json.loads(text) if text else {}


def chooseAnalysis(node, key, norms=None, horizontal=None, ageYears=None, sex=None):
    """Keep the choice on the node; CephError (one line, for a message box) if it is not valid."""
    options = AnalysisOptions(key, norms or None, horizontal or "FH", ageYears or None, sex or None).check()
    node.SetAttribute(ANALYSIS_ATTRIBUTE, options.keys()[0])
    node.SetAttribute(ANALYSIS_OPTIONS_ATTRIBUTE, json.dumps(
        {"norms": norms or None, "horizontal": horizontal or "FH", "age_years": ageYears or None, "sex": sex or None}))
    return options


def nodeAnalysisOptions(node):
    s = analysisSettings(node)
    return AnalysisOptions(chosenAnalysis(node), s.get("norms"), s.get("horizontal") or "FH", s.get("age_years"),
                           s.get("sex"), age_source="user", sex_source="user")


def exportAnalysisOptions(node):
    """The analyses an export or a report of the node carries: the default set, and the chosen one."""
    from dataclasses import replace

    from CephLandmarksLib.cephalometry.analyses import shipped_catalogue

    keys = list(shipped_catalogue().default_analyses)
    chosen = chosenAnalysis(node)
    options = nodeAnalysisOptions(node)
    return replace(options, analyses=keys + ([chosen] if chosen not in keys else []))


def analysisAtCurrentPoints(node, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The chosen analysis' entry (the detect JSON's shape) at the node's current points; None without heatmaps."""
    detection, pointsMm, corrected = currentDetection(node, withContours=False)
    if detection.probs is None:
        return None
    return analyses_for_detection(detection, nodeAnalysisOptions(node), pointsMm, corrected, n, seed)[0]


def analysisRows(entry):
    """Rows (tuples in ANALYSIS_COLUMNS order); a row resting on a flagged point is marked and named."""
    from CephLandmarksLib.outputs.analysis_pages import norm_text, row_note

    nan = float("nan")
    rows = []
    for item in entry["measurements"]:
        lo, hi = item["interval_90"] or (nan, nan)
        p = item.get("p_outside_norm")
        note = row_note(item)
        if item.get("flag_note"):
            note = item["flag_note"]
        if item.get("challenge_class"):  # the ISBI 2015 analysis: its words are the challenge's classes
            note = "; ".join(t for t in (CHALLENGE_NOTE, note) if t)
        rows.append(((FLAGGED_MARK if item.get("flagged_points") else "") + item["name"],
                     {"deg": "\u00b0"}.get(item["unit"], item["unit"]), nan if item["value"] is None else item["value"],
                     lo, hi, norm_text(item.get("norm"), item["unit"]),
                     nan if item.get("deviation_sd") is None else item["deviation_sd"],
                     item.get("challenge_class") or item.get("interpretation") or (item.get("undefined") or ""),
                     nan if p is None else 100 * p, note, item["definition"]))
    return rows


def updateAnalysisTable(scene, node, tableNode=None, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Fill (creating if needed) the node's analysis table from its current points; returns (table, entry).

    (None, None) for a node saved without heatmaps."""
    entry = analysisAtCurrentPoints(node, n, seed)
    if entry is None:
        return None, None
    if tableNode is None:
        tableNode = node.GetNodeReference(ANALYSIS_TABLE_REFERENCE)
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{node.GetName()} analysis"))
        node.SetNodeReferenceID(ANALYSIS_TABLE_REFERENCE, tableNode.GetID())
    wasModifying = tableNode.StartModify()
    tableNode.SetLocked(False)
    table, arrays = resetTable(tableNode, ANALYSIS_COLUMNS)
    for row in analysisRows(entry):
        for array, value in zip(arrays, row, strict=True):
            array.InsertNextValue(value)
    table.Modified()
    tableNode.SetName(f"{node.GetName()} {entry['name']}")
    tableNode.SetAttribute(ANALYSIS_ATTRIBUTE, entry["key"])
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetColumnDescription("P(outside) (%)", "probability that the true value lies outside the norm band, "
                                                     "from draws of the landmarks from their heatmaps")
    tableNode.SetColumnDescription("Note", "a flagged point the row rests on (the interval then reflects an "
                                           "uncertain point, not a finding), surrogates, the reference horizontal")
    tableNode.SetColumnDescription("Interpretation", entry.get("norm_label") or "the value against the norm")
    tableNode.SetLocked(True)
    tableNode.EndModify(wasModifying)
    return tableNode, entry
