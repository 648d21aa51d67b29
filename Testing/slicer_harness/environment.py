"""The headless Slicer application: slicer.app, slicer.mrmlScene, slicer.modules, PythonSlicer, module loading.

install_slicer_environment() puts slicer-core's ``slicer`` package (real MRML) on the path, appends Slicer
5.12's own Python layer (read from ../shared/slicer-5.12, never copied) to ``slicer.__path__`` and loads
its ``util.py`` and ``i18n.py`` in place of slicer-core's newer util, gives ``qt``/``ctk``/``slicer.q*``
stand-ins, a ``slicer.app`` stand-in and a real vtkMRMLScene with the application, colour and markups logics.
A scripted module is imported from an *installed* qt-scripted-modules folder with the source tree and the
editable install of its packages out of the way, as the Extensions Manager would give it to a user.
No bytecode is written meanwhile, by this process or the processes it starts (sys.dont_write_bytecode,
PYTHONDONTWRITEBYTECODE): the installed folder is shared by every test of the process and checked file by
file (test_extension_build.py), so imports must leave no ``__pycache__`` in it.
teardown() restores sys.path, sys.meta_path, sys.modules, the ``slicer`` module, sys.dont_write_bytecode,
os.environ and the cwd.
"""

import importlib
import importlib.util
import os
import shlex
import sys
import tempfile
import types
from pathlib import Path

from . import core, ctk, mrml_widgets, process, qt
from .core import QObject, Signal, emit, readonly

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_SLICER = REPO_ROOT.parent / "shared" / "slicer-5.12"
SLICER_PYTHON = SHARED_SLICER / "Base" / "Python" / "slicer"


def missing_reason():
    """Why a harness cannot be installed here (None when it can)."""
    if not (SLICER_PYTHON / "ScriptedLoadableModule.py").is_file():
        return f"Slicer 5.12's Python layer not found at {SLICER_PYTHON}"
    if importlib.util.find_spec("slicer_core") is None:
        return "slicer-core (PyPI) is not installed"
    return None


class qSlicerModuleManager(QObject):
    moduleAboutToBeUnloaded = Signal("moduleAboutToBeUnloaded(QString)")
    moduleLoaded = Signal("moduleLoaded(QString)")


class qSlicerMainWindow(qt.QMainWindow):
    pass


class _SliceWidget:
    def __init__(self, sliceNode):
        self._node = sliceNode

    def mrmlSliceNode(self):
        return self._node


class qSlicerLayoutManager(QObject):
    """Slice views Red/Yellow/Green backed by slice nodes in the scene; no rendering."""

    def __init__(self, scene):
        super().__init__()
        self._scene, self.layout = scene, 3

    def sliceViewNames(self):
        return ["Red", "Yellow", "Green"]

    def sliceWidget(self, name):
        node = self._scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        return _SliceWidget(node) if node is not None else None

    def mrmlSliceLogics(self):
        import vtk

        return vtk.vtkCollection()

    def setLayout(self, layout):
        self.layout = layout


class qSlicerCoreIOManager(QObject):
    """Loads volumes with the real vtkSlicerVolumesLogic (as qSlicerVolumesReader does). Only what
    slicer-core's readers handle (NRRD, NIfTI, MetaImage...; not PNG/JPEG) loads; other file types fail."""

    def __init__(self, scene):
        super().__init__()
        import slicer

        self._scene, self._volumes = scene, slicer.vtkSlicerVolumesLogic()
        self._volumes.SetMRMLApplicationLogic(scene._harnessKeepAlive[0])  # its colour logic, as in Slicer
        self._volumes.SetMRMLScene(scene)

    def fileType(self, fileName):
        return "VolumeFile"

    def loadNodes(self, fileType, properties, loadedNodes=None, userMessages=None):
        fileName = properties["fileName"]
        node = None
        if fileType == "VolumeFile":
            name = properties.get("name") or Path(fileName).name.split(".")[0]
            options = sum(bit for key, bit, default in (("labelmap", 1, False), ("center", 2, False),
                                                         ("singleFile", 4, False), ("autoWindowLevel", 8, True),
                                                         ("discardOrientation", 16, False))
                          if properties.get(key, default))
            node = self._volumes.AddArchetypeVolume(fileName, name, options)
        if node is None:
            if userMessages is not None:
                import vtk

                userMessages.AddMessage(vtk.vtkCommand.ErrorEvent,
                                        f"The harness could not read {fileName} as {fileType}")
            return False
        if properties.get("show", True):
            selection = self._scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
            if selection is not None:
                selection.SetActiveVolumeID(node.GetID())
                self._scene._harnessKeepAlive[0].PropagateVolumeSelection(0)
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True


