"""The parameter node's values as the module's sections read them: a path parameter the user has
set (`chosenPath`), and the QSettings key that remembers the clinic dataset folder across sessions.

Imported when Slicer loads the module file: nothing here imports the library, and it parses under
the Python 3.9 of Slicer 5.8 (which the module then asks to upgrade)."""

CLINIC_FOLDER_SETTING = "CephLandmarks/ClinicFolder"  # the last clinic dataset folder, across sessions


def chosenPath(path):
    """A path parameter the user has set, or None: an unset pathlib.Path parameter reads as Path('.')."""
    text = str(path) if path is not None else ""
    return None if text in ("", ".") else text
