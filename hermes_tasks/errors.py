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
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except TaskError as exc:
        sys.stderr.write(f"hermes-tasks: error: {_line(exc)}\n")
        return exc.code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"hermes-tasks: error: {_line(f'{where}{exc.strerror or exc}')}\n")
        return 1
    return 0


def _line(text: object) -> str:
    """One printable line: text from the volume may hold anything (SPEC §14.9)."""
    from .volfile import shown

    return shown(text, None)


def quiet_stdout() -> None:
    """The reader of stdout went away (``| head -1``): end quietly, exit 0 (SPEC §8).

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again.
    """
    import os

    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.close(fd)
