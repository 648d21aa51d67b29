"""QWidget and the Qt widgets a scripted module uses, as PythonQt shows them (no drawing, no Qt).

Rules enforced: Qt properties are attributes (``w.text``, ``w.checked``, ``w.value``, ``w.currentIndex``);
setting one to a new value emits the notify signals in Qt's order (``valueChanged(double)`` before
``valueChanged(QString)``, ``currentIndexChanged(int)`` first, ``clicked(bool)`` before ``clicked()``);
string properties take only str; a disabled button ignores click(); an attribute the class does not
define raises AttributeError. ``visible`` is the widget's own shown/hidden state (the module panel is
taken as shown). Snake_case methods (``select_rows``, ``click_cell``) are harness helpers for tests.
"""

from .core import QObject, QtProperty, Signal, emit, readonly, stored


def _emitter(*signatures):
    """changed() hook of a stored property: emit each notify signal, with the new value unless it is ()."""
    def changed(self, old, new):
        for signature in signatures:
            emit(self, signature) if signature.endswith("()") else emit(self, signature, new)
    return changed


class QSize:
    def __init__(self, width=-1, height=-1):
        self._w, self._h = int(width), int(height)

    def width(self):
        return self._w

    def height(self):
        return self._h

    def __eq__(self, other):
        return isinstance(other, QSize) and (other._w, other._h) == (self._w, self._h)

    def __repr__(self):
        return f"QSize({self._w}, {self._h})"


class QSizePolicy:
    Fixed, Minimum, Maximum, Preferred, MinimumExpanding, Expanding, Ignored = 0, 1, 4, 5, 3, 7, 13

    def __init__(self, horizontal=Preferred, vertical=Preferred, controlType=None):
        self._h, self._v = horizontal, vertical

    def horizontalPolicy(self):
        return self._h

    def verticalPolicy(self):
        return self._v


class QWidget(QObject):
    windowTitleChanged = Signal("windowTitleChanged(QString)")
    customContextMenuRequested = Signal("customContextMenuRequested(QPoint)")

    enabled = stored("enabled", True, bool)
    toolTip = stored("toolTip", "", str)
    statusTip = stored("statusTip", "", str)
    whatsThis = stored("whatsThis", "", str)
    styleSheet = stored("styleSheet", "", str)
    windowTitle = stored("windowTitle", "", str, _emitter("windowTitleChanged(QString)"))
    geometry = stored("geometry")
    sizePolicy = stored("sizePolicy")
    minimumSize = stored("minimumSize")
    maximumSize = stored("maximumSize")
    minimumWidth = stored("minimumWidth", 0, int)
    minimumHeight = stored("minimumHeight", 0, int)
    maximumWidth = stored("maximumWidth", 16777215, int)
    maximumHeight = stored("maximumHeight", 16777215, int)
    visible = QtProperty(lambda self: self._visible, lambda self, v: self.setVisible(v))
    width = readonly(lambda self: self._size[0])
    height = readonly(lambda self: self._size[1])

    def __init__(self, parent=None, *flags):
        super().__init__(parent)
        self._layout, self._visible, self._size = None, True, (100, 30)

    def isWidgetType(self):
        return True

    def setEnabled(self, enabled):
        self.enabled = enabled

    def setDisabled(self, disabled):
        self.enabled = not disabled

    def isEnabled(self):
        return self.enabled

    def setVisible(self, visible):
        self._visible = bool(visible)

    def show(self):
        self.setVisible(True)

    def hide(self):
        self.setVisible(False)

    def close(self):
        self.setVisible(False)
        return True

    def isVisible(self):
        return self._visible

    def isHidden(self):
        return not self._visible

    def setToolTip(self, text):
        self.toolTip = text

    def setWindowTitle(self, text):
        self.windowTitle = text

    def setStyleSheet(self, text):
        self.styleSheet = text

    def setSizePolicy(self, *policy):
        self.sizePolicy = policy[0] if len(policy) == 1 else QSizePolicy(*policy)

    def setMinimumWidth(self, w):
        self.minimumWidth = w

    def setMinimumHeight(self, h):
        self.minimumHeight = h

    def setMaximumWidth(self, w):
        self.maximumWidth = w

    def setMaximumHeight(self, h):
        self.maximumHeight = h

    def setMinimumSize(self, *size):
        self.minimumSize = size[0] if len(size) == 1 else QSize(*size)

    def resize(self, *size):
        self._size = (size[0].width(), size[0].height()) if len(size) == 1 else tuple(size)

    def setFixedWidth(self, w):
        self._size = (w, self._size[1])

    def setFixedHeight(self, h):
        self._size = (self._size[0], h)

    def setContentsMargins(self, *margins):
        pass

    def setFocus(self, *reason):
        pass

    def update(self):
        pass

    repaint = adjustSize = raise_ = activateWindow = update

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        if self._layout is not None:
            print(f"QWidget::setLayout: {type(self).__name__} already has a layout", flush=True)
            return
        self._layout = layout
        layout.setParent(self)
        layout._adopt(self)


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self._items = []
        if parent is not None:
            if not isinstance(parent, QWidget):
                raise TypeError(f"{type(self).__name__}(parent) takes a QWidget")
            parent.setLayout(self)

    def _owner(self):
        owner = self.parent()
        while isinstance(owner, QLayout):
            owner = owner.parent()
        return owner

    def _adopt(self, owner):
        for item in self._items:
            if isinstance(item, QWidget):
                item.setParent(owner)
            elif isinstance(item, QLayout):
                item._adopt(owner)

    def _add(self, item):
        if isinstance(item, QLayout):
            item.setParent(self)
        elif not isinstance(item, QWidget):
            raise TypeError(f"{type(self).__name__} cannot hold {type(item).__name__}")
        self._items.append(item)
        owner = self._owner()
        if owner is not None:
            self._adopt(owner)

    def addWidget(self, widget, *args):
        self._add(widget)

    def addLayout(self, layout, *args):
        self._add(layout)

    def removeWidget(self, widget):
        if widget in self._items:
            self._items.remove(widget)

    def count(self):
        return len(self._items)

    def setSpacing(self, spacing):
        pass

    def setContentsMargins(self, *margins):
        pass

    setMargin = addSpacing = addStretch = addSpacerItem = addItem = setSpacing