class qSlicerApplication(QObject):
    """What scripted modules and Slicer's util.py use of slicer.app (startupCompleted() is never emitted)."""

    startupCompleted = Signal("startupCompleted()")

    applicationName = readonly(lambda self: "Slicer")
    applicationVersion = readonly(lambda self: "5.12.3")
    majorVersion = readonly(lambda self: 5)
    minorVersion = readonly(lambda self: 12)
    documentationBaseUrl = readonly(lambda self: "https://slicer.readthedocs.io/en/5.12/")
    slicerUserSettingsFilePath = readonly(lambda self: self._settings_file)
    slicerRevisionUserSettingsFilePath = readonly(lambda self: self._settings_file)
    temporaryPath = readonly(lambda self: self._temporary)

    def __init__(self, harness):
        super().__init__()
        self._harness, self._testing = harness, False
        self._settings_file = str(harness.root / "settings" / "Slicer.ini")
        self._temporary = str(harness.root / "temp")
        self._module_manager, self._main_window = qSlicerModuleManager(), qSlicerMainWindow()
        self._main_window.objectName = "qSlicerMainWindow"
        self._layout_manager = qSlicerLayoutManager(harness.scene)
        self._io_manager = qSlicerCoreIOManager(harness.scene)

    def testingEnabled(self):
        return self._testing

    def setTestingEnabled(self, enabled):
        self._testing = bool(enabled)

    def applicationFilePath(self):
        return str(self._harness.bin_dir / "Slicer")

    def applicationDirPath(self):
        return str(self._harness.bin_dir)

    def moduleManager(self):
        return self._module_manager

    def mrmlScene(self):
        return self._harness.scene

    def coreIOManager(self):
        return self._io_manager

    ioManager = coreIOManager

    def layoutManager(self):
        return self._layout_manager

    def topLevelWidgets(self):
        return [self._main_window]

    def processEvents(self, *flags):
        process.process_events_once()

    setOverrideCursor = staticmethod(qt.QApplication.setOverrideCursor)
    restoreOverrideCursor = staticmethod(qt.QApplication.restoreOverrideCursor)
    overrideCursor = staticmethod(qt.QApplication.overrideCursor)
    keyboardModifiers = staticmethod(qt.QApplication.keyboardModifiers)

    def settings(self):
        return qt.QSettings()

    userSettings = revisionUserSettings = settings

    def translate(self, context, text):
        return text

    def moduleDocumentationUrl(self, moduleName):
        return self.documentationBaseUrl + f"user_guide/modules/{moduleName.lower()}.html"


def headless_scene(cache_dir):
    """A vtkMRMLScene with the application, colour and markups logics registered (as Slicer does), and
    the Red/Yellow/Green slice and slice-composite nodes a layout would create."""
    import slicer

    scene = slicer.vtkMRMLScene()
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(cache_dir))
    io = slicer.vtkDataIOManager()
    io.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(io)
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLApplicationLogic(app_logic)
    markups.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Markups", markups)
    app_logic.SetModuleLogic("Colors", app_logic.GetColorLogic())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        for class_name in ("vtkMRMLSliceNode", "vtkMRMLSliceCompositeNode"):
            node = scene.CreateNodeByClass(class_name)  # with the scene's defaults (orientation presets)
            node.UnRegister(None)
            node.SetName(name)
            node.SetLayoutName(name)
            node.SetSingletonTag(name)
            if isinstance(node, slicer.vtkMRMLSliceNode):
                node.SetOrientation(orientation)
            scene.AddNode(node)
    scene._harnessKeepAlive = (app_logic, markups, cache, io)  # the logics live as long as the scene
    return scene


class _ModuleObject:
    """slicer.modules.markups: logic() is the scene's markups logic."""

    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


_PYTHON_SLICER = """#!/bin/sh
# PythonSlicer stand-in (Testing/slicer_harness): the test's Python with the installed qt-scripted-modules
# folder first on PYTHONPATH, as Slicer's launcher sets it. Like the real launcher (CTKAppLauncher), it
# runs Python as its CHILD process (no exec): killing the launcher alone leaves Python running.
{pythonpath}{python} "$@"
status=$?
exit $status
"""


