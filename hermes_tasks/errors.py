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


def guarded(fn, json: bool = False) -> int:
    """Call ``fn``; an expected failure becomes one line on stderr and its exit code.

    With ``json`` (the task was given ``--json``) it is also the one JSON object on stdout
    (SPEC §8): :func:`emit_error`.
    """
    import sys

    try:
        fn()
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except (TaskError, OSError) as exc:
        if isinstance(exc, TaskError):
            message, code = str(exc), exc.code
        else:
            where = f"{exc.filename}: " if exc.filename else ""
            message, code = f"{where}{exc.strerror or exc}", 1
        message = _line(message)
        sys.stderr.write(f"hermes-tasks: error: {message}\n")
        if json:
            emit_error(message, code)
        return code
    return 0


def emit_error(message: str, code: int) -> None:
    """The one JSON object of a task that failed as a whole: no rows, the error, the code."""
    import json
    import sys

    doc = {"results": [], "stats": {"ok": 0, "changed": 0, "skipped": 0, "failed": 0},
           "error": message, "code": code}
    try:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()


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
