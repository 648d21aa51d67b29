"""Qt value and item widgets (spin boxes, sliders, progress bar, combo box, list widget, table view),
as PythonQt shows them.

Rules enforced: values are clamped and rounded as Qt does (a spin box's value stays within
[minimum, maximum] and is rounded to ``decimals``); a change emits Qt's notify signals in declaration
order (``valueChanged(int|double)`` first, ``currentIndexChanged(int)`` before its QString overload);
adding the first item to an empty QComboBox makes it current (QListWidget does not); ``count`` and
``currentData`` are read-only properties. ``select_rows``/``click_cell`` are harness helpers for tests.
"""

from .core import QObject, QtProperty, Signal, convert, emit, readonly, stored
from .widgets import QFrame, QWidget

_USER_ROLE = 0x100  # Qt::UserRole, where QComboBox keeps addItem's userData


class _Ranged(QWidget):
    """minimum/maximum/value/singleStep with Qt's clamping; subclasses name their value signals."""

    _integer, _initial, _value_signals = True, (0, 99, 0), ("valueChanged(int)",)
    singleStep = stored("singleStep", 1, float)
    pageStep = stored("pageStep", 10, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._min, self._max, self._value = self._initial
        self._decimals = 2

    def _round(self, v):
        v = convert(v, float, f"{type(self).__name__} value")
        return int(v) if self._integer else round(v, self._decimals)

    def _set_value(self, v):
        v = min(max(self._round(v), self._min), self._max)
        if v != self._value:
            self._value = v
            for signature in self._value_signals:
                emit(self, signature, self.textFromValue(v) if "QString" in signature else v)

    def textFromValue(self, v):
        return str(v) if self._integer else f"{v:.{self._decimals}f}"

    def setRange(self, minimum, maximum):
        self._min = self._round(minimum)
        self._max = max(self._min, self._round(maximum))
        self._set_value(self._value)

    def setMinimum(self, v):
        self.setRange(v, max(self._round(v), self._max))

    def setMaximum(self, v):
        self.setRange(min(self._min, self._round(v)), v)

    def setValue(self, v):
        self._set_value(v)

    def setSingleStep(self, step):
        self.singleStep = step

    minimum = QtProperty(lambda self: self._min, setMinimum)
    maximum = QtProperty(lambda self: self._max, setMaximum)
    value = QtProperty(lambda self: self._value, setValue)


class QAbstractSpinBox(_Ranged):
    editingFinished = Signal("editingFinished()")
    readOnly = stored("readOnly", False, bool)
    specialValueText = stored("specialValueText", "", str)
    suffix = stored("suffix", "", str)
    prefix = stored("prefix", "", str)
    keyboardTracking = stored("keyboardTracking", True, bool)
    wrapping = stored("wrapping", False, bool)
    alignment = stored("alignment")
    buttonSymbols = stored("buttonSymbols")

    def textFromValue(self, v):
        return self.prefix + super().textFromValue(v) + self.suffix

    def setSuffix(self, text):
        self.suffix = text

    def setPrefix(self, text):
        self.prefix = text

    def setSpecialValueText(self, text):
        self.specialValueText = text


class QSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(int)", "valueChanged(QString)")
    textChanged = Signal("textChanged(QString)")
    _value_signals = ("valueChanged(int)", "valueChanged(QString)", "textChanged(QString)")


class QDoubleSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(double)", "valueChanged(QString)")
    textChanged = Signal("textChanged(QString)")
    _integer, _initial = False, (0.0, 99.99, 0.0)
    _value_signals = ("valueChanged(double)", "valueChanged(QString)", "textChanged(QString)")

    def setDecimals(self, decimals):
        self._decimals = int(decimals)
        self.setRange(self._min, self._max)

    decimals = QtProperty(lambda self: self._decimals, setDecimals)


class QAbstractSlider(_Ranged):
    valueChanged = Signal("valueChanged(int)")
    sliderMoved = Signal("sliderMoved(int)")
    rangeChanged = Signal("rangeChanged(int,int)")
    orientation = stored("orientation", 1)
    tracking = stored("tracking", True, bool)


class QSlider(QAbstractSlider):
    tickPosition = stored("tickPosition")
    tickInterval = stored("tickInterval", 0, int)


class QProgressBar(QWidget):
    valueChanged = Signal("valueChanged(int)")
    textVisible = stored("textVisible", True, bool)
    format = stored("format", "%p%", str)
    orientation = stored("orientation", 1)
    alignment = stored("alignment")
    invertedAppearance = stored("invertedAppearance", False, bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._min, self._max, self._value = 0, 100, -1

    def setRange(self, minimum, maximum):
        self._min, self._max = int(minimum), max(int(minimum), int(maximum))
        if self._value < self._min - 1 or self._value > self._max:
            self.reset()

    def setMinimum(self, v):
        self.setRange(v, max(int(v), self._max))

    def setMaximum(self, v):
        self.setRange(min(self._min, int(v)), v)

    def setValue(self, v):
        v = int(convert(v, int, "QProgressBar value"))
        if v == self._value or ((v > self._max or v < self._min) and (self._max or self._min)):
            return  # Qt ignores a value outside the range
        self._value = v
        emit(self, "valueChanged(int)", v)

    def reset(self):
        self._value = self._min - 1

    minimum = QtProperty(lambda self: self._min, setMinimum)
    maximum = QtProperty(lambda self: self._max, setMaximum)
    value = QtProperty(lambda self: self._value, setValue)


class QComboBox(QWidget):
    editTextChanged = Signal("editTextChanged(QString)")
    activated = Signal("activated(int)", "activated(QString)")
    textActivated = Signal("textActivated(QString)")
    highlighted = Signal("highlighted(int)", "highlighted(QString)")
    currentIndexChanged = Signal("currentIndexChanged(int)", "currentIndexChanged(QString)")
    currentTextChanged = Signal("currentTextChanged(QString)")
    editable = stored("editable", False, bool)
    maxVisibleItems = stored("maxVisibleItems", 10, int)
    sizeAdjustPolicy = stored("sizeAdjustPolicy")
    placeholderText = stored("placeholderText", "", str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items, self._index = [], -1

    count = readonly(lambda self: len(self._items))
    currentText = QtProperty(lambda self: self._items[self._index][0] if self._index >= 0 else "",
                             lambda self, text: self.setCurrentText(text))
    currentData = readonly(lambda self: self.itemData(self._index))

    def setCurrentIndex(self, index):
        index = int(index)
        if not 0 <= index < len(self._items):
            index = -1
        if index != self._index:
            self._index = index
            emit(self, "currentIndexChanged(int)", index)
            emit(self, "currentIndexChanged(QString)", self.currentText)
            emit(self, "currentTextChanged(QString)", self.currentText)

    currentIndex = QtProperty(lambda self: self._index, setCurrentIndex)

    def setCurrentText(self, text):
        if self.findText(text) >= 0:
            self.setCurrentIndex(self.findText(text))

    def insertItem(self, index, *args):
        if args and not isinstance(args[0], str):  # (icon, text[, userData])
            args = args[1:]
        text = convert(args[0], str, "QComboBox item text")
        index = min(max(int(index), 0), len(self._items))
        self._items.insert(index, [text, {_USER_ROLE: args[1]} if len(args) > 1 else {}])  # [text, {role: data}]
        if len(self._items) == 1 and self._index == -1:
            self.setCurrentIndex(0)  # Qt selects the first item put in an empty combo box
        elif index <= self._index:
            self.setCurrentIndex(self._index + 1)

    def addItem(self, *args):
        self.insertItem(len(self._items), *args)

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def removeItem(self, index):
        if not 0 <= index < len(self._items):
            return
        del self._items[index]
        if index < self._index:
            self._index -= 1
            emit(self, "currentIndexChanged(int)", self._index)
            emit(self, "currentIndexChanged(QString)", self.currentText)
        elif index == self._index:
            self._index = -2  # force the change
            self.setCurrentIndex(min(index, len(self._items) - 1))

    def clear(self):
        self._items = []
        self.setCurrentIndex(-1)

    def findText(self, text):
        return next((i for i, item in enumerate(self._items) if item[0] == text), -1)

    def findData(self, data, role=_USER_ROLE):
        return next((i for i in range(len(self._items)) if self.itemData(i, role) == data), -1)

    def itemText(self, index):
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def itemData(self, index, role=_USER_ROLE):
        if not 0 <= index < len(self._items):
            return None
        return self._items[index][0] if role in (0, 2) else self._items[index][1].get(role)

    def setItemText(self, index, text):
        self._items[index][0] = convert(text, str, "QComboBox item text")

    def setItemData(self, index, value, role=_USER_ROLE):
        if role in (0, 2):
            self.setItemText(index, value)
        elif 0 <= index < len(self._items):
            self._items[index][1][role] = value


class QListWidgetItem:
    def __init__(self, text="", parent=None):
        self._text, self._data, self._toolTip = convert(text, str, "QListWidgetItem text"), {}, ""
        if parent is not None:
            parent.addItem(self)

    def text(self):
        return self._text

    def setText(self, text):
        self._text = text

    def data(self, role):
        return self._data.get(role)

    def setData(self, role, value):
        self._data[role] = value

    def toolTip(self):
        return self._toolTip

    def setToolTip(self, text):
        self._toolTip = text


class QAbstractItemView(QFrame):
    NoSelection, SingleSelection, MultiSelection, ExtendedSelection, ContiguousSelection = 0, 1, 2, 3, 4
    SelectItems, SelectRows, SelectColumns = 0, 1, 2
    NoEditTriggers = 0
    pressed = Signal("pressed(QModelIndex)")
    clicked = Signal("clicked(QModelIndex)")
    doubleClicked = Signal("doubleClicked(QModelIndex)")
    activated = Signal("activated(QModelIndex)")
    selectionMode = stored("selectionMode", 3)
    selectionBehavior = stored("selectionBehavior", 0)
    editTriggers = stored("editTriggers")
    alternatingRowColors = stored("alternatingRowColors", False, bool)

    def setSelectionMode(self, mode):
        self.selectionMode = mode

    def setSelectionBehavior(self, behavior):
        self.selectionBehavior = behavior

    def setEditTriggers(self, triggers):
        self.editTriggers = triggers

    def setAlternatingRowColors(self, on):
        self.alternatingRowColors = on


class QListWidget(QAbstractItemView):
    itemClicked = Signal("itemClicked(QListWidgetItem*)")
    itemDoubleClicked = Signal("itemDoubleClicked(QListWidgetItem*)")
    itemChanged = Signal("itemChanged(QListWidgetItem*)")
    currentItemChanged = Signal("currentItemChanged(QListWidgetItem*,QListWidgetItem*)")
    currentTextChanged = Signal("currentTextChanged(QString)")
    currentRowChanged = Signal("currentRowChanged(int)")
    itemSelectionChanged = Signal("itemSelectionChanged()")
    sortingEnabled = stored("sortingEnabled", False, bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items, self._row = [], -1

    count = readonly(lambda self: len(self._items))

    def setCurrentRow(self, row):
        row = row if 0 <= row < len(self._items) else -1
        if row == self._row:
            return
        old, self._row = self.currentItem(), row
        emit(self, "currentItemChanged(QListWidgetItem*,QListWidgetItem*)", self.currentItem(), old)
        emit(self, "currentTextChanged(QString)", self.currentItem().text() if row >= 0 else "")
        emit(self, "currentRowChanged(int)", row)
        emit(self, "itemSelectionChanged()")

    currentRow = QtProperty(lambda self: self._row, setCurrentRow)

    def insertItem(self, row, item):
        item = QListWidgetItem(item) if isinstance(item, str) else item
        row = min(max(row, 0), len(self._items))
        self._items.insert(row, item)
        if row <= self._row:
            self._row += 1

    def addItem(self, item):
        self.insertItem(len(self._items), item)

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def item(self, row):
        return self._items[row] if 0 <= row < len(self._items) else None

    def row(self, item):
        return next((i for i, it in enumerate(self._items) if it is item), -1)

    def currentItem(self):
        return self.item(self._row)

    def setCurrentItem(self, item):
        self.setCurrentRow(self.row(item))

    def selectedItems(self):
        return [self.currentItem()] if self._row >= 0 else []

    def takeItem(self, row):
        item = self.item(row)
        if item is not None:
            if row == self._row:
                self.setCurrentRow(-1)
            elif row < self._row:
                self._row -= 1
            self._items.remove(item)
        return item

    def clear(self):
        self.setCurrentRow(-1)
        self._items = []


class QModelIndex:
    def __init__(self, row=-1, column=-1):
        self._row, self._column = row, column

    def row(self):
        return self._row

    def column(self):
        return self._column

    def isValid(self):
        return self._row >= 0 and self._column >= 0

    def __eq__(self, other):
        return isinstance(other, QModelIndex) and (other._row, other._column) == (self._row, self._column)

    def __hash__(self):
        return hash((self._row, self._column))

    def __repr__(self):
        return f"QModelIndex({self._row}, {self._column})"


class QItemSelectionModel(QObject):
    selectionChanged = Signal("selectionChanged(QItemSelection,QItemSelection)")
    currentChanged = Signal("currentChanged(QModelIndex,QModelIndex)")

    def __init__(self, view):
        super().__init__()
        self._view, self._selected, self._current = view, [], QModelIndex()

    def selectedIndexes(self):
        return list(self._selected)

    def selectedRows(self, column=0):
        return [QModelIndex(r, column) for r in sorted({i.row() for i in self._selected})]

    def hasSelection(self):
        return bool(self._selected)

    def isRowSelected(self, row, parent=None):
        return any(i.row() == row for i in self._selected)

    def currentIndex(self):
        return self._current

    def clearSelection(self):
        self._set([])

    def clear(self):
        self._set([])
        self._current = QModelIndex()

    def _set(self, indexes):
        if indexes != self._selected:
            self._selected = indexes
            emit(self, "selectionChanged(QItemSelection,QItemSelection)", None, None)

    def select_rows(self, rows):
        """Harness helper: select whole rows, as a user's shift/ctrl-clicks on a row-selecting view do."""
        columns = max(1, self._view._column_count())
        self._set([QModelIndex(r, c) for r in sorted(set(rows)) for c in range(columns)])


class QHeaderView(QFrame):
    Interactive, Stretch, Fixed, ResizeToContents = 0, 1, 2, 3
    stretchLastSection = stored("stretchLastSection", False, bool)

    def setSectionResizeMode(self, *args):
        pass

    setDefaultSectionSize = setMinimumSectionSize = resizeSections = setSectionResizeMode

    def setStretchLastSection(self, on):
        self.stretchLastSection = on


class QTableView(QAbstractItemView):
    sortingEnabled = stored("sortingEnabled", False, bool)
    showGrid = stored("showGrid", True, bool)
    wordWrap = stored("wordWrap", True, bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._selection = QItemSelectionModel(self)
        self._headers = (QHeaderView(self), QHeaderView(self))

    def _column_count(self):
        return 0

    def selectionModel(self):
        return self._selection

    def horizontalHeader(self):
        return self._headers[0]

    def verticalHeader(self):
        return self._headers[1]

    def setSortingEnabled(self, on):
        self.sortingEnabled = on

    def resizeColumnsToContents(self):
        pass

    resizeRowsToContents = clearSelection = resizeColumnsToContents

    def click_cell(self, row, column=0):
        """Harness helper: a mouse click on a cell (selects its row on a row-selecting view)."""
        if not self.enabled:
            return
        index = QModelIndex(row, column)
        emit(self, "pressed(QModelIndex)", index)
        if self.selectionBehavior == QAbstractItemView.SelectRows:
            self._selection.select_rows([row])
        else:
            self._selection._set([index])
        self._selection._current = index
        emit(self, "clicked(QModelIndex)", index)


class QGroupBox(QWidget):
    toggled = Signal("toggled(bool)")
    clicked = Signal("clicked(bool)", "clicked()")
    title = stored("title", "", str)
    flat = stored("flat", False, bool)
    checkable = stored("checkable", False, bool)
    checked = stored("checked", True, bool, lambda self, old, new: emit(self, "toggled(bool)", new))


class QStatusBar(QWidget):
    messageChanged = Signal("messageChanged(QString)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._message = ""

    def showMessage(self, text, timeout=0):
        self._message = text
        emit(self, "messageChanged(QString)", text)

    def currentMessage(self):
        return self._message

    def clearMessage(self):
        self.showMessage("")


class QMainWindow(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._status = QStatusBar(self)

    def statusBar(self):
        return self._status
