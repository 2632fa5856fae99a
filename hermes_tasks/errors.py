"""Errors that end a task with a one-line message instead of a traceback."""


class TaskError(Exception):
    """An expected failure: printed as one line, exit code 1 (or ``code``)."""

    code = 1

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(TaskError):
    """Bad flags, bad inventory or bad names: the user must change the command."""


class InventoryError(UsageError):
    """The inventory is unreadable or holds an unknown key or a wrong type."""


class LockTimeout(TaskError):
    """Another mutating run held the scandir lock for longer than ``lock_timeout``."""


def guarded(fn) -> int:
    """Call ``fn``; an expected failure becomes one line on stderr and its exit code."""
    import sys

    try:
        fn()
    except TaskError as exc:
        sys.stderr.write(f"hermes-tasks: error: {exc}\n")
        return exc.code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"hermes-tasks: error: {where}{exc.strerror or exc}\n")
        return 1
    return 0
