"""The ``ctk`` module as Slicer's PythonQt presents it (installed as sys.modules["ctk"]).

The CTK widgets a scripted module or Slicer's parameterNodeWrapper meets, with the same PythonQt rules as
the ``qt`` stand-ins (core.py): properties as attributes, signals by signature with the first-overload
rule, AttributeError for what the class lacks (e.g. ctkPathLineEdit has no ``Exists`` filter, as in CTK).
"""

from . import core
from .core import QtProperty, Signal, emit, stored
from .dialogs import QFileDialog, QMessageBox
from .inputs import QComboBox, _Ranged
from .widgets import QAbstractButton, QCheckBox, QPushButton, QWidget

__all__ = ["ctkCheckBox", "ctkCheckablePushButton", "ctkCollapsibleButton", "ctkColorPickerButton", "ctkComboBox",
           "ctkDirectoryButton", "ctkDoubleRangeSlider", "ctkDoubleSlider", "ctkDoubleSpinBox", "ctkMessageBox",
           "ctkPathLineEdit", "ctkRangeWidget", "ctkSliderWidget"]


class ctkCollapsibleButton(QAbstractButton):
    contentsCollapsed = Signal("contentsCollapsed(bool)")
    collapsed = stored("collapsed", False, bool, lambda self, old, new: emit(self, "contentsCollapsed(bool)", new))
    collapsedHeight = stored("collapsedHeight", 14, int)
    contentsFrameShape = stored("contentsFrameShape")
    buttonTextAlignment = stored("buttonTextAlignment")

    def setCollapsed(self, collapsed):
        self.collapsed = collapsed


class ctkPathLineEdit(QWidget):
    Dirs, Files, Drives, NoSymLinks, AllEntries, TypeMask = 0x1, 0x2, 0x4, 0x8, 0x7, 0xF
    Readable, Writable, Executable, PermissionMask, Modified, Hidden, System = 0x10, 0x20, 0x40, 0x70, 0x80, \
        0x100, 0x200
    AccessMask, AllDirs, CaseSensitive, NoDotAndDotDot, NoDot, NoDotDot, NoFilter = 0x3F0, 0x400, 0x800, 0x1000, \
        0x2000, 0x4000, -1
    ShowDirsOnly, DontResolveSymlinks, DontConfirmOverwrite, DontUseSheet, DontUseNativeDialog, ReadOnly, \
        HideNameFilterDetails = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
    AdjustToContents, AdjustToContentsOnFirstShow, AdjustToMinimumContentsLength = 0, 1, 2
    validInputChanged = Signal("validInputChanged(bool)")
    currentPathChanged = Signal("currentPathChanged(QString)")
    label = stored("label", "", str)
    filters = stored("filters", 0x7, int)
    currentPath = stored("currentPath", "", str,
                         lambda self, old, new: emit(self, "currentPathChanged(QString)", new))
    options = stored("options", 0, int)
    settingKey = stored("settingKey", "", str)
    showBrowseButton = stored("showBrowseButton", True, bool)
    showHistoryButton = stored("showHistoryButton", True, bool)
    sizeAdjustPolicy = stored("sizeAdjustPolicy", 1, int)
    minimumContentsLength = stored("minimumContentsLength", 0, int)
    nameFilters = stored("nameFilters", [], list)

    def setCurrentPath(self, path):
        self.currentPath = path

    def browse(self):
        """The browse button, as CTK's: files with Writable -> a Save dialog, files -> Open, else a folder."""
        start = self.currentPath
        if self.filters & ctkPathLineEdit.Files:
            if self.filters & ctkPathLineEdit.Writable:
                path = QFileDialog.getSaveFileName(self, "Select a file to save ", start, ";;".join(self.nameFilters))
            else:
                path = QFileDialog.getOpenFileName(self, "Open a file", start, ";;".join(self.nameFilters))
        else:
            path = QFileDialog.getExistingDirectory(self, "Select a directory...", start)
        if path:
            self.setCurrentPath(path)

    def addCurrentPathToHistory(self):
        pass

    retrieveHistory = addCurrentPathToHistory


class ctkCheckBox(QCheckBox):
    indicatorIcon = stored("indicatorIcon")


class ctkComboBox(QComboBox):
    defaultText = stored("defaultText", "", str)
    forceDefault = stored("forceDefault", False, bool)


class _DoubleRanged(_Ranged):
    _integer, _initial = False, (0.0, 99.0, 0.0)
    singleStep = stored("singleStep", 1.0, float)
    pageStep = stored("pageStep", 10.0, float)

    def setDecimals(self, decimals):
        self._decimals = int(decimals)
        self.setRange(self._min, self._max)

    decimals = QtProperty(lambda self: self._decimals, setDecimals)


