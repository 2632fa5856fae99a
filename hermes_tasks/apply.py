"""Carry out a plan: files, renames and s6 calls, in the order s6 needs (SPEC §6).

Order of a run: sweep stale runtime files of profiles whose gateway is not up; update
existing slots in place (restarts they owe recorded first in ``data/restart-pending``);
publish new slots (staging dir + one rename); retire removed or structurally changed slots
(gateway then logger down and waited for, rename to a dot-name, the B′ replacement renamed
in); one rescan; wait for retired supervisors to exit and delete them; restart what changed,
once per slot, and clear what it owed. A failure of one slot is recorded on its step and
never stops the others; what it still owes is finished by the next run.
"""

from __future__ import annotations

import contextlib
import os
import stat

from . import fsops, ownership, slots
from .inventory import Settings
from .plan import CREATE, REMOVE, SWAP, UPDATE, Step
from .profiles import STALE_FILES
from .render import SlotSpec
from .s6 import S6, S6Error
from .slots import CONTROL_MODE, EVENT_MODE, SUPERVISE_MODE, owner

DOWN_WAIT_MS = 10000
SUPERVISOR_EXIT_TIMEOUT = 15.0


class Applier:
    """Applies steps for one settings object. ``errors`` maps slot name -> message."""

    def __init__(self, settings: Settings, s6: S6 | None = None):
        self.settings = settings
        self.s6 = s6 or S6(settings.s6_bin_dir)
        self.scandir = settings.scandir
        self.errors: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}  # slot -> what its handlers did
        self.gid = settings.service_gid
        self.volume_owner = (settings.service_uid, settings.service_gid)

    # -- entry point -----------------------------------------------------------------

    def run(self, steps: list[Step], stale: list[str] = ()) -> None:
        """Apply every changing step; per-slot failures land in ``self.errors``."""
        for name in stale:
            self._guard(name, self._remove_stale, name)
        for step in steps:
            if step.sweep is not None:
                self._guard(step.slot, self._sweep, step)
        for step in steps:
            if step.op == UPDATE:
                self._guard(step.slot, self._update, step)
            elif step.op == CREATE:
                self._guard(step.slot, self._publish, step.spec)
        retired = []
        for step in steps:
            if step.op in (SWAP, REMOVE):
                self._guard(step.slot, lambda s=step: retired.append((s.slot, self._retire(s))))
        self._rescan(any(s.op in (CREATE, SWAP) for s in steps), bool(retired))
        for slot, old in retired:
            self._guard(slot, self._delete_retired, old)
        for step in steps:
            if step.op == UPDATE and step.slot not in self.errors:
                self._guard(step.slot, self._restart, step)

    def _guard(self, slot: str | None, fn, *args) -> None:
        try:
            fn(*args)
        except (OSError, S6Error) as exc:
            self.errors.setdefault(slot or "?", _message(exc))

    # -- steps -----------------------------------------------------------------------

    def _sweep(self, step: Step) -> None:
        """Delete the previous container's gateway.pid/processes.json if not up here and
        no host holds the profile's ownership lock (SPEC §13.2)."""
        home = self.settings.hermes_home
        try:
            with fsops.opened_dir(home, step.sweep) as dfd:
                present = [n for n in STALE_FILES if fsops.lexists(dfd, n)]
                if not present or self.s6.is_up(os.path.join(self.scandir, step.slot)):
                    return
                if not ownership.lock_free(dfd):  # a gateway runs it, here or on another host
                    return
                for name in present:
                    fsops.unlink_if_present(dfd, name)
        except FileNotFoundError:
            return

    def _update(self, step: Step) -> None:
        """Replace the changed files in place, each by a temp file + fsync + rename.

        When the change owes a restart, that is recorded first (:data:`slots.PENDING`), so
        a run interrupted before its handlers ran leaves the next run a restart to finish
        rather than a gateway silently running the old ``run``.
        """
        path = os.path.join(self.scandir, step.slot)
        for rel in step.litter:
            parent, name = os.path.split(os.path.join(path, rel))
            with fsops.opened_dir(parent) as dfd:
                fsops.unlink_if_present(dfd, name)
        owed = _owed(step)
        if owed != step.pending:
            self._set_pending(path, owed)
        for rel in step.write:
            f = step.spec.files[rel]
            parent, name = os.path.split(os.path.join(path, rel))
            os.makedirs(parent, 0o755, exist_ok=True)
            with fsops.opened_dir(parent) as dfd:
                # fsync: a slot may live on a persistent disk in some setups; it is cheap.
                fsops.write_atomic(dfd, name, f.content, f.mode,
                                   owner=file_owner(f.mode, self.gid))
        if step.fix_skeleton:
            self._seed_skeleton(path, step.spec.logged)
        if step.set_down is not None:
            with fsops.opened_dir(path) as dfd:
                if not step.set_down:
                    fsops.unlink_if_present(dfd, "down")
                elif not fsops.lexists(dfd, "down"):
                    fsops.write_new(dfd, "down", b"", 0o644)

    def _restart(self, step: Step) -> None:
        """The slot's handlers, once, after all its files are written (SPEC §6).

        The gateway is restarted only when ``run``/``finish`` changed and it is up, through
        down-wait-up (:meth:`S6.restart`): a plain ``-r`` would leave a daemon that exits 0
        on SIGTERM down, since ``finish`` turns 0 into "stay down". A gateway that is down
        reads the new files at its next start. The logger (no ``finish``) is restarted with
        ``-r`` by its own supervisor, so the old and the new s6-log never overlap.
        """
        path = os.path.join(self.scandir, step.slot)
        notes = self.notes.setdefault(step.slot, [])
        owed = set(_owed(step))
        if step.restart_gateway:
            if step.bring_up or self.s6.is_up(path):
                if "gateway-up" not in owed:  # from here on it may be down: remember it was up
                    owed.add("gateway-up")
                    self._set_pending(path, owed)
                self.s6.restart(path, DOWN_WAIT_MS)
                notes.append("restarted the gateway")
            else:
                notes.append("gateway not up, not restarted")
            owed -= {"gateway", "gateway-up"}
        log = os.path.join(path, "log")
        if step.restart_logger:
            if self.s6.supervised(log):
                self.s6.svc(log, "-r")
                notes.append("restarted the logger")
            owed.discard("logger")
        if step.pending or _owed(step):
            self._set_pending(path, owed)

    def _set_pending(self, path: str, tokens) -> None:
        """Record (or, when empty, clear) the restarts still owed to the slot at ``path``."""
        parent, name = os.path.split(os.path.join(path, slots.PENDING))
        if not tokens:
            with contextlib.suppress(FileNotFoundError), fsops.opened_dir(parent) as dfd:
                fsops.unlink_if_present(dfd, name)
            with contextlib.suppress(OSError):
                os.rmdir(parent)  # only when empty: a fresh slot has no data/
            return
        os.makedirs(parent, 0o755, exist_ok=True)
        with fsops.opened_dir(parent) as dfd:
            fsops.write_atomic(dfd, name, "".join(f"{t}\n" for t in sorted(tokens)).encode(),
                               0o644)

    def _staging(self, spec: SlotSpec, suffix: str) -> str:
        """Build ``spec`` completely in a dot-prefixed sibling; return its path.

        Everything is created relative to directory fds (this is the hot path of a boot
        with many profiles). No fsync: the dir is invisible until renamed, and the scandir
        is a tmpfs rebuilt at every boot, so a power cut loses nothing worth keeping.
        """
        staging = os.path.join(self.scandir, f".{spec.name}.{suffix}")
        fsops.remove_tree(staging)
        os.mkdir(staging, 0o755)
        if not fsops.umask_keeps(0o755):
            os.chmod(staging, 0o755)
        fds = {"": os.open(staging, fsops.DIR_FLAGS)}
        try:
            if spec.logged:
                fds["log"] = _mkdir_at(fds[""], "log")
            for rel, f in {**spec.files, **spec.initial}.items():
                parent, _, name = rel.rpartition("/")
                if parent not in fds:
                    fds[parent] = _mkdir_at(fds[""], parent)
                fsops.write_new(fds[parent], name, f.content, f.mode)
                if owner := file_owner(f.mode, self.gid):
                    os.chown(name, *owner, dir_fd=fds[parent], follow_symlinks=False)
            if spec.down:
                fsops.write_new(fds[""], "down", b"", 0o644)
            for key in ("", "log") if spec.logged else ("",):
                _seed_fresh(fds[key], self.gid)
        finally:
            for fd in fds.values():
                os.close(fd)
        return staging

    def _publish(self, spec: SlotSpec) -> None:
        staging = self._staging(spec, "tmp")
        os.rename(staging, os.path.join(self.scandir, spec.name))

    def _seed_skeleton(self, path: str, logged: bool) -> None:
        """Pre-create the control entries (slots.SKELETON); repair them in place.

        A repaired ``event/`` is also emptied of entries that are not ours: one planted
        while it was open to the service group (a symlink named ``ftrig1*``) would still
        make s6-supervise write through it as root.
        """
        shared, private = owner(self.gid), owner(self.gid, shared=False)
        for base in (path, os.path.join(path, "log")) if logged else (path,):
            sup = os.path.join(base, "supervise")
            _ensure(sup, SUPERVISE_MODE, *shared, lambda p: os.mkdir(p, 0o700), stat.S_ISDIR)
            _ensure(os.path.join(sup, "control"), CONTROL_MODE, *shared,
                    lambda p: os.mkfifo(p, 0o600), stat.S_ISFIFO)
            event = os.path.join(base, "event")
            _ensure(event, EVENT_MODE, *private, lambda p: os.mkdir(p, 0o700), stat.S_ISDIR)
            _purge_foreign(event, private[0])

    def _retire(self, step: Step) -> str:
        """Take a slot out of the scan: down and wait, rename to a dot-name; return it."""
        path = os.path.join(self.scandir, step.slot)
        if step.op == SWAP:
            new = self._staging(step.spec, "new")
        self._bring_down(path)
        old = os.path.join(self.scandir, f".{step.slot}.{'old' if step.op == SWAP else 'removing'}")
        fsops.remove_tree(old)
        os.rename(path, old)
        if step.op == SWAP:
            os.rename(new, path)
        return old

    def _bring_down(self, path: str) -> None:
        """Stop a slot that is about to leave the scan: gateway first, then its logger.

        Both are waited for, so the rescan that drops the old supervisors can never run the
        old gateway beside a new one, nor let a new s6-log meet the old one's lock on the
        shared log directory. A symlinked slot is followed (s6 supervises its target).
        """
        for target in (path, os.path.join(path, "log")):
            if not self.s6.supervised(target):
                continue
            try:
                self.s6.svc(target, "-wD", "-d", wait_ms=DOWN_WAIT_MS)
            except S6Error:
                with contextlib.suppress(S6Error):
                    self.s6.svc(target, "-k")
                with contextlib.suppress(S6Error):
                    self.s6.svc(target, "-wD", "-d", wait_ms=DOWN_WAIT_MS)

    def _rescan(self, added: bool, removed: bool) -> None:
        """Tell a running s6-svscan; quietly skip when none runs (boot, tests)."""
        if not (added or removed) or self.s6.scanner_running(self.scandir) is False:
            return
        try:
            self.s6.svscanctl(self.scandir, "-an" if removed else "-a")
        except S6Error as exc:
            self.errors.setdefault("(rescan)", _message(exc))

    def _delete_retired(self, old: str) -> None:
        alive = self.s6.wait_unsupervised([old, os.path.join(old, "log")], SUPERVISOR_EXIT_TIMEOUT)
        if alive:
            raise S6Error(f"supervisor of {old} did not exit; it will be retried next run")
        fsops.remove_tree(old)

    def _remove_stale(self, name: str) -> None:
        """Remove a dot-entry left by an interrupted run (retired ones may be supervised)."""
        path = os.path.join(self.scandir, name)
        if name.endswith((".old", ".removing")) and self.s6.supervised(path):
            self._bring_down(path)
            self._rescan(False, True)
            self._delete_retired(path)
            return
        fsops.remove_tree(path)


