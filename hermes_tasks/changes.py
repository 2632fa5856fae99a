"""The change kinds a plan is made of: every write and signal of a run is one of these.

The planner (:mod:`.plan`) gives each row an ordered tuple of changes; the executor
(:mod:`.execute.local`) carries them out by kind, in phases (publish, retire, bring down,
bring up, verify); the report (:mod:`.report`) words a row from its changes' own
:meth:`describe`, so ``--check`` and the run use one vocabulary.

``describe(check)`` is what ``--check`` prints (``check=True``) and what the run reports
(``check=False``). For an *observed* change the run's words depend on what happened (a
logger that was not supervised is not restarted, a sweep that found nothing says
nothing): the executor reports those, through :meth:`done`, when they happened.

Run-level changes (no row of their own) are :class:`AllocatePorts`, :class:`AllocateUids`,
:class:`SaveCaches`,
:class:`AppendBootLog` and :class:`UndoFailedCreates`, given to the executor's ``apply``.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import records

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~4 ms of every run (issue 24)
    from typing import Any, ClassVar

FileFact = tuple[bytes, int] | None  # (content, mode) as found, None when missing


@records.record(frozen=True)
class Change:
    """One change of a row. ``alters``: carrying it out changes files, state or processes
    (a row with one such change is ``changed``). ``observed``: the run's words come from
    the executor (:meth:`done`), not from the plan."""

    alters: ClassVar[bool] = True
    observed: ClassVar[bool] = False
    in_place: ClassVar[bool] = False  # part of an existing slot's update (files, marker…)
    slot_files: ClassVar[bool] = False  # changes the slot directory (shown by --diff)

    def describe(self, check: bool) -> str:
        raise NotImplementedError

    def done(self, *_: Any) -> str:
        """The run's words once it happened (observed changes)."""
        return self.describe(False)


def _verb(check: bool, would: str, did: str) -> str:
    return would if check else did


# -- the volume ------------------------------------------------------------------------


@records.record(frozen=True)
class CreateProfile(Change):
    """profile.create: make ``profiles/NAME`` (with its SOUL.md) before anything else."""

    name: str

    def describe(self, check: bool) -> str:
        return _verb(check, "would create ", "created ") + f"profiles/{self.name}"


@records.record(frozen=True)
class RecordState(Change):
    """Record ``desired_state`` in the profile's gateway_state.json before s6 is told."""

    state: str

    def describe(self, check: bool) -> str:
        return _verb(check, "would record", "recorded") + f" {self.state}"


@records.record(frozen=True)
class SweepStale(Change):
    """Remove the stale runtime files of a gateway that is not up (``parts``: its profile)."""

    parts: tuple[str, ...]
    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would remove stale runtime files", "removed stale runtime files")

    def done(self, removed=()) -> str:
        return "removed stale " + ", ".join(removed) if removed else ""


@records.record(frozen=True)
class DisposeProfile(Change):
    """profile.delete: move the profile to ``.trash`` (``purge``: and delete it there)."""

    purge: bool = False
    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        if self.purge:
            return _verb(check, "would delete the profile", "deleted the profile")
        return _verb(check, "would move the profile to .trash",
                     "moved the profile to .trash")

    def done(self, home: str = "", moved: str = "") -> str:
        if self.purge:
            return self.describe(False)
        return f"moved the profile to {home}/.trash/profiles/{moved}"


@records.record(frozen=True)
class AskOwner(Change):
    """SPEC §14.3: the gateway runs on ``host``, whose agent acts on the intent recorded
    here; ``restart``: a one-shot restart request is left for it (a change of its own)."""

    host: str
    restart: bool = False

    @property
    def alters(self) -> bool:  # type: ignore[override]
        return self.restart

    def describe(self, check: bool) -> str:
        what = "to restart it" if self.restart else "to stop it"
        return (f"{_verb(check, 'would ask', 'asked')} {self.host}, which runs the gateway, "
                f"{what}")


# -- the slot directory ------------------------------------------------------------------


@records.record(frozen=True)
class Publish(Change):
    """A new slot, built in a staging dir and renamed into the scandir. ``first``: default
    and the registrar, published and supervised before the rest. ``marker``: the down
    marker it is published with (for --diff)."""

    spec: Any
    first: bool = False
    slot_files: ClassVar[bool] = True

    @property
    def marker(self) -> bool | None:
        return self.spec.down or None

    def describe(self, check: bool) -> str:
        return _verb(check, "would be published", "published")


@records.record(frozen=True)
class Replace(Change):
    """A slot that cannot be updated in place: the new one is built aside, the old one
    brought down and swapped out (sequence B′). ``before``: the files as found."""

    spec: Any
    reason: str
    before: dict = records.field(default_factory=dict, compare=False)
    marker: bool | None = None
    first: bool = False  # default or the registrar (see Publish)
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return f"{_verb(check, 'would be ', '')}replaced: {self.reason}"


@records.record(frozen=True)
class Retire(Change):
    """Take the slot out of the scan: down and wait, rename aside, rescan, delete."""

    reason: str
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return f"{_verb(check, 'would be ', '')}retired: {self.reason}"


