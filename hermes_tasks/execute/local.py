"""The local executor: carry out a plan's changes with files, renames and s6 calls (SPEC §6).

The only code that writes slots or signals gateways for root (or the scandir's owner). Each
phase takes the rows' changes of its kinds (:mod:`..changes`); run-level changes (the ports
allocation, before the rows; the caches, the boot log, the undo of failed creates, after)
come one by one through :meth:`Applier.apply`.

Order of the rows' changes: remove what an interrupted run left; create profile
directories; record ``desired_state`` (before any signal: a live gateway rewrites that file
on shutdown); sweep stale runtime files; update existing slots in place (restarts they owe
recorded first in ``data/restart-pending``); publish default and the registrar, rescan and
wait for their supervisors, then publish the rest; retire removed or structurally changed
slots; one rescan; delete retired slots; then the runtime, batched: everything owed a stop
or restart brought down together and waited for once, then everything owed a start brought
up together; verify every published slot is supervised. A failure of one slot is recorded
on its row and never stops the others; what it still owes is finished by the next run.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .. import changes as ch
from .. import fsops, readiness, slots, supervision
from ..errors import TaskError
from ..inventory import Settings
from ..plan import Step
from ..render import SlotSpec
from ..s6 import S6, S6Error
from ..slots import CONTROL_MODE, EVENT_MODE, SUPERVISE_MODE, owner
from . import elsewhere, planned_stop, volume

DOWN_WAIT = 10.0
SUPERVISOR_EXIT_TIMEOUT = 15.0
# s6-svscan starting no further supervisor for this long is "no progress" (SPEC §14.7);
# the whole wait is bounded by the supervise_timeout setting.
SUPERVISED_TIMEOUT = 10.0


class Applier:
    """Carries out the changes of a plan for one settings object, phase by phase, each
    phase taking the changes of its kinds (:mod:`..changes`). ``errors`` maps slot name ->
    message; ``notes`` slot -> the words of its observed changes, as they happened."""

    def __init__(self, settings: Settings, s6: S6 | None = None, warn=None):
        self.settings = settings
        self.warn = warn or (lambda _message: None)
        self.s6 = s6 or S6(settings.s6_bin_dir)
        self.scandir = settings.scandir
        self.errors: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}  # slot -> what its handlers did
        self.gid = settings.service_gid
        self.previous: dict[str, str | None] = {}  # slot -> desired_state before this run
        self.verified: set[str] = set()
        self.before: dict = {}  # slot path -> readiness.Target: the status before "up"

    # -- entry point -----------------------------------------------------------------

    def run(self, steps: list[Step], stale: list[str] = (), scanner: bool | None = None,
            wait: tuple[bool, float] = (False, 0.0)) -> None:
        """Carry out every changing row; per-slot failures land in ``self.errors``."""
        live = [s for s in steps if s.alters]
        for name in stale:
            self._guard(name, self._remove_stale, name)
        for step in live:
            if step.has(ch.CreateProfile):
                self._guard(step.slot, volume.create_profile, self.settings, step.profile)
        self._record(live)
        for step in live:
            if step.has(ch.SweepStale) and step.slot not in self.errors:
                self._guard(step.slot, self._sweep, step)
        for step in live:
            if step.in_place and step.slot not in self.errors:
                self._guard(step.slot, self._update, step)
        created = [s for s in live if s.has(ch.Publish) and s.slot not in self.errors]
        first = [s for s in created if s.get(ch.Publish).first]
        for step in first:
            self._guard(step.slot, self._publish, step.spec)
        if first and scanner:
            # s6-svscan takes new slots in directory order: default and the registrar must
            # have their supervisors before the rest can use up the supervisor limit.
            self._rescan(True, False, first)
            self._verify_supervised(first)
        rest = [s for s in created if not s.get(ch.Publish).first]
        for step in rest:
            self._guard(step.slot, self._publish, step.spec)
        retired = []
        for step in live:
            if step.has((ch.Replace, ch.Retire)) and step.slot not in self.errors:
                self._guard(step.slot, lambda s=step: retired.append((s, self._retire(s))))
        for step in live:
            if step.has(ch.DisposeProfile) and step.slot not in self.errors:
                self._guard(step.slot, self._dispose, step)
        if scanner is not False:
            added = any(s.has(ch.Rescan) or not getattr(s.get((ch.Publish, ch.Replace)),
                                                        "first", True) for s in live)
            self._rescan(added, bool(retired), rest)
        for step, old in retired:
            self._guard(step.slot, self._delete_retired, old)
        asked = elsewhere.snapshot(self.settings, live)
        elsewhere.ask(self.settings, live, self.errors)  # SPEC §14.3
        self._runtime(live)
        for step in live:
            if step.in_place and step.slot not in self.errors:
                self._guard(step.slot, self._restart, step)
        if scanner:
            self._verify_supervised([s for s in live
                                     if s.has((ch.Publish, ch.Replace, ch.Rescan))])
        if wait[0]:
            self._settle([s for s in steps if not s.failure], wait[1], scanner)
            elsewhere.settle(self.settings, [s for s in live if not s.failure], asked,
                             wait[1], self.errors, self.notes)

    def apply(self, change: ch.Change) -> None:
        """Carry out one run-level change (under the lock, like every other write)."""
        if isinstance(change, ch.AllocatePorts):
            change.allocation.record(self.warn)
        elif isinstance(change, ch.AllocateUids):
            for name, why in change.allocation.record(self.warn).items():
                if name in change.slots:  # its row fails: nothing of it starts or converts
                    self.errors.setdefault(change.slots[name], why)
        elif isinstance(change, ch.SaveCaches):
            if change.render_cache is not None:
                change.render_cache.save()
            change.slot_cache.save(change.names)
            if change.volume_cache is not None:
                change.volume_cache.save()
        elif isinstance(change, ch.AppendBootLog):
            self._append_boot_log(change.rows, change.prior_exit)
        elif isinstance(change, ch.UndoFailedCreates):
            self._undo_failed_creates(change.steps)
        else:
            raise TypeError(f"not a run-level change: {change!r}")

    # -- intent and runtime ----------------------------------------------------------

    def _record(self, steps: list[Step]) -> None:
        """Record each step's ``desired_state`` before s6 is told; keep the old for a refusal."""
        for step in steps:
            if (rec := step.get(ch.RecordState)) and step.slot not in self.errors:
                before = volume.recorded(self.settings, step.profile)
                self._guard(step.slot, volume.record, self.settings, step.profile, rec.state)
                self.previous[step.slot] = before

    def _runtime(self, steps: list[Step]) -> None:
        """Everything owed a stop or restart down together, one wait, then up together.

        Just before signalling, the desired state is read again: a service user's
        ``gateway.*`` (which cannot take root's lock) may have changed it since the plan.
        """
        def path(step: Step) -> str:
            return os.path.join(self.scandir, step.slot)

        todo = [s for s in steps if s.has(ch.RUNTIME) and s.slot not in self.errors
                and not self._overtaken(s)]
        owe = [s for s in todo if s.has(ch.RestartGateway)]
        for step in owe:  # from here on it may be down: remember it must come back
            self._guard(step.slot, self._set_pending, path(step),
                        set(_owed(step)) | {"gateway-up"})
        going = [s for s in todo if s.has((ch.BringDown, ch.RestartGateway))]
        stopping = [(s.profile, path(s)) for s in going
                    if s.has(ch.BringDown) and s.slot.startswith("gateway-")]
        marked = planned_stop.mark(self.settings.hermes_home, stopping,
                                   planned_stop.ids(self.settings),
                                   planned_stop.isolated(self.settings))
        failed = supervision.down(self.s6, [path(s) for s in going])
        planned_stop.clear(self.settings.hermes_home,
                           [p for p, sp in stopping if p in marked and sp in failed])
        coming = [s for s in todo if s.has((ch.BringUp, ch.RestartGateway))]
        self.before.update(readiness.targets([path(s) for s in coming],
                                            self.settings.hermes_home))
        # -U takes the down marker away in the same act as the start: a run killed in
        # between must not leave a normally-up slot that never ran, which reads "exit 0"
        # exactly like a gateway that exited 0 and must stay down (SPEC §6).
        for flag, chosen in (("-U", [s for s in coming if _unmarks(s)]),
                             ("-u", [s for s in coming if not _unmarks(s)])):
            failed.update(supervision.up(self.s6, [path(s) for s in chosen
                                               if path(s) not in failed], flag))
        for step in todo:
            if path(step) in failed:
                self.errors.setdefault(step.slot, failed[path(step)])
                self._restore(step)
            else:
                self.notes.setdefault(step.slot, []).append(step.get(ch.RUNTIME).done())
        for step in owe:
            if step.slot not in self.errors:
                self._guard(step.slot, self._set_pending, path(step),
                            set(_owed(step)) - {"gateway", "gateway-up"})
        for step in todo:
            if step.has(ch.RecordState) and step.slot not in self.errors:
                self._guard(step.slot, self._verify_record, step)

    def _verify_record(self, step: Step) -> None:
        """Once the gateway settled: the intent is still on record, or it is written again.

        The live gateway rewrites gateway_state.json as it shuts down (read, modify, write);
        a write of ours between its read and its write is lost to it (SPEC §7).
        """
        if step.has(ch.DisposeProfile):
            return  # the profile is gone (moved to .trash): nothing left to record in
        wanted = step.get(ch.RecordState).state
        if volume.recorded(self.settings, step.profile) != wanted:
            volume.record(self.settings, step.profile, wanted)
            self.notes.setdefault(step.slot, []).append(
                f"recorded {wanted} again (the gateway's own write had dropped it)")

    def _overtaken(self, step: Step) -> bool:
        """True when the recorded desired state changed since the plan (then leave it be)."""
        if (step.has(ch.RecordState) or not step.slot.startswith("gateway-")
                or step.has(ch.DisposeProfile)):
            return False
        now = volume.recorded(self.settings, step.profile)
        planned = "running" if step.has((ch.BringUp, ch.RestartGateway)) else "stopped"
        if now is not None and (now == "running") != (planned == "running"):
            self.notes.setdefault(step.slot, []).append(
                f"left alone: desired_state changed to {now} meanwhile")
            return True
        return False

    def _restore(self, step: Step) -> None:
        """s6 refused: put the previously recorded desired_state back."""
        if step.slot in self.previous:
            with contextlib.suppress(OSError, TaskError):
                volume.record(self.settings, step.profile, self.previous.pop(step.slot))

    def _verify_supervised(self, steps: list[Step]) -> None:
        """Every slot just published or rescanned has a supervisor (bounded), else it fails."""
        paths = {os.path.join(self.scandir, s.slot): s for s in steps
                 if s.slot not in self.errors and s.slot not in self.verified}
        limit = self.settings.supervise_timeout
        for path in supervision.wait_supervised(list(paths), SUPERVISED_TIMEOUT, limit):
            step = paths.pop(path)
            self.errors.setdefault(step.slot, f"{step.slot} is not supervised: s6-svscan "
                                   f"started no supervisor for it ({SUPERVISED_TIMEOUT:g} s "
                                   f"without progress, or supervise_timeout {limit:g} s) "
                                   "(see s6-svscan's log: its service limit?)")
            self._restore(step)
        self.verified.update(s.slot for s in paths.values())

    def _settle(self, steps: list[Step], timeout: float, scanner: bool | None) -> None:
        """``--wait``: each gateway the task was about is ready (or down), or its row fails.

        Without a supervisor nothing can come up: those rows fail at once, not at the timeout
        (and those to be down are down).
        """
        goals = {}
        for step in steps:
            if (step.slot in self.errors or not step.slot or step.has(ch.DisposeProfile)
                    or step.spec is None or step.has(ch.Retire)
                    or not step.slot.startswith("gateway-") or step.standby
                    or (step.has(ch.AskOwner) and not step.spec.down)):
                continue  # (a restart another host does: elsewhere.settle waits for it)
            goal = "down" if step.spec.down else "up"
            if goal == "down" and scanner is False:
                continue  # nothing supervises it, so nothing can be up
            if goal == "up" and scanner is False:
                self.errors.setdefault(step.slot, f"{step.slot} cannot be ready: no s6-svscan "
                                       f"runs on {self.scandir}")
                continue
            goals[os.path.join(self.scandir, step.slot)] = (goal, step)
        for goal in ("up", "down"):
            paths = [p for p, (g, _) in goals.items() if g == goal]
            for path, why in readiness.settle(paths, goal, timeout, self.settings,
                                          self.before).items():
                step = goals[path][1]
                self.errors.setdefault(step.slot, f"{step.slot}: {why}")

    # -- the run's own records (under the lock, like every other write) -----------------

    def _append_boot_log(self, rows, prior_exit: dict) -> None:
        """One line per row in the volume's boot log (SPEC §7), the service user's file."""
        from .. import bootlog

        cfg = self.settings
        bootlog.append(cfg.hermes_home, [(r.profile, r.prior_state, r.action, r.result,
                                          prior_exit.get(r.slot)) for r in rows],
                       cfg.boot_log_rotate_bytes, (cfg.service_uid, cfg.service_gid), self.warn,
                       name=bootlog.file_name(cfg.shared_volume and cfg.host_id))

    def _undo_failed_creates(self, steps) -> None:
        for step in steps:
            if step.has(ch.CreateProfile) and step.slot in self.errors:
                volume.remove_new_profile(self.settings, step.profile,
                                          self.notes.setdefault(step.slot, []).append)

    def _dispose(self, step: Step) -> None:
        change = step.get(ch.DisposeProfile)
        moved = volume.dispose(self.settings, step.profile, change.purge)
        self.notes.setdefault(step.slot, []).append(
            change.done(self.settings.hermes_home, moved))

    # -- steps -----------------------------------------------------------------------

    def _guard(self, slot: str | None, fn, *args) -> None:
        try:
            fn(*args)
        except (OSError, TaskError) as exc:  # S6Error is a TaskError
            self.errors.setdefault(slot or "?", _message(exc))

    # -- steps -----------------------------------------------------------------------

    def _sweep(self, step: Step) -> None:
        change = step.get(ch.SweepStale)
        removed = volume.sweep(self.settings, change.parts,
                               os.path.join(self.scandir, step.slot))
        if removed:
            self.notes.setdefault(step.slot, []).append(change.done(removed))

    def _update(self, step: Step) -> None:
        """Replace the changed files in place, each by a temp file + fsync + rename.

        When the change owes a restart, that is recorded first (:data:`slots.PENDING`), so
        a run interrupted before its handlers ran leaves the next run a restart to finish
        rather than a gateway silently running the old ``run``.
        """
        path = os.path.join(self.scandir, step.slot)
        litter = step.get(ch.RemoveLitter)
        for rel in litter.names if litter else ():
            parent, name = os.path.split(os.path.join(path, rel))
            with fsops.opened_dir(parent) as dfd:
                fsops.unlink_if_present(dfd, name)
        owed = _owed(step)
        if owed != _pending(step):
            self._set_pending(path, owed)
        written = step.get(ch.WriteFiles)
        for rel in written.files if written else ():
            f = step.spec.files[rel]
            parent, name = os.path.split(os.path.join(path, rel))
            os.makedirs(parent, 0o755, exist_ok=True)
            with fsops.opened_dir(parent) as dfd:
                # fsync: a slot may live on a persistent disk in some setups; it is cheap.
                fsops.write_atomic(dfd, name, f.content, f.mode,
                                   owner=file_owner(f.mode, self.gid))
        if step.has(ch.RepairSkeleton):
            self._seed_skeleton(path, step.spec.logged, step.spec.shared)
        if marker := step.get(ch.SetMarker):
            with fsops.opened_dir(path) as dfd:
                if not marker.down and step.has(ch.BringUp):
                    pass  # `s6-svc -U` removes it as it brings the gateway up (see _runtime)
                elif not marker.down:
                    fsops.unlink_if_present(dfd, "down")
                elif not fsops.lexists(dfd, "down"):
                    fsops.write_new(dfd, "down", b"", 0o644)

    def _restart(self, step: Step) -> None:
        """The slot's logger handler, once, after all its files are written; clear what it owed.

        The gateway's restart is the runtime phase's (batched). The logger (no ``finish``)
        is restarted with ``-r`` by its own supervisor, so the old and the new s6-log never
        overlap. A gateway that is down reads new files at its next start.
        """
        path = os.path.join(self.scandir, step.slot)
        owed = set(_owed(step))
        restarted = step.has(ch.RestartGateway)
        debt = step.get(ch.OwedRestarts)
        if debt and debt.gateway and not restarted:
            owed -= {"gateway", "gateway-up"}
            if not step.has(ch.RUNTIME):
                self.notes.setdefault(step.slot, []).append(debt.not_up())
        log = os.path.join(path, "log")
        if logger := step.get(ch.RestartLogger):
            if supervision.supervised(log):
                self.s6.svc(log, "-r")
                self.notes.setdefault(step.slot, []).append(logger.done())
            owed.discard("logger")
        if restarted:
            owed -= {"gateway", "gateway-up"}
        if _pending(step) or _owed(step):
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

        Everything is created relative to the staging dir's fd (this is the hot path of a
        boot with many profiles: ~40 system calls per slot). No fsync: the dir is
        invisible until renamed, and the scandir is a tmpfs rebuilt at every boot, so a
        power cut loses nothing worth keeping.
        """
        staging = os.path.join(self.scandir, f".{spec.name}.{suffix}")
        try:
            self._build(staging, spec, fsops.UMASK)
        except FileExistsError as exc:
            if exc.filename != staging:
                raise
            fsops.remove_tree(staging)  # left by an interrupted run
            self._build(staging, spec, fsops.UMASK)
        return staging

    def _build(self, staging: str, spec: SlotSpec, umask: int) -> None:
        os.mkdir(staging, 0o755)  # FileExistsError: see _staging
        dfd = os.open(staging, fsops.DIR_FLAGS)
        try:
            made = {""}
            if spec.logged:
                _mkdir_at(dfd, "log", made, umask)
            files = dict(spec.files.items())  # each made now, and let go once written
            files.update(spec.initial)
            for rel, f in files.items():
                parent = rel.rpartition("/")[0]
                if parent not in made:
                    _mkdir_at(dfd, parent, made, umask)
                fsops.write_new(dfd, rel, f.content, f.mode, umask)
                if owner := file_owner(f.mode, self.gid):
                    os.chown(rel, *owner, dir_fd=dfd, follow_symlinks=False)
            if spec.down:
                fsops.write_new(dfd, "down", b"", 0o644, umask)
            for base in ("", "log/") if spec.logged else ("",):
                _seed_fresh(dfd, base, self.gid, spec.shared, umask)
        finally:
            os.close(dfd)

    def _publish(self, spec: SlotSpec) -> None:
        staging = self._staging(spec, "tmp")
        os.rename(staging, os.path.join(self.scandir, spec.name))

    def _seed_skeleton(self, path: str, logged: bool, shared: bool = True) -> None:
        """Pre-create the control entries (slots.SKELETON); repair them in place.

        A repaired ``event/`` is also emptied of entries that are not ours: one planted
        while it was open to the service group (a symlink named ``ftrig1*``) would still
        make s6-supervise write through it as root.
        """
        private = owner(self.gid, shared=False)
        # The registrar's control entries are root's alone (slots.PRIVATE_SKELETON).
        ours = owner(self.gid) if shared else private
        sup_mode, control_mode = (SUPERVISE_MODE, CONTROL_MODE) if shared else (0o700, 0o600)
        for base in (path, os.path.join(path, "log")) if logged else (path,):
            sup = os.path.join(base, "supervise")
            _ensure(sup, sup_mode, *ours, lambda p: os.mkdir(p, 0o700), stat.S_ISDIR)
            _ensure(os.path.join(sup, "control"), control_mode, *ours,
                    lambda p: os.mkfifo(p, 0o600), stat.S_ISFIFO)
            event = os.path.join(base, "event")
            _ensure(event, EVENT_MODE, *private, lambda p: os.mkdir(p, 0o700), stat.S_ISDIR)
            _purge_foreign(event, private[0])

    def _retire(self, step: Step) -> str:
        """Take a slot out of the scan: down and wait, rename to a dot-name; return it."""
        path = os.path.join(self.scandir, step.slot)
        swap = step.has(ch.Replace)
        if swap:
            new = self._staging(step.spec, "new")
        supervision.take_down(self.s6, path, DOWN_WAIT)
        old = os.path.join(self.scandir, f".{step.slot}.{'old' if swap else 'removing'}")
        fsops.remove_tree(old)
        os.rename(path, old)
        if swap:
            os.rename(new, path)
        return old

    def _rescan(self, added: bool, removed: bool, published: list[Step] = ()) -> None:
        """Tell a running s6-svscan; quietly skip when none runs (boot, tests).

        When it refuses, the slots just ``published`` are taken out again: nothing would
        ever supervise them (SPEC §15), and the next run publishes them afresh.
        """
        if not (added or removed) or self.s6.scanner_running(self.scandir) is False:
            return
        try:
            self.s6.svscanctl(self.scandir, "-an" if removed else "-a")
        except S6Error as exc:
            self.errors.setdefault("(rescan)", _message(exc))
            for step in published:
                if step.slot not in self.errors:
                    self._guard(step.slot, self._unpublish, step, _message(exc))

    def _unpublish(self, step: Step, why: str) -> None:
        path = os.path.join(self.scandir, step.slot)
        if supervision.supervised(path):
            return  # s6-svscan took it anyway: supervised, not an orphan
        gone = os.path.join(self.scandir, f".{step.slot}.unpublished")
        fsops.remove_tree(gone)
        os.rename(path, gone)
        fsops.remove_tree(gone)
        self.errors[step.slot] = (f"{step.slot} was removed again: the rescan failed ({why}), "
                                  "so nothing would supervise it")
        self._restore(step)

    def _delete_retired(self, old: str) -> None:
        alive = supervision.wait_unsupervised([old, os.path.join(old, "log")], SUPERVISOR_EXIT_TIMEOUT)
        if alive:
            raise S6Error(f"supervisor of {old} did not exit; it will be retried next run")
        fsops.remove_tree(old)

    def _remove_stale(self, name: str) -> None:
        """Remove a dot-entry left by an interrupted run (retired ones may be supervised)."""
        path = os.path.join(self.scandir, name)
        if name.endswith((".old", ".removing")) and supervision.supervised(path):
            supervision.take_down(self.s6, path, DOWN_WAIT)
            self._rescan(False, True)
            self._delete_retired(path)
            return
        fsops.remove_tree(path)


def file_owner(mode: int, gid: int) -> tuple[int, int] | None:
    """Root's file not readable by others (it holds extra_env) goes to the service group."""
    return (0, gid) if fsops.IS_ROOT and not mode & 0o007 else None


