"""Parsed inventory files kept between runs, so a boot, a re-run or a status never imports YAML.

Importing PyYAML and parsing the inventory cost ~12 ms and ~1 MiB of every run (issue 24),
and it happens before the scandir or the render cache's directory is known. Every file the
inventory names is still found and read as before (the same probes, reads and errors); only
``yaml.safe_load`` of its bytes is looked up here, by a hash of exactly those bytes. A
parse is a function of its input, so a hit is right by construction: no timestamps to
trust, nothing a restored mtime or a swapped symlink could hide, and an image can ship a
primed cache that still matches after a pull (its files get new inodes and ctimes).
Only documents JSON holds exactly (str keys; str, int, float, bool, null, lists, mappings)
are kept; anything else (a date, a set, a shared alias's loop) is parsed every time.

The cache is one JSON file, ``.hermes-tasks.inventory``, in :data:`DIRECTORY`, the image's
root-only cache directory (Dockerfile), which is never created here. Its content becomes
root's settings, so it is trusted only under the render cache's rule
(:func:`fsops.trusted_dir`, :func:`fsops.read_trusted`): the directory is the
euid's and writable by nobody else, the file is a regular file owned by the euid, not
group/other-writable, opened without following symlinks. Anything else (missing, foreign,
corrupt, for another PyYAML) is ignored, the files are parsed, and a trusted directory gets
a fresh copy. A caller without such a directory (a user running from a checkout) parses.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

try:  # CPython's own BLAKE2: importing hashlib loads OpenSSL first
    from _blake2 import blake2b
except ImportError:  # another Python
    from hashlib import blake2b

from . import fsops
from .fsops import package_init

# The image makes it (root's, 0700) for the render cache too.
DIRECTORY = "/var/cache/hermes-tasks"
# Names another directory (a host without the image's layout, the bench); trusted only
# under the same rule, so naming a directory the caller does not own alone only costs a parse.
DIRECTORY_VAR = "HERMES_TASKS_CACHE_DIR"
NAME = ".hermes-tasks.inventory"
# Bump when the file's shape changes.
FORMAT = 1
LIMIT = 4 << 20
KEEP = 16  # documents kept: a few inventories' files (the image's, a test's, an operator's)


def directory(environ) -> str:
    """Where the cache file is: ``$HERMES_TASKS_CACHE_DIR``, else :data:`DIRECTORY`."""
    return environ.get(DIRECTORY_VAR) or DIRECTORY


def stamp() -> list:
    """What identifies the parser: this format and the installed PyYAML, found unimported.

    By a hash of its ``__init__.py`` (which holds its version), not that file's stat: an
    image layer need not keep the mtime the build saw, and the image's primed cache must
    still match at boot.
    """
    out: list = [FORMAT]
    digest = fsops.digest_file(package_init("yaml"), LIMIT)
    if digest is not None:
        out.append(digest)
    return out


def _digest(data: bytes) -> str:
    return blake2b(data, digest_size=32).hexdigest()


class ParsedCache:
    """Parsed documents by the hash of their bytes; read on first use, saved on a miss."""

    def __init__(self, directory: str | None):
        """``directory``: where the cache file is (usually :data:`DIRECTORY`); None: none."""
        self.directory = directory
        self._loaded: dict[str, str] | None = None if directory else {}
        self._stamp: list = []
        self._new: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        if self._loaded is not None:
            return self._loaded
        self._stamp = stamp()
        trusted, doc = fsops.load_trusted(self.directory, NAME, LIMIT)
        if not trusted:
            self.directory = None  # written only once found trusted
        self._loaded = (fsops.strings(doc.get("docs")) if doc.get("format") == FORMAT
                        and doc.get("stamp") == self._stamp else {})
        return self._loaded

    def parse(self, raw: bytes, produce: Callable[[bytes], object]) -> object:
        """What ``produce(raw)`` returns (a fresh object each time); its errors propagate."""
        key = _digest(raw)
        text = self._new.get(key) or self._load().get(key)
        if text is not None:
            with contextlib.suppress(ValueError, RecursionError):
                return json.loads(text)
        doc = produce(raw)
        text = encode(doc)
        if text is not None:
            self._new[key] = text
        return doc

    def save(self) -> None:
        """Keep what this run parsed (best effort: a failure costs speed only)."""
        if not self._new or self.directory is None:
            return
        docs = dict(self._new)
        size = sum(map(len, docs.values()))
        for key, text in (self._loaded or {}).items():
            if len(docs) >= KEEP or size + len(text) > LIMIT // 2:
                break
            if key not in docs:
                docs[key] = text
                size += len(text)
        data = json.dumps({"format": FORMAT, "stamp": self._stamp, "docs": docs},
                          separators=(",", ":")).encode()
        fsops.save_trusted(self.directory, NAME, data, LIMIT)
        self._loaded, self._new = docs, {}


def encode(doc: object) -> str | None:
    """``doc`` as JSON text when decoding that text gives back exactly ``doc``, else None."""
    try:
        text = json.dumps(doc, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text if _same(doc, json.loads(text)) else None
    except (TypeError, ValueError, RecursionError):
        return None


def _same(a: object, b: object) -> bool:
    """Equal with the same types throughout (1 == 1.0 == True, and a mapping's int key
    comes back from JSON as a string); key order too, which decides error messages."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return len(a) == len(b) and all(
            type(ka) is str and ka == kb and _same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) in (str, int, float, bool, type(None)) and a == b