class QBoxLayout(QLayout):
    pass


class QVBoxLayout(QBoxLayout):
    pass


class QHBoxLayout(QBoxLayout):
    pass


class QGridLayout(QLayout):
    pass


class QFormLayout(QLayout):
    def addRow(self, *args):
        for item in args:
            self._add(QLabel(item) if isinstance(item, str) else item)

    def insertRow(self, row, *args):
        self.addRow(*args)


class QSpacerItem:
    def __init__(self, *args):
        pass


class QFrame(QWidget):
    NoFrame, Box, Panel, StyledPanel, HLine, VLine = 0, 1, 2, 6, 4, 5
    frameShape = stored("frameShape")
    frameShadow = stored("frameShadow")


class QLabel(QFrame):
    linkActivated = Signal("linkActivated(QString)")
    text = stored("text", "", str)
    wordWrap = stored("wordWrap", False, bool)
    alignment = stored("alignment")
    textFormat = stored("textFormat")
    openExternalLinks = stored("openExternalLinks", False, bool)
    textInteractionFlags = stored("textInteractionFlags")

    def __init__(self, text="", parent=None):
        if isinstance(text, QWidget):
            text, parent = "", text
        super().__init__(parent)
        self.text, self._pixmap = text, None

    def setText(self, text):
        self.text = text

    def setWordWrap(self, on):
        self.wordWrap = on

    def setPixmap(self, pixmap):
        self._pixmap = pixmap

    def pixmap(self):
        return self._pixmap

    def clear(self):
        self.text, self._pixmap = "", None