class Harness:
    """One headless Slicer. See the package docstring (slicer_harness/__init__.py) for the API."""

    def __init__(self, tmp_dir, scripted_modules_dir=None):
        self.root = Path(tmp_dir)
        self.scripted_modules_dir = Path(scripted_modules_dir).resolve() if scripted_modules_dir else None
        self.bin_dir = self.root / "bin"
        self.python_slicer = self.bin_dir / "PythonSlicer"
        self.modules, self.widgets = {}, {}
        self._installed = False

    # recorded by the stand-ins
    slot_errors = property(lambda self: self.state.slot_errors)
    message_boxes = property(lambda self: self.state.message_boxes)
    file_dialogs = property(lambda self: self.state.file_dialogs)
    opened_urls = property(lambda self: self.state.opened_urls)
    settings = property(lambda self: self.state.settings)
    override_cursor_depth = property(lambda self: self.state.override_cursor_depth)

    def queue_answer(self, *answers):
        """Answers for the next message boxes: a qt.QMessageBox StandardButton value or a button's text."""
        self.state.answers.extend(answers)

    def queue_file_dialog(self, *paths):
        """Answers for the next QFileDialog.get* calls ("" = cancelled; a list for getOpenFileNames)."""
        self.state.file_dialog_answers.extend(paths)

    def process_events(self, until=None, timeout_s=60.0):
        """Run the event loop until until() is true (None: until idle); TimeoutError after timeout_s."""
        process.process_events(until, timeout_s)

    def cli_environment(self):
        """Variables for a bare ``python -m CephLandmarksLib`` over the installed folder, as a user's script
        would run the CLI: a minimal PATH, that folder on PYTHONPATH and, as everywhere under the harness,
        no bytecode written into it."""
        return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.scripted_modules_dir), "PYTHONDONTWRITEBYTECODE": "1"}

    # --- install / teardown ----------------------------------------------------------------------

    def install(self):
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        import slicer

        self._saved_modules, self._slicer_dict = dict(sys.modules), dict(vars(slicer))
        self._sys_path, self._meta_path = list(sys.path), list(sys.meta_path)
        self._environ, self._cwd = dict(os.environ), os.getcwd()
        self._dont_write_bytecode = sys.dont_write_bytecode
        self._installed = True
        sys.dont_write_bytecode = True  # the installed folder stays as installed (module docstring)
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # and so for PythonSlicer and every process started
        self.state = core.reset_state()
        for d in (self.bin_dir, self.root / "settings", self.root / "temp", self.root / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        os.chdir(self.root)  # Slicer's working directory is not the source tree
        self._isolate_imports()

        for name in [k for k in sys.modules if k.startswith("slicer.") and not k.startswith("slicer.slicer_core")]:
            del sys.modules[name]
        sys.modules["qt"], sys.modules["ctk"] = qt, ctk
        slicer.__path__ = [*slicer.__path__, str(SLICER_PYTHON)]
        for name in ("modules", "moduleNames"):
            module = types.ModuleType(f"slicer.{name}")
            sys.modules[f"slicer.{name}"] = module
            setattr(slicer, name, module)
        for name in ("qMRMLWidget", "qSlicerWidget", "qMRMLNodeComboBox", "qMRMLTableView", "qMRMLSliderWidget",
                     "qMRMLSpinBox", "qMRMLRangeWidget", "qSlicerScriptedLoadableModuleWidget",
                     "qSlicerScriptedLoadableModule"):
            setattr(slicer, name, getattr(mrml_widgets, name))
        self.scene = headless_scene(self.root / "cache")
        slicer.mrmlScene = self.scene
        slicer.app = self.app = qSlicerApplication(self)
        slicer.modules.markups = _ModuleObject(self.scene._harnessKeepAlive[1])
        for name in ("i18n", "util"):  # Slicer 5.12's, not slicer-core's newer util.py
            spec = importlib.util.spec_from_file_location(f"slicer.{name}", SLICER_PYTHON / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            setattr(slicer, name, module)
        for name in ("ScriptedLoadableModule", "parameterNodeWrapper"):
            setattr(slicer, name, importlib.import_module(f"slicer.{name}"))
        for name in ("util", "i18n", "ScriptedLoadableModule", "parameterNodeWrapper"):
            origin = Path(getattr(slicer, name).__file__).resolve()
            if SLICER_PYTHON.resolve() not in origin.parents:
                raise RuntimeError(f"slicer.{name} resolved to {origin}, not Slicer 5.12's")
        self._write_launchers()
        return self

    def _write_launchers(self):
        pythonpath = ""
        if self.scripted_modules_dir is not None:
            pythonpath = (f"PYTHONPATH={shlex.quote(str(self.scripted_modules_dir))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
                          "export PYTHONPATH\n")
        self.python_slicer.write_text(_PYTHON_SLICER.format(pythonpath=pythonpath, python=shlex.quote(sys.executable)))
        (self.bin_dir / "Slicer").write_text("#!/bin/sh\necho 'the Slicer application is not available in the "
                                             "headless harness' >&2\nexit 1\n")
        for path in (self.python_slicer, self.bin_dir / "Slicer"):
            path.chmod(0o755)
        os.environ["PATH"] = str(self.bin_dir) + os.pathsep + os.environ.get("PATH", "")

    def _installed_names(self):
        d = self.scripted_modules_dir
        if d is None:
            return set()
        return {p.stem for p in d.glob("*.py")} | {p.name for p in d.iterdir() if (p / "__init__.py").is_file()}

    def _isolate_imports(self):
        """The installed copies win: no sys.path entry, editable finder or imported module shadows them."""
        names, installed = self._installed_names(), self.scripted_modules_dir
        if not names:
            return

        def shadows(entry):
            folder = Path(entry or os.getcwd()).resolve()
            return folder != installed and any((folder / n).exists() or (folder / f"{n}.py").exists()
                                               for n in names)

        sys.path[:] = [str(installed)] + [p for p in sys.path if not shadows(p)]
        sys.meta_path[:] = [f for f in sys.meta_path
                            if not set(getattr(sys.modules.get(getattr(f, "__module__", "")), "MAPPING", {})) & names]
        for name in [k for k in sys.modules if k.split(".")[0] in names]:
            del sys.modules[name]
        importlib.invalidate_caches()

    def teardown(self):
        if not self._installed:
            return
        self._installed = False
        try:
            for name in self.modules:
                emit(self.app.moduleManager(), "moduleAboutToBeUnloaded(QString)", name)
        finally:
            process.shutdown()
            import slicer

            names = self._installed_names()
            for key in list(sys.modules):
                if key not in self._saved_modules and (key in ("qt", "ctk") or key.startswith("slicer.")
                                                       or key.split(".")[0] in names):
                    del sys.modules[key]
            for key, module in self._saved_modules.items():
                if sys.modules.get(key) is not module:
                    sys.modules[key] = module
            vars(slicer).clear()
            vars(slicer).update(self._slicer_dict)
            sys.path[:], sys.meta_path[:] = self._sys_path, self._meta_path
            sys.dont_write_bytecode = self._dont_write_bytecode
            os.environ.clear()
            os.environ.update(self._environ)
            os.chdir(self._cwd)
            importlib.invalidate_caches()
            self.scene = self.app = None
            core.reset_state()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()

    # --- modules -----------------------------------------------------------------------------------

    def load_module(self, name):
        """Import <name>.py from the installed folder, instantiate <name>(parent) and register it in
        slicer.modules (``<name lower>``, ``<name>Instance``); returns the Python module."""
        import slicer

        if name in self.modules:
            return self.modules[name]
        if self.scripted_modules_dir is None:
            raise RuntimeError("install_slicer_environment(..., scripted_modules_dir) was not given")
        path = self.scripted_modules_dir / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for other in self._installed_names() - {name}:
            found = importlib.util.find_spec(other)
            origin = Path(found.origin).resolve() if found is not None and found.origin else None
            if origin is None or self.scripted_modules_dir not in origin.parents:
                raise RuntimeError(f"{other} resolves to {origin}, not to the installed {self.scripted_modules_dir}")
        parent = mrml_widgets.qSlicerScriptedLoadableModule(name, path)
        instance = getattr(module, name)(parent)
        setattr(slicer.modules, name.lower(), parent)
        setattr(slicer.modules, f"{name}Instance", instance)
        setattr(slicer.moduleNames, name, name)
        self.modules[name] = module
        return module

    def create_widget(self, name):
        """The module panel as Slicer builds it: <name>Widget(parent), setup(), then enter()."""
        import slicer

        module = self.load_module(name)
        panel = mrml_widgets.qSlicerScriptedLoadableModuleWidget()
        panel.setLayout(qt.QVBoxLayout())
        panel.setMRMLScene(self.scene)
        widget = getattr(module, f"{name}Widget")(panel)
        panel._python = widget
        getattr(slicer.modules, name.lower())._widget = panel
        setattr(slicer.modules, f"{name}Widget", widget)
        widget.setup()
        panel._entered = True
        widget.enter()
        self.widgets[name] = widget
        return widget


def install_slicer_environment(tmp_dir=None, scripted_modules_dir=None):
    """Install a headless Slicer in this process and return its Harness (call teardown() when done)."""
    harness = Harness(tmp_dir or tempfile.mkdtemp(prefix="slicer-harness-"), scripted_modules_dir)
    try:
        return harness.install()
    except BaseException:
        harness.teardown()  # undo what a failed install changed
        raise
