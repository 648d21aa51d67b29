"""The model list: the per-user model registry (shipped, imported, trained, adapted and downloaded
models, and sidecars; CephLandmarksLib.store.registry, which needs no torch), the list's items, and
the "Download NAME" items of the models and second stages (refiners) listed as downloadable
(store/download.py, docs/models.md).  A refiner is downloaded into the per-user model folder, where
the library's default_refiner finds it for its model (secondStage.refineArguments); the list then
selects that model.

The registry lives beside Slicer's user settings, so that imported and adapted models survive a
Slicer upgrade.  An item's label is the registry's (an adapted model's kind is "adapted"); its
tooltip, for an adapted model, ends with its clinic figures (adapt.adaptationSummary).
"""

import os
from pathlib import Path

from CephLandmarksLib.store.registry import ModelRegistry

from .adapt import adaptationSummary
from .process import ProcessJob, cliCommand, processEnvironment


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


# Downloadable models: an item per listed model not yet in the per-user folder; choosing it and pressing
# Detect fetches it in a `ceph-landmarks models --download` process (Slicer stays responsive, Cancel kills it).

DOWNLOAD_PREFIX = "download:"


def downloadItems(registry) -> list:
    """(label, "download:NAME", tooltip) per downloadable model not yet downloaded; none if the list is bad."""
    from CephLandmarksLib.errors import CephError

    try:
        items = registry.downloadable()
    except CephError as e:
        import logging

        logging.warning(f"CephLandmarks: {e}")
        return []
    return [(f"Download {d.label}", DOWNLOAD_PREFIX + d.name, _downloadTooltip(d)) for d in items]


def _downloadTooltip(d) -> str:
    from .i18n import tr as _

    where = f"{d.url}\nSHA-256 {d.sha256}"
    if d.kind != "refiner":
        return where
    return _("The second stage of {m}: once downloaded, Detect with {m} runs it while Second stage is "
             "ticked.").format(m=d.refines) + "\n" + where


def refinedModelPath(entries, refines):
    """The path of the model list's entry a refiner for weights `<refines>.safetensors` runs behind (a
    weights file of that name, else a sidecar of it), else None."""
    name = f"{refines}.safetensors"
    for entry in entries:
        if entry.weights is None and entry.path.name == name:
            return str(entry.path)
    for entry in entries:
        if entry.weights is not None and entry.weights.name == name:
            return str(entry.path)
    return None


def downloadName(itemData):
    """The model name of a download item's data, else None."""
    data = str(itemData or "")
    return data[len(DOWNLOAD_PREFIX):] if data.startswith(DOWNLOAD_PREFIX) else None


class DownloadJob(ProcessJob):
    """One model download in a background process: onProgress(fraction, stage); onDone(path, error,
    cancelled) once, on the main thread.  The CLI writes nothing until the file is verified."""

    def __init__(self, python, libraryFolder, userDir, name):
        super().__init__()
        self.commandLine = cliCommand(python, "models", "--download", name, "--user-dir", userDir, "--progress")
        self.environment = processEnvironment(libraryFolder)

    def finish(self, exitCode, crashed):
        """(downloaded model path or None, error message or None, cancelled)."""
        from CephLandmarksLib.progress import PROGRESS_PREFIX

        from .process import failureMessage

        if self.cancelled:
            return None, None, True
        if exitCode != 0:
            return None, failureMessage(exitCode, crashed, self._lines), False
        printed = [line.strip() for line in self._lines if line.strip() and not line.startswith(PROGRESS_PREFIX)]
        return (printed[-1] if printed else None), None, False


def libraryFolder() -> str:
    """The folder holding the CephLandmarksLib this process imported (the child imports the same)."""
    import CephLandmarksLib

    return str(Path(CephLandmarksLib.__file__).resolve().parent.parent)


def _refinerItem(registry, name):
    """The listed refiner download called `name`, else None (a model, or a list that cannot be read)."""
    from CephLandmarksLib.errors import CephError
    from CephLandmarksLib.store import download

    try:
        item = download.find(name, download.downloadable(registry.downloads_list, registry.shipped_dir))
    except CephError:
        return None
    return item if item.kind == "refiner" else None


def startDownload(section, name) -> None:
    """Detect pressed on a download item: fetch the model (the Detect button cancels), then list and select it;
    for a refiner, select the model it refines (Detect with it runs the refiner while Second stage is ticked)."""
    import slicer

    from .i18n import tr as _

    registry = section.logic.registry()
    refiner = _refinerItem(registry, name)
    job = DownloadJob(section.logic.pythonSlicer(), libraryFolder(), str(registry.user_dir), name)

    def onDone(path, error, cancelled):
        section._detection = None
        section.ui.detectProgressBar.hide()
        if cancelled:
            section.ui.statusLabel.text = _("Download cancelled.")
        elif error:
            section.ui.statusLabel.text = _("Download failed.")
            slicer.util.errorDisplay(_("The model could not be downloaded: {e}").format(e=error))
        elif refiner is not None:
            section.ui.statusLabel.text = _("Second stage downloaded: {p}. Detect with {m} runs it while Second "
                                            "stage is ticked.").format(p=path, m=refiner.refines)
            section.updateModelList(select=refinedModelPath(section.logic.availableModels(), refiner.refines))
        else:
            section.ui.statusLabel.text = _("Model downloaded: {p}").format(p=path)
            section.updateModelList(select=path)
        section.updateGUIFromParameterNode()

    section._detection = job
    job.start(section.onDetectionProgress, onDone)
    section.ui.detectProgressBar.setRange(0, 100)
    section.ui.detectProgressBar.setValue(0)
    section.ui.detectProgressBar.show()
    section.ui.statusLabel.text = _("Downloading {n}...").format(n=name)
    section.updateGUIFromParameterNode()
