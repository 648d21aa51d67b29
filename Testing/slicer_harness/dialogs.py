"""QDialog, QMessageBox and QFileDialog stand-ins: nothing is shown; every box is recorded and answered.

A message box's ``exec_()`` records a dict in ``state.message_boxes`` (kind: "error", "warning",
"question", "information" or "none" from the icon; class; title; text; informativeText; detailedText;
buttons; answer) and clicks the next queued answer (a StandardButton value or a button's text), else the
default button, else OK / the first accepting button. An answer that names no button of the box raises.
``QFileDialog.get*`` return the next queued path ("" = cancelled) and raise when none is queued, so a
test never blocks on a dialog it did not expect. Every record says whether a wait cursor was set when it
opened ("waitCursor"): a modal dialog under a wait cursor looks busy and unclickable to the user.
"""

from . import core
from .core import QtProperty, Signal, emit, stored
from .widgets import QPushButton, QWidget


class QDialog(QWidget):
    Rejected, Accepted = 0, 1
    accepted = Signal("accepted()")
    rejected = Signal("rejected()")
    finished = Signal("finished(int)")
    modal = stored("modal", False, bool)

    def __init__(self, parent=None, *flags):
        super().__init__(parent)
        self._result = QDialog.Rejected
        self._visible = False

    def done(self, result):
        self._result, self._visible = result, False
        emit(self, "finished(int)", result)
        emit(self, "accepted()" if result == QDialog.Accepted else "rejected()")

    def accept(self):
        self.done(QDialog.Accepted)

    def reject(self):
        self.done(QDialog.Rejected)

    def result(self):
        return self._result

    def setModal(self, modal):
        self.modal = modal

    def open(self):
        self.show()

    def exec_(self):
        """Records the dialog (kind "dialog") and returns Rejected: a harness cannot fill in a custom dialog."""
        texts = [w.text for w in self.findChildren(QWidget) if type(w).__name__ == "QLabel"]
        core.state.message_boxes.append({"kind": "dialog", "class": type(self).__name__, "title": self.windowTitle,
                                         "text": "\n".join(texts), "answer": None,
                                         "waitCursor": core.state.override_cursor_depth > 0})
        return QDialog.Rejected

    exec = exec_


_STANDARD = {0x400: "OK", 0x800: "Save", 0x1000: "Save All", 0x2000: "Open", 0x4000: "Yes", 0x8000: "Yes to All",
             0x10000: "No", 0x20000: "No to All", 0x40000: "Abort", 0x80000: "Retry", 0x100000: "Ignore",
             0x200000: "Close", 0x400000: "Cancel", 0x800000: "Discard", 0x1000000: "Help",
             0x2000000: "Apply", 0x4000000: "Reset", 0x8000000: "Restore Defaults"}
_ROLE = {0x400: 0, 0x800: 0, 0x1000: 0, 0x2000: 0, 0x4000: 5, 0x8000: 5, 0x10000: 6, 0x20000: 6, 0x40000: 1,
         0x80000: 0, 0x100000: 0, 0x200000: 1, 0x400000: 1, 0x800000: 2, 0x1000000: 4, 0x2000000: 8,
         0x4000000: 7, 0x8000000: 7}
_KIND = {0: "none", 1: "information", 2: "warning", 3: "error", 4: "question"}


