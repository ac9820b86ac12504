"""Exceptions with messages meant for the person at the terminal."""


class DcrobenchError(Exception):
    """Base class: the CLI prints these without a traceback."""


class UnknownNameError(DcrobenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(DcrobenchError):
    pass


class InvalidNameError(DcrobenchError):
    """A plugin registered an item without a usable name."""


class BudgetError(DcrobenchError, ValueError):
    pass


class DatasetError(DcrobenchError):
    pass


class ProtocolError(DcrobenchError, ValueError):
    pass


class TrainingDivergedError(DcrobenchError, RuntimeError):
    pass


class Interrupted(DcrobenchError):
    """The work was stopped from outside (a stop signal): passed through untouched, never reported as a failure."""


class MethodError(DcrobenchError, RuntimeError):
    """A compression method raised or returned something that breaks the contract."""


class DataValidationError(DcrobenchError, ValueError):
    """A compressed set (from a method or a file) breaks a property every training set must have."""


class AlreadyRunningError(DcrobenchError):
    """Another process holds the claim on what this one was about to make (see :func:`dcrobench.fileio.claim`)."""


def one_line_text(text: str, limit: int = 300) -> str:
    """Any message as one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Why some bytes are not text, as a phrase: where the first bad byte is."""
    return f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r})"


def one_line(exc: BaseException) -> str:
    """An exception as one short line (torch's unpickling errors span dozens of lines)."""
    text = " ".join(str(exc).split())
    return one_line_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