class QAbstractButton(QWidget):
    clicked = Signal("clicked(bool)", "clicked()")
    toggled = Signal("toggled(bool)")
    pressed = Signal("pressed()")
    released = Signal("released()")
    text = stored("text", "", str)
    icon = stored("icon")
    checkable = stored("checkable", False, bool)
    autoExclusive = stored("autoExclusive", False, bool)

    def __init__(self, text="", parent=None):
        if isinstance(text, QWidget):
            text, parent = "", text
        super().__init__(parent)
        self.text, self._checked = text, False

    def _set_checked(self, value):
        value = bool(value)
        if not self.checkable or value == self._checked:
            return
        self._checked = value
        self._check_state_set()
        emit(self, "toggled(bool)", value)

    def _check_state_set(self):
        pass

    checked = QtProperty(lambda self: self._checked, _set_checked)

    def setText(self, text):
        self.text = text

    def setChecked(self, checked):
        self.checked = checked

    def isChecked(self):
        return self._checked

    def setCheckable(self, checkable):
        self.checkable = checkable

    def isCheckable(self):
        return self.checkable

    def setIcon(self, icon):
        self.icon = icon

    def click(self):
        """What a mouse click does: nothing when disabled; else toggle (if checkable), then clicked."""
        if not self.enabled or not self._visible:
            return
        emit(self, "pressed()")
        emit(self, "released()")
        if self.checkable:
            self.checked = not self._checked
        emit(self, "clicked(bool)", self._checked)
        emit(self, "clicked()")

    animateClick = click


class QPushButton(QAbstractButton):
    default = stored("default", False, bool)
    autoDefault = stored("autoDefault", False, bool)
    flat = stored("flat", False, bool)

    def setDefault(self, on):
        self.default = on


class QToolButton(QAbstractButton):
    popupMode = stored("popupMode")
    toolButtonStyle = stored("toolButtonStyle")


class QRadioButton(QAbstractButton):
    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True


class QCheckBox(QAbstractButton):
    stateChanged = Signal("stateChanged(int)")
    tristate = stored("tristate", False, bool)

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True

    def _check_state_set(self):
        emit(self, "stateChanged(int)", 2 if self._checked else 0)

    checkState = QtProperty(lambda self: 2 if self._checked else 0, lambda self, v: setattr(self, "checked", v == 2))

    def setCheckState(self, state):
        self.checkState = state


class QLineEdit(QWidget):
    textChanged = Signal("textChanged(QString)")
    textEdited = Signal("textEdited(QString)")
    editingFinished = Signal("editingFinished()")
    returnPressed = Signal("returnPressed()")
    text = stored("text", "", str, _emitter("textChanged(QString)"))
    placeholderText = stored("placeholderText", "", str)
    readOnly = stored("readOnly", False, bool)
    maxLength = stored("maxLength", 32767, int)
    clearButtonEnabled = stored("clearButtonEnabled", False, bool)

    def __init__(self, text="", parent=None):
        if isinstance(text, QWidget):
            text, parent = "", text
        super().__init__(parent)
        self.text = text

    def setText(self, text):
        self.text = text

    def clear(self):
        self.text = ""

    def setReadOnly(self, on):
        self.readOnly = on

    def setPlaceholderText(self, text):
        self.placeholderText = text


class _TextEditBase(QWidget):
    textChanged = Signal("textChanged()")
    plainText = stored("plainText", "", str, _emitter("textChanged()"))
    readOnly = stored("readOnly", False, bool)
    placeholderText = stored("placeholderText", "", str)

    def setPlainText(self, text):
        self.plainText = text

    def toPlainText(self):
        return self.plainText

    def clear(self):
        self.plainText = ""

    def setReadOnly(self, on):
        self.readOnly = on

    def _append(self, text):
        self.plainText = text if not self.plainText else self.plainText + "\n" + text


class QPlainTextEdit(_TextEditBase):
    maximumBlockCount = stored("maximumBlockCount", 0, int)
    appendPlainText = _TextEditBase._append

    def setMaximumBlockCount(self, n):
        self.maximumBlockCount = n


class QTextEdit(_TextEditBase):
    html = QtProperty(lambda self: self.plainText, lambda self, v: setattr(self, "plainText", v))
    append = _TextEditBase._append

    def setHtml(self, html):
        self.html = html

    def toHtml(self):
        return self.html


class QTextBrowser(QTextEdit):
    openExternalLinks = stored("openExternalLinks", False, bool)