def _pending(step: Step) -> frozenset[str]:
    """The restarts an earlier run left the slot owing (:data:`slots.PENDING`)."""
    debt = step.get(ch.OwedRestarts)
    return debt.pending if debt else frozenset()


def _owed(step: Step) -> frozenset[str]:
    """The restarts ``step`` owes its slot, as recorded in :data:`slots.PENDING`."""
    debt = step.get(ch.OwedRestarts)
    owed = set(_pending(step))
    if debt and debt.gateway:
        owed.add("gateway")
    if step.has(ch.RestartLogger):
        owed.add("logger")
    return frozenset(owed)


def _unmarks(step: Step) -> bool:
    """Whether the row removes the down marker (``s6-svc -U`` does it as it starts)."""
    marker = step.get(ch.SetMarker)
    return marker is not None and not marker.down


def _mkdir_at(dir_fd: int, rel: str, made: set[str], umask: int) -> None:
    """Create ``rel`` (0755) and its parents below ``dir_fd`` in a fresh staging tree;
    ``made`` holds what exists already and is updated."""
    path = ""
    for part in rel.split("/"):
        path = f"{path}/{part}" if path else part
        if path in made:
            continue
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755, dir_fd=dir_fd)
            if not fsops.umask_keeps(0o755, umask):
                os.chmod(path, 0o755, dir_fd=dir_fd)
        made.add(path)


