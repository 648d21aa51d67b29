"""The model list: the per-user model registry (shipped, imported, trained and adapted models;
CephLandmarksLib.store.registry, which needs no torch) and the list's items.

The registry lives beside Slicer's user settings, so that imported and adapted models survive a
Slicer upgrade.  An item's label is the registry's (an adapted model's kind is "adapted"); its
tooltip, for an adapted model, ends with its clinic figures (adapt.adaptationSummary).
"""

import os
from pathlib import Path

from CephLandmarksLib.store.registry import ModelRegistry

from .adapt import adaptationSummary


def modelRegistry(settingsFilePath):
    """The registry in <folder of Slicer's user settings file>/CephLandmarks/Models."""
    return ModelRegistry(Path(os.path.dirname(settingsFilePath)) / "CephLandmarks" / "Models")


def modelListItems(entries) -> list:
    """(label, path, tooltip) for the model list: the registry's label (an adapted model's kind is
    "adapted") and its tooltip, which for an adapted model ends with its clinic figures."""
    items = []
    for entry in entries:
        summary = adaptationSummary(entry.info, entry.path)
        tooltip = entry.tooltip + ("\n" + summary if summary else "")
        items.append((entry.label, str(entry.path), tooltip))
    return items
