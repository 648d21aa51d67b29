"""Headless Slicer harness: run a scripted module on Slicer 5.12's real Python layer in a test.

Real: MRML (PyPI slicer-core), Slicer 5.12's ``slicer.util``, ``slicer.i18n``, ``slicer.ScriptedLoadableModule``
and ``slicer.parameterNodeWrapper`` (read from ``../shared/slicer-5.12``, never copied into the repository).
Stand-ins, strict where PythonQt is strict: ``qt``, ``ctk``, the ``slicer.q*`` MRML widgets, ``slicer.app``
and the ``PythonSlicer`` launcher. Rules enforced are listed in each stand-in module's docstring.

Usage::

    from slicer_harness import install_slicer_environment, missing_reason

    if missing_reason():
        pytest.skip(missing_reason())
    harness = install_slicer_environment(tmp_path, installed / "lib/Slicer-5.12/qt-scripted-modules")
    try:
        module = harness.load_module("CephLandmarks")      # the Python module, imported from the installed copy
        widget = harness.create_widget("CephLandmarks")    # <Name>Widget(panel), setup(), enter()
        harness.queue_file_dialog("/path/to/image.png")    # next QFileDialog.get* answer ("" = cancel)
        harness.queue_answer(qt.QMessageBox.Cancel)        # next message box answer (StandardButton or text)
        widget.ui.detectButton.click()                     # signals run the module's slots
        harness.process_events(until=lambda: not widget.logic.detectionRunning, timeout_s=120)
        assert harness.message_boxes == [] and harness.slot_errors == []
    finally:
        harness.teardown()                                 # or: with install_slicer_environment(...) as harness:

Harness API:

- ``install_slicer_environment(tmp_dir=None, scripted_modules_dir=None) -> Harness``: installs in this process.
  sys.path, sys.meta_path, sys.modules, the ``slicer`` module, os.environ and the cwd are restored by
  ``teardown()``. One harness at a time. No bytecode is written while it is installed (this process and the
  processes it starts): the installed folder stays exactly as installed.
- ``missing_reason()``: None, or why no harness can be installed (no ../shared/slicer-5.12, no slicer-core).
- ``harness.load_module(name)``, ``harness.create_widget(name)``: see above; the widget's panel is
  ``slicer.modules.<name lower>.widgetRepresentation()`` with ``isEntered`` true.
- ``harness.cli_environment()``: the variables for a plain ``python -m CephLandmarksLib`` subprocess over the
  installed folder (minimal PATH, that folder on PYTHONPATH, no bytecode written).
- ``harness.process_events(until=None, timeout_s=60)``: the event loop (timers, QProcess signals); None
  waits until no timer is active and no process pending; TimeoutError names what was awaited.
  ``slicer.app.processEvents()`` runs one pass.
- Recorded: ``harness.message_boxes`` (dicts: kind "error"/"warning"/"question"/"information"/"none"/"dialog",
  class, title, text, informativeText, detailedText, buttons, answer, waitCursor), ``harness.file_dialogs``,
  ``harness.slot_errors`` (exceptions raised in slots, printed and swallowed as PythonQt does),
  ``harness.opened_urls``, ``harness.settings`` (the QSettings dict), ``harness.override_cursor_depth``.
- ``harness.app`` (slicer.app; ``setTestingEnabled(True)`` makes util's displays log instead of show),
  ``harness.scene`` (slicer.mrmlScene), ``harness.python_slicer`` (the PythonSlicer stub, first on PATH and
  beside ``slicer.app.applicationFilePath()``; like Slicer's launcher, it runs this Python as its child
  process with scripted_modules_dir first on PYTHONPATH), ``harness.root`` (the temp folder, also the cwd).
- Test helpers on stand-ins (snake_case, not Qt API): ``QTableView.click_cell(row, column=0)``,
  ``QItemSelectionModel.select_rows(rows)``. Qt's own ``QAbstractButton.click()`` works (not when disabled).
"""

from .environment import SHARED_SLICER, Harness, install_slicer_environment, missing_reason

__all__ = ["SHARED_SLICER", "Harness", "install_slicer_environment", "missing_reason"]