def file_owner(mode: int, gid: int) -> tuple[int, int] | None:
    """Root's file not readable by others (it holds extra_env) goes to the service group."""
    return (0, gid) if fsops.IS_ROOT and not mode & 0o007 else None


def _owed(step: Step) -> frozenset[str]:
    """The restarts ``step`` owes its slot, as recorded in :data:`slots.PENDING`."""
    owed = set(step.pending)
    if step.restart_gateway:
        owed.add("gateway")
    if step.restart_logger:
        owed.add("logger")
    return frozenset(owed)


def _mkdir_at(dir_fd: int, rel: str) -> int:
    """Create ``rel`` (0755) below ``dir_fd`` in a fresh staging tree; return its fd."""
    fd = dir_fd
    for part in rel.split("/"):
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
            if not fsops.umask_keeps(0o755):
                os.chmod(part, 0o755, dir_fd=fd)
        nfd = os.open(part, fsops.DIR_FLAGS, dir_fd=fd)
        if fd != dir_fd:
            os.close(fd)
        fd = nfd
    return fd


def _seed_fresh(dir_fd: int, gid: int) -> None:
    """The control entries in a fresh staging dir (see slots.SKELETON)."""
    os.mkdir("supervise", 0o700, dir_fd=dir_fd)
    os.mkfifo("supervise/control", 0o600, dir_fd=dir_fd)
    os.mkdir("event", 0o700, dir_fd=dir_fd)
    for rel, mode, _, shared in slots.SKELETON:
        if fsops.IS_ROOT:  # otherwise we created them as our own already
            os.chown(rel, *owner(gid, shared), dir_fd=dir_fd, follow_symlinks=False)
        os.chmod(rel, mode, dir_fd=dir_fd)  # after chown, which clears setgid bits


def _purge_foreign(path: str, uid: int) -> None:
    """Remove every entry of the directory ``path`` not owned by ``uid``, never following one."""
    import shutil

    with fsops.opened_dir(path) as dfd:
        for name in os.listdir(dfd):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if st.st_uid == uid:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=dfd)
            else:
                os.unlink(name, dir_fd=dfd)


def _ensure(path: str, mode: int, uid: int, gid: int, create, kind) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        create(path)
        st = os.lstat(path)
    if not kind(st.st_mode):
        raise OSError(f"{path} exists but has the wrong type")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode or (st.st_uid, st.st_gid) != (uid, gid):
        os.chmod(path, mode)  # after chown: chown clears setgid bits


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)
