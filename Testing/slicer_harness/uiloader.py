"""QFile and QUiLoader stand-ins: a Designer .ui file becomes a tree of stand-in widgets.

Strict where a typo would otherwise go unnoticed: a widget class the harness does not know, a Qt property
the class does not declare, or a value type the loader does not read raises (real Slicer would fall back
to QWidget or ignore the property). Dynamic properties (``stdset="0"``, e.g. SlicerParameterName) are set
with setProperty. Layouts parent their items to the enclosing widget. ``<connections>`` are made with
connect(signal, receiver.slot), so ``mrmlSceneChanged(vtkMRMLScene*)`` -> ``setMRMLScene(vtkMRMLScene*)``
propagates the scene as in Slicer. The file must have been opened (``QFile.open``), as QUiLoader reads it.
"""

import os
import xml.etree.ElementTree as ET

from .core import QObject, QtProperty, normalize
from .widgets import QLayout, QSize, QSizePolicy, QWidget


class QIODevice:
    NotOpen, ReadOnly, WriteOnly, ReadWrite, Append, Truncate, Text = 0, 1, 2, 3, 4, 8, 16


class QFile(QIODevice):
    def __init__(self, path=""):
        self._path, self._mode = str(path), QIODevice.NotOpen

    def fileName(self):
        return self._path

    def exists(self):
        return os.path.exists(self._path)

    def open(self, mode):
        if mode & QIODevice.ReadOnly and not os.path.isfile(self._path):
            return False
        self._mode = mode
        return True

    def isOpen(self):
        return self._mode != QIODevice.NotOpen

    def readAll(self):
        from .process import QByteArray

        if not self._mode & QIODevice.ReadOnly:
            raise OSError(f"QFile {self._path} is not open for reading")
        with open(self._path, "rb") as f:
            return QByteArray(f.read())

    def close(self):
        self._mode = QIODevice.NotOpen


def known_classes():
    """Widget and layout classes by name, from the qt, ctk and slicer stand-ins."""
    from . import ctk, mrml_widgets, qt

    classes = {}
    for module in (qt, ctk, mrml_widgets):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, QObject) and value.__name__ == name:
                classes[name] = value
    return classes


def _enum(text, classes):
    """'Qt::AlignCenter' or 'ctkPathLineEdit::Dirs|ctkPathLineEdit::Files' -> int; unknown names stay text."""
    from . import qt

    total = 0
    for part in text.split("|"):
        scope, _, name = part.strip().rpartition("::")
        owner = qt.Qt if scope == "Qt" else classes.get(scope)
        value = getattr(owner, name, None) if owner is not None else None
        if not isinstance(value, int):
            return text
        total |= value
    return total


def _value(element, classes):
    tag, text = element.tag, element.text or ""
    if tag in ("string", "cstring"):
        return text
    if tag == "bool":
        return text == "true"
    if tag == "number":
        return int(text)
    if tag in ("double", "float"):
        return float(text)
    if tag == "stringlist":
        return [s.text or "" for s in element.findall("string")]
    if tag in ("enum", "set"):
        return _enum(text, classes)
    if tag == "size":
        return QSize(int(element.findtext("width")), int(element.findtext("height")))
    if tag == "rect":
        return tuple(int(element.findtext(k)) for k in ("x", "y", "width", "height"))
    if tag == "sizepolicy":
        return QSizePolicy(element.get("hsizetype"), element.get("vsizetype"))
    if tag in ("iconset", "pixmap"):
        from . import qt

        return qt.QIcon(element.findtext("normaloff") or text)
    raise NotImplementedError(f"the harness's QUiLoader does not read <{tag}> property values")


class QUiLoader(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._classes = known_classes()

    def availableWidgets(self):
        return sorted(n for n, c in self._classes.items() if issubclass(c, QWidget))

    def load(self, device, parentWidget=None):
        if not isinstance(device, QFile) or not device.isOpen():
            return None
        root = ET.fromstring(device.readAll().data())
        top = root.find("widget")
        named = {}
        widget = self._widget(top, parentWidget, named)
        for connection in root.iterfind("connections/connection"):
            sender, receiver = named[connection.findtext("sender")], named[connection.findtext("receiver")]
            slot = normalize(connection.findtext("slot")).split("(")[0]
            sender.connect(connection.findtext("signal"), getattr(receiver, slot))
        return widget

    def _create(self, element, parent, named):
        class_name = element.get("class")
        cls = self._classes.get(class_name)
        if cls is None:
            raise ValueError(f"QUiLoader: unknown class {class_name!r} (object {element.get('name')!r}); "
                             "the harness knows: " + ", ".join(sorted(self._classes)))
        obj = cls() if issubclass(cls, QLayout) else cls(parent)
        obj.objectName = element.get("name", "")
        named[obj.objectName] = obj
        return obj

    def _properties(self, obj, element):
        for prop in element.findall("property"):
            name = prop.get("name")
            value = _value(prop[0], self._classes)
            if prop.get("stdset") == "0":
                obj.setProperty(name, value)
            elif isinstance(obj, QLayout):
                continue  # margins and spacing: nothing to model
            elif isinstance(getattr(type(obj), name, None), QtProperty):
                setattr(obj, name, value)
            else:
                raise AttributeError(f"QUiLoader: {type(obj).__name__} {obj.objectName!r} has no property {name!r}")

    def _widget(self, element, parent, named):
        widget = self._create(element, parent, named)
        self._properties(widget, element)
        for child in element:
            if child.tag == "widget":
                self._widget(child, widget, named)
            elif child.tag == "layout":
                layout = self._create(child, None, named)
                widget.setLayout(layout)
                self._fill(layout, child, widget, named)
        return widget

    def _fill(self, layout, element, owner, named):
        self._properties(layout, element)
        for item in element.findall("item"):
            for child in item:
                if child.tag == "widget":
                    layout.addWidget(self._widget(child, owner, named))
                elif child.tag == "layout":
                    sub = self._create(child, None, named)
                    layout.addLayout(sub)
                    self._fill(sub, child, owner, named)