class QMessageBox(QDialog):
    NoButton, Ok, Save, SaveAll, Open, Yes, YesToAll, No, NoToAll = 0, 0x400, 0x800, 0x1000, 0x2000, 0x4000, \
        0x8000, 0x10000, 0x20000
    Abort, Retry, Ignore, Close, Cancel, Discard, Help, Apply, Reset, RestoreDefaults = 0x40000, 0x80000, \
        0x100000, 0x200000, 0x400000, 0x800000, 0x1000000, 0x2000000, 0x4000000, 0x8000000
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4
    InvalidRole, AcceptRole, RejectRole, DestructiveRole, ActionRole, HelpRole, YesRole, NoRole, ResetRole, \
        ApplyRole = -1, 0, 1, 2, 3, 4, 5, 6, 7, 8
    buttonClicked = Signal("buttonClicked(QAbstractButton*)")
    text = stored("text", "", str)
    informativeText = stored("informativeText", "", str)
    detailedText = stored("detailedText", "", str)
    icon = stored("icon", 0, int)
    textFormat = stored("textFormat")

    def __init__(self, *args):
        parent = args[0] if len(args) == 1 else (args[4] if len(args) > 4 else None)
        super().__init__(parent)
        self._buttons, self._default, self._clicked = [], None, None  # buttons: [button, standard, role]
        if len(args) >= 3:
            self.icon, self.windowTitle, self.text = args[0], args[1], args[2]
            self.standardButtons = args[3] if len(args) > 3 else QMessageBox.NoButton

    def _set_standard(self, flags):
        self._buttons = [b for b in self._buttons if b[1] is None]
        for value in sorted(_STANDARD):
            if flags & value:
                self._buttons.append([QPushButton(_STANDARD[value], self), value, _ROLE[value]])

    standardButtons = QtProperty(lambda self: sum(b[1] for b in self._buttons if b[1]), _set_standard)

    def setStandardButtons(self, flags):
        self.standardButtons = flags

    def setText(self, text):
        self.text = text

    def setInformativeText(self, text):
        self.informativeText = text

    def setDetailedText(self, text):
        self.detailedText = text

    def setIcon(self, icon):
        self.icon = icon

    def addButton(self, *args):
        if len(args) == 1:  # StandardButton
            self._set_standard(self.standardButtons | args[0])
            return self.button(args[0])
        button, role = args
        if isinstance(button, str):
            button = QPushButton(button, self)
        self._buttons.append([button, None, role])
        return button

    def button(self, standard):
        return next((b[0] for b in self._buttons if b[1] == standard), None)

    def buttons(self):
        return [b[0] for b in self._buttons]

    def standardButton(self, button):
        return next((b[1] or 0 for b in self._buttons if b[0] is button), 0)

    def buttonRole(self, button):
        return next((b[2] for b in self._buttons if b[0] is button), QMessageBox.InvalidRole)

    def setDefaultButton(self, button):
        self._default = self.button(button) if isinstance(button, int) else button

    def defaultButton(self):
        return self._default

    def setEscapeButton(self, button):
        pass

    def clickedButton(self):
        return self._clicked

    def _answer(self):
        if not self._buttons:
            self._set_standard(QMessageBox.Ok)
        if core.state.answers:
            answer = core.state.answers.pop(0)
            for button, standard, _role in self._buttons:
                if answer == standard or answer == button.text:
                    return button
            raise ValueError(f"queued answer {answer!r} is not a button of the message box {self.text!r}; "
                             f"buttons: {[b[0].text for b in self._buttons]}")
        if self._default is not None:
            return self._default
        return next((b[0] for b in self._buttons if b[1] == QMessageBox.Ok),
                    next((b[0] for b in self._buttons if b[2] in (0, 5)), self._buttons[0][0]))

    def exec_(self):
        record = {"kind": _KIND.get(self.icon, "none"), "class": type(self).__name__,
                  "title": self.windowTitle.strip(),  # util.messageBox pads it when there is detailedText
                  "text": self.text, "informativeText": self.informativeText, "detailedText": self.detailedText,
                  "buttons": [b[0].text for b in self._buttons] or ["OK"], "answer": None,
                  "waitCursor": core.state.override_cursor_depth > 0}
        core.state.message_boxes.append(record)
        self._clicked = self._answer()
        record["answer"] = self._clicked.text
        emit(self, "buttonClicked(QAbstractButton*)", self._clicked)
        standard = self.standardButton(self._clicked)
        return standard if standard else self.buttons().index(self._clicked)

    exec = exec_

    @staticmethod
    def _static(icon, parent, title, text, buttons=None, defaultButton=0):
        box = QMessageBox(icon, title, text, buttons or QMessageBox.Ok, parent)
        if defaultButton:
            box.setDefaultButton(defaultButton)
        return box.exec_()

    information = staticmethod(lambda *a, **k: QMessageBox._static(1, *a, **k))
    warning = staticmethod(lambda *a, **k: QMessageBox._static(2, *a, **k))
    critical = staticmethod(lambda *a, **k: QMessageBox._static(3, *a, **k))

    @staticmethod
    def question(parent, title, text, buttons=0x4000 | 0x10000, defaultButton=0):
        return QMessageBox._static(4, parent, title, text, buttons, defaultButton)


class QFileDialog(QDialog):
    ShowDirsOnly, DontResolveSymlinks, DontConfirmOverwrite = 0x1, 0x2, 0x4

    @staticmethod
    def _ask(kind, parent=None, caption="", directory="", filter="", *rest):
        record = {"kind": kind, "caption": caption, "directory": directory, "filter": filter,
                  "waitCursor": core.state.override_cursor_depth > 0}
        core.state.file_dialogs.append(record)
        if not core.state.file_dialog_answers:
            raise RuntimeError(f"QFileDialog.{kind}({caption!r}) opened but no answer is queued "
                               "(harness.queue_file_dialog(path), '' to cancel)")
        answer = core.state.file_dialog_answers.pop(0)
        record["answer"] = answer
        return answer

    @staticmethod
    def getOpenFileName(*args, **kwargs):
        return str(QFileDialog._ask("getOpenFileName", *args, **kwargs))

    @staticmethod
    def getSaveFileName(*args, **kwargs):
        return str(QFileDialog._ask("getSaveFileName", *args, **kwargs))

    @staticmethod
    def getOpenFileNames(*args, **kwargs):
        return [str(p) for p in QFileDialog._ask("getOpenFileNames", *args, **kwargs)]

    @staticmethod
    def getExistingDirectory(parent=None, caption="", directory="", options=None):
        return str(QFileDialog._ask("getExistingDirectory", parent, caption, directory, ""))
