"""The ``qt`` module as Slicer's PythonQt presents it, for headless tests (installed as sys.modules["qt"]).

It gathers the stand-ins (see core.py for the PythonQt signal/slot/property rules, process.py for QTimer,
QProcess and QByteArray, widgets.py/inputs.py for widgets, dialogs.py for message boxes and file dialogs,
uiloader.py for QUiLoader) and adds small value classes. Only names real PythonQt has are exported, so a
misspelt ``qt.QSomething`` raises AttributeError as it would in Slicer.
"""

import os
import struct

from . import core
from .core import QObject
from .dialogs import QDialog, QFileDialog, QMessageBox
from .inputs import (
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHeaderView,
    QItemSelectionModel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QModelIndex,
    QProgressBar,
    QSlider,
    QSpinBox,
    QStatusBar,
    QTableView,
)
from .process import QByteArray, QProcess, QProcessEnvironment, QTimer
from .uiloader import QFile, QIODevice, QUiLoader
from .widgets import (
    QAbstractButton,
    QBoxLayout,
    QCheckBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSize,
    QSizePolicy,
    QSpacerItem,
    QTextBrowser,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = [
    "QAbstractButton", "QAbstractItemView", "QAbstractSlider", "QAbstractSpinBox", "QApplication", "QBoxLayout",
    "QByteArray", "QCheckBox", "QColor", "QComboBox", "QCursor", "QDesktopServices", "QDialog", "QDoubleSpinBox",
    "QFile", "QFileDialog", "QFormLayout", "QFrame", "QGridLayout", "QGroupBox", "QHBoxLayout", "QHeaderView",
    "QIODevice", "QIcon", "QItemSelectionModel", "QLabel", "QLayout", "QLineEdit", "QListWidget",
    "QListWidgetItem", "QMainWindow", "QMessageBox", "QModelIndex", "QObject", "QPixmap", "QPlainTextEdit",
    "QProcess", "QProcessEnvironment", "QProgressBar", "QPushButton", "QRadioButton", "QSettings", "QSize",
    "QSizePolicy", "QSlider", "QSpacerItem", "QSpinBox", "QStatusBar", "QTableView", "QTextBrowser", "QTextEdit",
    "QTimer", "QToolButton", "QUiLoader", "QUrl", "QVBoxLayout", "QWidget", "Qt",
]


class Qt:
    ArrowCursor, WaitCursor, BusyCursor = 0, 3, 16
    AlignLeft, AlignRight, AlignHCenter, AlignJustify = 0x1, 0x2, 0x4, 0x8
    AlignTop, AlignBottom, AlignVCenter, AlignCenter = 0x20, 0x40, 0x80, 0x84
    Horizontal, Vertical = 1, 2
    Unchecked, PartiallyChecked, Checked = 0, 1, 2
    DisplayRole, DecorationRole, EditRole, ToolTipRole, UserRole = 0, 1, 2, 3, 0x100
    NoModifier, ShiftModifier, ControlModifier, AltModifier = 0, 0x02000000, 0x04000000, 0x08000000
    PlainText, RichText, AutoText = 0, 1, 2
    IgnoreAspectRatio, KeepAspectRatio = 0, 1
    FastTransformation, SmoothTransformation = 0, 1
    TextSelectableByMouse, LinksAccessibleByMouse, TextBrowserInteraction = 1, 4, 13
    ScrollBarAsNeeded, ScrollBarAlwaysOff, ScrollBarAlwaysOn = 0, 1, 2


class QCursor:
    def __init__(self, shape=Qt.ArrowCursor):
        self._shape = shape

    def shape(self):
        return self._shape


class QApplication(QObject):
    """Static helpers only; ``slicer.app`` is the application object."""

    @staticmethod
    def setOverrideCursor(cursor):
        core.state.override_cursor_depth += 1

    @staticmethod
    def restoreOverrideCursor():
        core.state.override_cursor_depth = max(0, core.state.override_cursor_depth - 1)

    @staticmethod
    def overrideCursor():
        return QCursor(Qt.WaitCursor) if core.state.override_cursor_depth else None

    @staticmethod
    def processEvents(*flags):
        from .process import process_events_once

        process_events_once()

    @staticmethod
    def keyboardModifiers():
        return Qt.NoModifier


class QSettings(QObject):
    """Backed by the harness's dict (shared by every QSettings, slicer.app.settings() and userSettings())."""

    IniFormat, NativeFormat = 1, 0

    def __init__(self, *args):
        super().__init__()
        self._group = ""

    def _key(self, key):
        return self._group + key

    def value(self, key, defaultValue=None):
        return core.state.settings.get(self._key(key), defaultValue)

    def setValue(self, key, value):
        core.state.settings[self._key(key)] = value

    def contains(self, key):
        return self._key(key) in core.state.settings

    def remove(self, key):
        for k in [k for k in core.state.settings if k == self._key(key) or k.startswith(self._key(key) + "/")]:
            del core.state.settings[k]

    def allKeys(self):
        return [k[len(self._group):] for k in core.state.settings if k.startswith(self._group)]

    def beginGroup(self, prefix):
        self._group += prefix.strip("/") + "/"

    def endGroup(self):
        self._group = "/".join(self._group.rstrip("/").split("/")[:-1])
        self._group += "/" if self._group else ""

    def sync(self):
        pass


class QIcon:
    def __init__(self, path=""):
        self._path = str(path) if not isinstance(path, QIcon) else path._path

    def isNull(self):
        return not self._path


class QPixmap:
    def __init__(self, path="", *args):
        self._path, self._size = str(path), (0, 0)
        if self._path and os.path.isfile(self._path):
            with open(self._path, "rb") as f:
                head = f.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                self._size = struct.unpack(">II", head[16:24])
            else:
                self._size = (1, 1)  # the harness reads PNG sizes only

    def isNull(self):
        return self._size == (0, 0)

    def width(self):
        return self._size[0]

    def height(self):
        return self._size[1]

    def scaledToWidth(self, width, mode=None):
        scaled = QPixmap()
        scaled._path = self._path
        if not self.isNull():
            scaled._size = (int(width), max(1, round(self._size[1] * width / self._size[0])))
        return scaled

    def scaled(self, width, height, *modes):
        scaled = QPixmap()
        scaled._path, scaled._size = self._path, (0, 0) if self.isNull() else (int(width), int(height))
        return scaled


class QColor:
    HexRgb, HexArgb = 0, 1

    def __init__(self, *args):
        self._rgba, self._valid = [0, 0, 0, 255], bool(args)
        if len(args) == 1 and isinstance(args[0], str):
            self.setNamedColor(args[0])
        elif len(args) == 1 and isinstance(args[0], QColor):
            self._rgba, self._valid = list(args[0]._rgba), args[0]._valid
        elif len(args) in (3, 4):
            self._rgba = [int(v) for v in args] + ([255] if len(args) == 3 else [])

    def setNamedColor(self, name):
        h = name.lstrip("#")
        self._valid = len(h) in (6, 8) and all(c in "0123456789abcdefABCDEF" for c in h)
        if self._valid:
            values = [int(h[i:i + 2], 16) for i in range(0, len(h), 2)]
            self._rgba = values + [255] if len(h) == 6 else values[1:] + values[:1]

    def isValid(self):
        return self._valid

    def name(self, format=0):
        r, g, b, a = self._rgba
        return f"#{a:02x}{r:02x}{g:02x}{b:02x}" if format == QColor.HexArgb else f"#{r:02x}{g:02x}{b:02x}"

    def red(self):
        return self._rgba[0]

    def green(self):
        return self._rgba[1]

    def blue(self):
        return self._rgba[2]

    def alpha(self):
        return self._rgba[3]

    def setRgb(self, r, g, b, a=255):
        self._rgba, self._valid = [r, g, b, a], True

    def setRed(self, v):
        self._rgba[0] = v

    def setGreen(self, v):
        self._rgba[1] = v

    def setBlue(self, v):
        self._rgba[2] = v

    def setAlpha(self, v):
        self._rgba[3] = v

    def getRgb(self):
        return tuple(self._rgba)

    def __eq__(self, other):
        return isinstance(other, QColor) and (other._rgba, other._valid) == (self._rgba, self._valid)


class QUrl:
    TolerantMode, StrictMode = 0, 1

    def __init__(self, url="", mode=0):
        self._url = str(url)

    @staticmethod
    def fromLocalFile(path):
        return QUrl("file://" + os.path.abspath(path))

    def toString(self):
        return self._url

    def toLocalFile(self):
        return self._url[len("file://"):] if self._url.startswith("file://") else ""

    def isLocalFile(self):
        return self._url.startswith("file://")


class QDesktopServices:
    @staticmethod
    def openUrl(url):
        """Recorded in harness.opened_urls; nothing is opened."""
        core.state.opened_urls.append(url.toString() if isinstance(url, QUrl) else str(url))
        return True
