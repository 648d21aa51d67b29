"""Signals, slots, properties and per-harness state as PythonQt presents them (no Qt binding involved).

PythonQt rules enforced here, for every stand-in class:

- A signal is named by its normalised C++ signature. ``obj.connect("sig(args)", slot)`` connects that
  exact overload, and a signature the class does not declare raises ValueError.
- ``obj.sig.connect(slot)`` (and ``.disconnect``/``.emit``) uses the *first declared* overload, e.g. the
  deprecated ``QProcess::finished(int)`` in Qt 5.15.
- A slot receives at most as many arguments as its Python signature accepts, never more than the overload
  carries: ``lambda code, status: ...`` on ``finished(int)`` fails with TypeError.
- An exception raised in a slot is printed with its traceback and recorded (``state.slot_errors``), never
  propagated to the code that emitted the signal.
- Qt properties are plain attributes (``w.text``, ``w.enabled``); reading an attribute the class does not
  define raises AttributeError (there is no catch-all ``__getattr__``). ``property(name)`` reads a Qt
  property or a dynamic property (None when unset); ``setProperty`` writes either.
"""

import inspect
import re
import traceback


class SlotError:
    """An exception raised inside a slot: what PythonQt prints, kept for the test to assert on."""

    def __init__(self, sender, signature, slot, exception, text):
        self.sender, self.signature, self.slot = sender, signature, slot
        self.exception, self.traceback = exception, text

    def __repr__(self):
        return f"SlotError({type(self.sender).__name__}.{self.signature} -> {self.slot!r}: {self.exception!r})"

    def __str__(self):
        return f"{self!r}\n{self.traceback}"


class State:
    """What one harness records and queues; the event loop's timers and processes."""

    def __init__(self):
        self.slot_errors = []
        self.message_boxes = []  # dicts: kind, class, title, text, informativeText, detailedText, buttons, answer
        self.answers = []  # queued message-box answers (StandardButton int or button text)
        self.file_dialogs = []  # dicts: kind, caption, directory, filter, answer
        self.file_dialog_answers = []
        self.settings = {}
        self.opened_urls = []
        self.override_cursor_depth = 0
        self.timers = []  # weak references to active QTimers (a QTimer Python drops is deleted, as in PythonQt)
        self.kept_timers = []  # QTimer.singleShot's internal timers
        self.processes = []  # weak references to QProcesses with signals still to deliver
        self.sequence = 0


state = State()


def reset_state():
    """A fresh State, used by every stand-in from now on."""
    global state
    state = State()
    return state


def normalize(signature):
    """Qt's normalised signature: no spaces, ``const T&`` -> ``T``."""
    s = re.sub(r"\s+", "", signature)
    return re.sub(r"const([\w:<>*]+)&", r"\1", s)