@records.record(frozen=True)
class WriteFiles(Change):
    """Rewrite ``files`` of an existing slot in place (temp file + rename each);
    ``before`` keeps what was there for --diff."""

    files: tuple[str, ...]
    before: dict = records.field(default_factory=dict, compare=False)
    in_place: ClassVar[bool] = True
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would rewrite ", "rewrote ") + ", ".join(self.files)


@records.record(frozen=True)
class SetMarker(Change):
    """Add (``down``) or remove the slot's down marker."""

    down: bool
    in_place: ClassVar[bool] = True
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        if check:
            verb = "would add" if self.down else "would remove"
        else:
            verb = "added" if self.down else "removed"
        return f"{verb} the down marker"


@records.record(frozen=True)
class RepairSkeleton(Change):
    """Repair the slot's supervise/ and event/ entries (modes, owners, foreign entries)."""

    in_place: ClassVar[bool] = True
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would repair", "repaired") + " supervise/event permissions"


@records.record(frozen=True)
class RemoveLitter(Change):
    """Remove the temp files an interrupted run left in the slot."""

    names: tuple[str, ...]
    in_place: ClassVar[bool] = True
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return (_verb(check, "would remove", "removed") + " temp files left by an "
                "interrupted run: " + ", ".join(self.names))


@records.record(frozen=True)
class OwedRestarts(Change):
    """The restarts this update owes the slot, kept in ``data/restart-pending`` until
    done: ``pending`` an earlier run left; ``gateway``: its run/finish changed (or it owed
    one), so a running gateway is restarted, and one that is not up reads them at its
    next start."""

    pending: frozenset[str] = frozenset()
    gateway: bool = False
    in_place: ClassVar[bool] = True
    slot_files: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        if not self.pending:
            return ""
        return _verb(check, "would finish", "finished") + " a restart an earlier run left pending"

    @staticmethod
    def not_up() -> str:
        """The run's words when the gateway owed a restart but is not up."""
        return "gateway not up, not restarted"


# -- s6 ------------------------------------------------------------------------------------


@records.record(frozen=True)
class Rescan(Change):
    """An existing slot nobody supervises under a running scanner: tell s6-svscan."""

    def describe(self, check: bool) -> str:
        return _verb(check, "not supervised: would rescan", "not supervised: rescanned")


@records.record(frozen=True)
class BringDown(Change):
    """The gateway is up (or wanted up) and must not be: brought down with the batch."""

    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would bring down", "brought down")


@records.record(frozen=True)
class BringUp(Change):
    """The gateway must run and does not: brought up with the batch (with ``s6-svc -U``
    when the row also removes the down marker: both in one act)."""

    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would bring up", "brought up")


@records.record(frozen=True)
class RestartGateway(Change):
    """The running gateway is restarted (down with the batch, up with the batch)."""

    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would restart the gateway", "restarted the gateway")


@records.record(frozen=True)
class RestartLogger(Change):
    """The slot's s6-log is restarted by its own supervisor (only when supervised)."""

    observed: ClassVar[bool] = True

    def describe(self, check: bool) -> str:
        return _verb(check, "would restart the logger", "restarted the logger")


RUNTIME = (BringDown, BringUp, RestartGateway)


# -- run-level changes (no row of their own) ---------------------------------------------


@records.record(frozen=True)
class AllocatePorts(Change):
    """Lock ``gateway-ports.json`` (0.5 s at most), set an unusable one aside by one
    rename, and save the allocation the plan used (:class:`..ports.Allocation`)."""

    allocation: Any

    def describe(self, check: bool) -> str:
        return _verb(check, "would record", "recorded") + " the gateways' ports"


@records.record(frozen=True)
class AllocateUids(Change):
    """Lock ``profile-uids.json`` (0.5 s at most), re-read it and save the isolated
    profiles' uids the plan used (:class:`..uids.Pending`); a profile whose uid could not
    be recorded as planned fails this run (the next run retries): ``slots`` maps each
    profile of the plan to its row's slot."""

    allocation: Any
    slots: Mapping[str, str] = records.field(default_factory=dict, compare=False)

    def describe(self, check: bool) -> str:
        return _verb(check, "would record", "recorded") + " the profiles' uids"


@records.record(frozen=True)
class SaveCaches(Change):
    """Keep what this run rendered (None for a partial run) and found (the slot cache of
    ``names``; the volume cache, when the run had one)."""

    render_cache: Any
    slot_cache: Any
    names: frozenset[str]
    volume_cache: Any = None

    def describe(self, check: bool) -> str:
        return _verb(check, "would save", "saved") + " the render, slot and volume caches"


@records.record(frozen=True)
class AppendBootLog(Change):
    """One line per row in the volume's boot log (SPEC §7); ``prior_exit``: slot → the
    exit code of its last run, when known (SPEC §15)."""

    rows: tuple
    prior_exit: dict = records.field(default_factory=dict, compare=False)

    def describe(self, check: bool) -> str:
        return _verb(check, "would append", "appended") + f" {len(self.rows)} lines to the boot log"


@records.record(frozen=True)
class UndoFailedCreates(Change):
    """A profile.create whose slot failed leaves nothing behind (SPEC §7): the rows
    ``steps`` whose profile this run created and whose slot failed lose it again."""

    steps: tuple = ()

    def describe(self, check: bool) -> str:
        return _verb(check, "would remove", "removed") + " the profiles of failed creates"
