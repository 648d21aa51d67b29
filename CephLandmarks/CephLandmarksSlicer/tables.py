"""The landmark table node: one row per landmark at its current position, flagged rows first, with
its confidence, ERE, probability of a large error and whether it is flagged, reviewed or edited.
`resetTable` (typed columns) is shared with the measurements table.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import vtk

from .markups import landmarkRows
from .record import TABLE_REFERENCE

TABLE_COLUMNS = (("Index", "int"), ("Landmark", "string"), ("Abbreviation", "string"), ("X (mm)", "double"),
                 ("Y (mm)", "double"), ("Confidence", "double"), ("ERE (mm)", "double"),
                 ("P(large error) (%)", "double"), ("Flagged", "string"), ("Reviewed", "string"), ("Edited", "string"))


def sortedRows(node):
    """Landmark rows, flagged first, each group by decreasing probability of a large error (then ERE)."""
    return sorted(landmarkRows(node), key=lambda r: (not r["flagged"], -(r.get("p_large_error") or 0.0), -r["ere_mm"]))


_COLUMN_ARRAYS = {"int": vtk.vtkIntArray, "bit": vtk.vtkBitArray, "string": vtk.vtkStringArray,
                  "double": vtk.vtkDoubleArray}


def resetTable(tableNode, columns):
    """Empty the node's table and give it typed columns [(name, kind)]; returns (table, arrays)."""
    table = tableNode.GetTable()
    table.Initialize()
    arrays = []
    for name, kind in columns:
        array = _COLUMN_ARRAYS[kind]()
        array.SetName(name)
        table.AddColumn(array)
        arrays.append(array)
    return table, arrays


def updateTable(scene, landmarksNode, tableNode=None):
    """Fill (and create if needed) the landmarks node's table node; returns it."""
    if tableNode is None:
        tableNode = landmarksNode.GetNodeReference(TABLE_REFERENCE)
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{landmarksNode.GetName()} table")
        landmarksNode.SetNodeReferenceID(TABLE_REFERENCE, tableNode.GetID())
    wasModifying = tableNode.StartModify()
    table, arrays = resetTable(tableNode, TABLE_COLUMNS)
    yesNo = {True: "yes", False: "no"}
    for row in sortedRows(landmarksNode):
        p = row.get("p_large_error")  # None in records made by a model without the score
        values = (row["index"], row["name"], row["abbreviation"], row["x_mm"], row["y_mm"], row["confidence"],
                  row["ere_mm"], None if p is None else 100 * p, yesNo[bool(row["flagged"])],
                  yesNo[bool(row["reviewed"])], yesNo[bool(row["edited"])])
        for array, value in zip(arrays, values, strict=True):
            array.InsertNextValue(float("nan") if value is None else value)  # missing landmark: no position
    table.Modified()
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetLocked(True)
    tableNode.EndModify(wasModifying)
    return tableNode


def tableRowLandmarkIndex(tableNode, row):
    return int(tableNode.GetTable().GetValueByName(row, "Index").ToInt())
