"""Reading the volume as root: bounded, typed and contained (SPEC §10, §14.9).

The service user (and an AI agent running as it) writes every byte of ``hermes_home``; it
can put anything at any name: a directory where a file belongs, a FIFO, a socket, a looping
link, a 3 GiB sparse file, deep JSON, bytes that are not UTF-8. Every read of such a file by
root goes through here and ends in data or in one printable line saying why not, naming the
path; never in an exception, never in a wait.

* :func:`read` opens with ``O_NOFOLLOW|O_NONBLOCK`` relative to a directory fd, insists on a
  regular file by ``fstat`` and reads at most ``limit`` bytes;
* :func:`load_json` parses, guarded against ``RecursionError`` (deep nesting) and
  ``MemoryError``, and bad UTF-8;
* :func:`why` turns an exception into that one-line reason;
* :func:`shown` is any volume-derived text made safe to print (no control character reaches
  a terminal, a log line, a row or JSON).
"""

from __future__ import annotations

import errno
import json
import os
import stat

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
         (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISLNK, "a symlink"))
TEXT_LIMIT = 200


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((word for test, word in KINDS if test(mode)), "not a regular file")


def why(exc: BaseException) -> str:
    """One printable line saying why a read failed."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ELOOP:
            return "is a symlink, not followed"
        if exc.errno == errno.ENXIO:
            return "is a socket or device, not read"
        if exc.errno == errno.ENOTDIR:
            return "a path component is not a directory"
        return shown(str(exc.strerror or exc))
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to hold"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return shown(type(exc).__name__)


def read(dir_fd: int, name: str, limit: int,
         stats: dict | None = None) -> tuple[bytes | None, str | None]:
    """``(data, None)``, ``(None, None)`` when absent, or ``(None, why)``: never raises.

    A symlink is not followed (dangling, looping or not); a FIFO cannot block (``O_NONBLOCK``),
    anything but a regular file is refused by ``fstat`` before a byte is read; more than
    ``limit`` bytes (a sparse file's size counts) is refused without reading it.
    ``stats``, a dict, receives the ``fstat`` of a file read (by ``name``).
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, why(exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"is {kind(st.st_mode)}, not a regular file"
        if st.st_size > limit:
            return None, f"is larger than {limit} bytes"
        from .fsops import read_fd

        data = read_fd(fd, limit, st.st_size)
        if len(data) > limit:
            return None, f"is larger than {limit} bytes"
        if stats is not None:
            stats[name] = st
        return data, None
    except (OSError, MemoryError) as exc:
        return None, why(exc)
    finally:
        os.close(fd)


def load_json(raw: bytes) -> tuple[object, str | None]:
    """``(document, None)`` or ``(None, why)``: bad UTF-8, bad JSON, deep nesting, never raised."""
    try:
        return json.loads(raw.decode("utf-8-sig")), None
    except UnicodeDecodeError:
        return None, "is not UTF-8"
    except RecursionError:
        return None, "is JSON nested too deeply"
    except MemoryError:
        return None, "is too large to parse"
    except ValueError:
        return None, "is not valid JSON"


def shown(text: object, limit: int | None = TEXT_LIMIT) -> str:
    """``text`` printable on one line: control and non-printable characters escaped
    (``\\n``, ``\\x1b``), cut at ``limit`` characters (None: not cut)."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"