def _seed_fresh(dir_fd: int, base: str, gid: int, shared_slot: bool = True,
                umask: int = fsops.UMASK) -> None:
    """The control entries in a fresh staging dir, below ``base`` (see slots.SKELETON).

    Each is created with its final mode (0700 first where the umask would strip bits),
    then given to the service group; nothing else can reach the invisible dir meanwhile.
    """
    for rel, mode, kind, shared in slots.SKELETON if shared_slot else slots.PRIVATE_SKELETON:
        path = base + rel
        exact = fsops.umask_keeps(mode, umask)
        if kind is stat.S_ISFIFO:
            os.mkfifo(path, mode if exact else 0o600, dir_fd=dir_fd)
        else:
            os.mkdir(path, mode if exact else 0o700, dir_fd=dir_fd)
        if fsops.IS_ROOT and owner(gid, shared) != _CREATED_AS:
            os.chown(path, *owner(gid, shared), dir_fd=dir_fd, follow_symlinks=False)
            exact = exact and not mode & 0o6000  # chown clears set-id bits
        if not exact:
            os.chmod(path, mode, dir_fd=dir_fd)


# Who owns what this process creates (the skeleton's root-only entries need no chown).
_CREATED_AS = (os.geteuid(), os.getegid())


def _purge_foreign(path: str, uid: int) -> None:
    """Remove every entry of the directory ``path`` not owned by ``uid``, never following one."""
    with fsops.opened_dir(path) as dfd:
        for name in os.listdir(dfd):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if st.st_uid == uid:
                continue
            if stat.S_ISDIR(st.st_mode):
                fsops.remove_tree_at(dfd, name)  # iterative, never following a link
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