def accepted_arguments(slot):
    """How many positional arguments PythonQt passes to ``slot`` (None: all of them)."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in parameters:
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def call_slot(sender, signature, slot, args):
    n = accepted_arguments(slot)
    try:
        slot(*(args if n is None else args[:n]))
    except Exception as e:  # PythonQt prints the traceback and carries on
        text = traceback.format_exc()
        print(f"Slot error ({type(sender).__name__}.{signature}):\n{text}", flush=True)
        state.slot_errors.append(SlotError(sender, signature, slot, e, text))


def emit(sender, signature, *args):
    if getattr(sender, "_blocked", False):
        return
    for slot in list(sender._connections.get(signature, ())):
        call_slot(sender, signature, slot, args)


class Signal:
    """A Qt signal with its overloads in declaration order: ``Signal("finished(int)", "finished(int,X)")``."""

    def __init__(self, *signatures):
        self.signatures = tuple(normalize(s) for s in signatures)
        self.name = self.signatures[0].split("(")[0]

    def __set_name__(self, owner, name):
        if name != self.name:
            raise TypeError(f"signal {self.signatures[0]} declared as {owner.__name__}.{name}")

    def __get__(self, obj, objtype=None):
        return self if obj is None else BoundSignal(obj, self.signatures[0])


class BoundSignal:
    """``obj.signal``: connect/disconnect/emit on the first declared overload (PythonQt's rule)."""

    __slots__ = ("_obj", "_signature")

    def __init__(self, obj, signature):
        self._obj, self._signature = obj, signature

    def connect(self, slot):
        return self._obj.connect(self._signature, slot)

    def disconnect(self, slot=None):
        return self._obj.disconnect(self._signature, slot)

    def emit(self, *args):
        emit(self._obj, self._signature, *args)

    def __repr__(self):
        return f"<signal {type(self._obj).__name__}.{self._signature}>"


_signature_cache = {}


def signatures_of(cls):
    if cls not in _signature_cache:
        found = []
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                if isinstance(value, Signal):
                    found.extend(value.signatures)
        _signature_cache[cls] = frozenset(found)
    return _signature_cache[cls]


class QtProperty(property):
    """A Q_PROPERTY: an attribute, also reachable through property()/setProperty()."""


def stored(name, default=None, kind=None, changed=None):
    """A stored Q_PROPERTY. kind: bool/int/float/str/list (PythonQt's conversion), None: any value.
    changed(self, old, new) runs after the value changed (emit the notify signal there)."""
    attr = "_p_" + name

    def get(self):
        value = self.__dict__.get(attr, default)
        return list(value) if isinstance(value, list) else value

    def set(self, value):
        value = convert(value, kind, f"{type(self).__name__}.{name}")
        old = get(self)
        self.__dict__[attr] = value
        if changed is not None and old != value:
            changed(self, old, value)

    return QtProperty(get, set)


def readonly(getter):
    def refuse(self, value):
        raise AttributeError(f"{type(self).__name__} property is read-only")
    return QtProperty(getter, refuse)


def convert(value, kind, what):
    if kind is None:
        return value
    if kind is bool:
        return bool(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{what} takes a str (QString), not {type(value).__name__}")
        return value
    if kind in (int, float):
        if not isinstance(value, (int, float)):
            raise TypeError(f"{what} takes a number, not {type(value).__name__}")
        return kind(value)
    if kind is list:
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{what} takes a list of str (QStringList)")
        return list(value)
    raise AssertionError(kind)


class QObject:
    destroyed = Signal("destroyed(QObject*)", "destroyed()")
    objectNameChanged = Signal("objectNameChanged(QString)")
    objectName = stored("objectName", "", str, lambda self, old, new: emit(self, "objectNameChanged(QString)", new))

    def __init__(self, parent=None):
        self._connections = {}
        self._dynamic = {}
        self._children = []
        self._parent = None
        if parent is not None:
            self.setParent(parent)

    # PythonQt exposes objectName also as `name` (slicer.util.childWidgetVariables reads it)
    name = property(lambda self: self.objectName, lambda self, v: setattr(self, "objectName", v))

    def setObjectName(self, name):
        self.objectName = name

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if parent is self._parent:
            return
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None, name=None):
        found = []
        for child in self._children:
            if (cls is None or isinstance(child, cls)) and (name is None or child.objectName == name):
                found.append(child)
            found.extend(child.findChildren(cls, name))
        return found

    def findChild(self, cls=None, name=None):
        found = self.findChildren(cls, name)
        return found[0] if found else None

    def isWidgetType(self):
        return False

    def inherits(self, className):
        return any(k.__name__ == className for k in type(self).__mro__)

    def className(self):
        return type(self).__name__

    def deleteLater(self):
        pass

    def blockSignals(self, block):
        was, self._blocked = getattr(self, "_blocked", False), bool(block)
        return was

    def signalsBlocked(self):
        return getattr(self, "_blocked", False)

    def setProperty(self, name, value):
        if isinstance(getattr(type(self), name, None), QtProperty):
            setattr(self, name, value)
        else:
            self._dynamic[name] = value
        return True

    def property(self, name):
        if isinstance(getattr(type(self), name, None), QtProperty):
            return getattr(self, name)
        return self._dynamic.get(name)

    def dynamicPropertyNames(self):
        return list(self._dynamic)

    def connect(self, *args):
        if len(args) != 2 or not isinstance(args[0], str):
            raise TypeError("the harness supports obj.connect('signal(args)', callable) only")
        signature, slot = normalize(args[0]), args[1]
        if signature not in signatures_of(type(self)):
            raise ValueError(f"{type(self).__name__} has no signal {args[0]!r}; it declares: "
                             + ", ".join(sorted(signatures_of(type(self)))))
        if not callable(slot):
            raise TypeError(f"slot {slot!r} is not callable")
        self._connections.setdefault(signature, []).append(slot)
        return True

    def disconnect(self, *args):
        if not args or not isinstance(args[0], str) or len(args) > 2:
            raise TypeError("the harness supports obj.disconnect('signal(args)'[, callable]) only")
        signature = normalize(args[0])
        if signature not in signatures_of(type(self)):
            raise ValueError(f"{type(self).__name__} has no signal {args[0]!r}")
        slots = self._connections.get(signature, [])
        if len(args) == 1:
            had = bool(slots)
            slots.clear()
            return had
        for i, connected in enumerate(slots):
            if connected == args[1]:
                del slots[i]
                return True
        return False