class ctkSliderWidget(_DoubleRanged):
    valueChanged = Signal("valueChanged(double)")
    valueIsChanging = Signal("valueIsChanging(double)")
    _value_signals = ("valueChanged(double)",)
    prefix = stored("prefix", "", str)
    suffix = stored("suffix", "", str)
    tracking = stored("tracking", True, bool)
    spinBoxVisible = stored("spinBoxVisible", True, bool)


class ctkDoubleSpinBox(_DoubleRanged):
    valueChanged = Signal("valueChanged(double)", "valueChanged(QString)")
    editingFinished = Signal("editingFinished()")
    decimalsChanged = Signal("decimalsChanged(int)")
    _value_signals = ("valueChanged(double)", "valueChanged(QString)")
    prefix = stored("prefix", "", str)
    suffix = stored("suffix", "", str)


class ctkDoubleSlider(_Ranged):
    valueChanged = Signal("valueChanged(double)")
    sliderMoved = Signal("sliderMoved(double)")
    rangeChanged = Signal("rangeChanged(double,double)")
    _integer, _initial, _value_signals = False, (0.0, 99.0, 0.0), ("valueChanged(double)",)
    orientation = stored("orientation", 1)

    def _round(self, v):
        return float(core.convert(v, float, "ctkDoubleSlider value"))


class _RangePair(_Ranged):
    _integer, _initial, _value_signals = False, (0.0, 99.0, 0.0), ()
    valuesChanged = Signal("valuesChanged(double,double)")
    minimumValueChanged = Signal("minimumValueChanged(double)")
    maximumValueChanged = Signal("maximumValueChanged(double)")
    rangeChanged = Signal("rangeChanged(double,double)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._low, self._high = 0.0, 99.0

    def setValues(self, low, high):
        low, high = sorted((min(max(self._round(low), self._min), self._max),
                            min(max(self._round(high), self._min), self._max)))
        changed = (low, high) != (self._low, self._high)
        old, self._low, self._high = (self._low, self._high), low, high
        if low != old[0]:
            emit(self, "minimumValueChanged(double)", low)
        if high != old[1]:
            emit(self, "maximumValueChanged(double)", high)
        if changed:
            emit(self, "valuesChanged(double,double)", low, high)

    def setRange(self, minimum, maximum):
        super().setRange(minimum, maximum)
        self.setValues(self._low, self._high)

    minimumValue = QtProperty(lambda self: self._low, lambda self, v: self.setValues(v, max(v, self._high)))
    maximumValue = QtProperty(lambda self: self._high, lambda self, v: self.setValues(min(v, self._low), v))


class ctkRangeWidget(_RangePair):
    singleStep = stored("singleStep", 1.0, float)

    def setDecimals(self, decimals):
        self._decimals = int(decimals)
        self.setRange(self._min, self._max)

    decimals = QtProperty(lambda self: self._decimals, setDecimals)


class ctkDoubleRangeSlider(_RangePair):
    singleStep = stored("singleStep", 1.0, float)

    def _round(self, v):
        return float(core.convert(v, float, "ctkDoubleRangeSlider value"))


class ctkDirectoryButton(QWidget):
    directoryChanged = Signal("directoryChanged(QString)")
    directorySelected = Signal("directorySelected(QString)")
    directory = stored("directory", "", str, lambda self, old, new: emit(self, "directoryChanged(QString)", new))
    caption = stored("caption", "", str)
    text = stored("text", "", str)


class ctkColorPickerButton(QPushButton):
    colorChanged = Signal("colorChanged(QColor)")
    color = stored("color", None, None, lambda self, old, new: emit(self, "colorChanged(QColor)", new))
    displayColorName = stored("displayColorName", True, bool)


class ctkCheckablePushButton(QPushButton):
    checkBoxToggled = Signal("checkBoxToggled(bool)")
    checkBoxControlsButton = stored("checkBoxControlsButton", True, bool)
    checkBoxControlsButtonToggleState = stored("checkBoxControlsButtonToggleState", False, bool)
    checkState = stored("checkState", 0, int)


class ctkMessageBox(QMessageBox):
    dontShowAgain = stored("dontShowAgain", False, bool)
    dontShowAgainVisible = stored("dontShowAgainVisible", False, bool)
    dontShowAgainSettingsKey = stored("dontShowAgainSettingsKey", "", str)

    def exec_(self):
        """A remembered "don't show again" answer (QSettings) is returned without showing the box."""
        if self.dontShowAgainSettingsKey:
            saved = core.state.settings.get(self.dontShowAgainSettingsKey, 0)
            if saved:
                return int(saved)
        return super().exec_()

    exec = exec_
