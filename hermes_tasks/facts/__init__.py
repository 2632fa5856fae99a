"""Facts: everything a plan is made from, read once, before anything changes.

* volume — the profiles on disk and their desired state (:mod:`profiles`);
* slots — what each slot in the scandir holds (:mod:`slots`);
* runtime — supervised / up / ready / pid / wanted / last exit of each slot, and the
  gateway's own reason for stopping (:mod:`.runtime`);
* ports — each gateway's API server and webhook ports, and the gateways that must not
  start because another takes their port (:mod:`..ports`, SPEC §11).

Reading only (what a run records, e.g. the ports it allocated, is a change the executor
carries out: ``Facts.allocation``); never follows a symlink on the volume; one ``supervise/status`` read per slot,
no process per slot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .. import ownership, placement, profiles, records, rendercache, slots, svstatus, uids, volcache, volfile
from .. import ports as portsmod
from ..errors import TaskError
from ..inventory import Settings
from ..profiles import SLOT_PREFIX, Profile, Skipped
from ..s6 import S6
from ..slotcache import SlotCache
from ..slots import SlotFacts
from . import runtime, served
from .runtime import Runtime


@records.record
class Facts:
    """One read of the world for one run.

    ``scanner`` is whether an s6-svscan listens on the scandir (None: may not tell).
    ``slots``/``runtime`` are keyed by slot name; a missing key means "no such slot".
    """

    settings: Settings
    profiles: list[Profile]
    skipped: list[Skipped]
    existing: list[str]  # visible slot names we manage, sorted
    stale: list[str]  # dot-entries an interrupted run left
    scanner: bool | None
    slots: dict[str, SlotFacts | None] = records.field(default_factory=dict)
    runtime: dict[str, Runtime] = records.field(default_factory=dict)
    # Profiles on the volume that this host does not supervise: name -> reason (§12).
    unplaced: dict[str, str] = records.field(default_factory=dict)
    # Gateways that must not start (e.g. a port another gateway takes, §11): name -> why.
    blocked: dict[str, str] = records.field(default_factory=dict)
    # Every gateway's ports (default and each profile on the volume), for the run scripts.
    ports: dict[str, portsmod.Gateway] = records.field(default_factory=dict)
    # Slots found as rendered by earlier runs (:mod:`..slotcache`); None reads every file.
    slot_cache: SlotCache | None = None
    # Profiles whose gateway another host runs (it holds the ownership lock): name -> host.
    # Read only for --wait (see :func:`owners`).
    elsewhere: dict[str, str] = records.field(default_factory=dict)
    # GATEWAY_MULTIPLEX_PROFILES (SPEC §15): named profiles whose state says running but
    # whose slot reconcile registers down, since the default gateway serves them.
    multiplexed: set[str] = records.field(default_factory=set)
    # Isolated profiles (SPEC §16): name -> the uid its gateway runs as (isolation on), or
    # the uid it had, for a profile whose tree goes back to the service user (off).
    uids: dict[str, int] = records.field(default_factory=dict)
    # The port allocation a run records (None: nothing to record, or --check).
    allocation: portsmod.Allocation | None = None
    # The uid allocation a run records (None: nothing to record, or --check).
    uid_allocation: uids.Pending | None = None
    # Profiles found as an earlier run read them (:mod:`..volcache`); saved by the run's
    # SaveCaches change, never by --check.
    volume_cache: volcache.VolumeCache | None = None

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)


def require_scandir(settings: Settings) -> None:
    """The one "scandir missing" check: a one-line error naming the fix."""
    if not os.path.isdir(settings.scandir):
        raise TaskError(f"scandir {settings.scandir} does not exist or is not a directory "
                        "(is s6 set up? set scandir in the inventory or with --var)")


def volume(settings: Settings, warn, files=None, owners=None,
           cache=None) -> tuple[list[Profile], list[Skipped]]:
    """Profiles (default first, then by name) and the directories skipped with a warning.

    ``files``, a dict, receives each profile's port-relevant files (``.env``,
    ``config.yaml``), read through the directory discovery has open anyway; ``owners``,
    a dict, the owner uid of each one's directory (SPEC §16). ``cache``, a
    :class:`..volcache.VolumeCache`: profiles unchanged since an earlier run read them are
    taken from it (``files`` then required).
    """
    home = settings.hermes_home
    each = None
    if files is not None:
        def each(name, dfd, entry=None):
            if owners is not None:
                owners[name] = (entry.dir if entry is not None else os.fstat(dfd)).st_uid
            if entry is not None and entry.hit:
                files[name] = _cached_ports(name, entry.record[3])
                return
            noted = warn if entry is None else profiles._noting(entry, warn)
            try:
                files[name] = portsmod.read_profile_at(
                    dfd, home, name, noted, entry.files if entry is not None else None)
            except Exception as exc:  # noqa: BLE001 - hostile input fails this profile's ports only
                noted(f"could not read the ports of profile {profiles.escape(name)}: "
                      f"{volfile.why(exc)}; none are taken from its files")
                files[name] = portsmod.ProfileFacts(name)
            if entry is not None:
                entry.ports = _ports_record(files[name])
    return profiles.discover(home, warn, each, cache if files is not None else None)


def _volume_cache(settings: Settings) -> volcache.VolumeCache | None:
    """The volume cache, kept only in a ``render_cache_dir`` we trust (the image's, which a
    restarted container keeps): never in the scandir, where every entry is accounted for."""
    where = rendercache.location(settings)
    if os.path.abspath(where) == os.path.abspath(settings.scandir):
        return None
    return volcache.VolumeCache.load(where, settings.hermes_home)


def _ports_record(found: portsmod.ProfileFacts) -> list | None:
    """A profile's port facts as the volume cache keeps them (None: not keepable)."""
    config = {}
    for plat, cfg in found.config.items():
        if not (volcache.plain(cfg.extra_port) and volcache.plain(cfg.port)):
            return None
        config[plat] = [cfg.enabled, cfg.extra_port, cfg.port, cfg.has_key]
    return [dict(found.env), config]


def _cached_ports(name: str, rec: list) -> portsmod.ProfileFacts:
    env, config = rec
    return portsmod.ProfileFacts(name, dict(env), {
        plat: portsmod.PlatformConfig(enabled=bool(c[0]), extra_port=c[1], port=c[2],
                                      has_key=bool(c[3]))
        for plat, c in config.items()})


def scandir(settings: Settings) -> tuple[list[str], list[str], bool | None]:
    """(our visible slots, stale dot-entries, is a scanner running)."""
    existing, stale = slots.managed_names(settings.scandir)
    return existing, stale, S6.scanner_running(settings.scandir)


def gather(settings: Settings, warn, names=(), *, for_run: bool = False,
           new: Iterable[str] = (), starting: Iterable[str] = ()) -> Facts:
    """Volume, scandir, placement and port facts; slot files and runtime come from :func:`read_slots`.

    ``names`` are the intent's named targets: one placed elsewhere is unplaced even before
    its profile exists (profile.create makes only the directory then, SPEC §13.3).
    ``for_run``: the plan of a real run (never ``--check``), which records the ports it
    allocates (``Facts.allocation``, carried out by the executor); ``new`` names profiles
    about to be created, which get ports too; ``starting`` the ones the task starts
    (checked for ports after all the others).
    """
    require_scandir(settings)
    files: dict = {}
    owners: dict = {}
    existing, stale, scanner = scandir(settings)
    cache = _volume_cache(settings)
    try:
        found, skipped = volume(settings, warn, files, owners, cache)
    except Exception as exc:  # noqa: BLE001 - see _unreadable
        found, skipped = _unreadable(settings, existing, exc, warn), []
    if cache is not None:
        cache.finish()
    known = Facts(settings, found, skipped, existing, stale, scanner)
    known.volume_cache = cache
    why = placement.reason(settings.host_id)
    for name in [*(p.name for p in found), *names]:
        if not placement.placed(name, settings.gateway_profiles):
            known.unplaced[name] = why
    try:
        ports(known, warn, for_run=for_run, new=new, files=files, starting=starting)
    except Exception as exc:  # noqa: BLE001 - see _unreadable
        _unreadable(settings, existing, exc, warn)
        known.ports, known.blocked, known.allocation = {}, {}, None
    isolation(known, warn, for_run=for_run, new=new, owners=owners)
    multiplexing(known, warn, starting)
    return known


def isolation(known: Facts, warn, *, for_run: bool = False, new: Iterable[str] = (),
              owners=None) -> None:
    """Fill ``known.uids`` (SPEC §16); a profile with no usable uid is blocked. Reads only:
    ``for_run`` keeps what the run records (``Facts.uid_allocation``, the executor's)."""
    names = [p.name for p in known.profiles[1:]]
    names += sorted(n for n in set(new) if n not in names)
    try:
        known.uids, blocked, pending = uids.for_settings(known.settings, names, owners or {},
                                                         warn)
        known.uid_allocation = pending if for_run else None
    except Exception as exc:  # noqa: BLE001 - hostile input: nothing isolated starts
        if not known.settings.profile_isolation:
            return
        why = f"could not allocate the profiles' uids: {volfile.why(exc)}"
        warn(why)
        known.uids, blocked = {}, dict.fromkeys(names, why)
    for name, why in blocked.items():
        known.blocked.setdefault(name, why)


def _unreadable(settings: Settings, existing: list[str], exc: BaseException,
                warn) -> list[Profile]:
    """The volume could not be read at all (a last resort: every read is contained).

    With no slot published yet (the boot), the run goes on with ``default`` alone, down, so
    ``gateway-default`` and the registrar are still published (SPEC §14.9). With slots in
    place, guessing would retire or restart them: the run stops with one line instead.
    """
    text = f"could not read {settings.hermes_home}: {volfile.why(exc)}"
    if existing:
        raise TaskError(f"{text}; nothing was changed")
    warn(f"{text}; only gateway-default (down) and the registrar are published")
    return [Profile(profiles.DEFAULT, (), None, False)]


def multiplexing(known: Facts, warn, starting: Iterable[str] = ()) -> None:
    """With GATEWAY_MULTIPLEX_PROFILES truthy in the container environment, the default
    gateway serves every profile: a named gateway started explicitly duplicates it."""
    from .. import container

    if not container.multiplex():
        return
    known.multiplexed = {p.name for p in known.profiles[1:] if p.autostart}
    for name in sorted(set(starting)):
        if name != profiles.DEFAULT:
            warn(f"GATEWAY_MULTIPLEX_PROFILES is on: the default gateway already serves "
                 f"{profiles.escape(name)}; its own gateway duplicates the multiplexer")


def ports(known: Facts, warn, *, for_run: bool = False, new: Iterable[str] = (), files=None,
          starting: Iterable[str] = ()) -> None:
    """Fill ``known.ports`` and ``known.blocked``: of two gateways that would bind one port
    the later is registered down and failed, never started (SPEC §11).

    Ports cover every profile on the volume, whatever the intent's scope, so a profile's
    ports do not depend on which task ran last.
    """
    names = [p.name for p in known.profiles[1:]]
    names += sorted(n for n in set(new) if n not in names and n != profiles.DEFAULT
                    and profiles.valid_name(n))
    known.ports, known.allocation = portsmod.plan_for_settings(
        known.settings, names, warn, recording=for_run, facts=files)
    order = [(p.name, p.autostart and p.name not in known.unplaced) for p in known.profiles]
    blocked = portsmod.collisions(order, known.ports)
    serving = _serving(known, order) if blocked else {}
    if serving:
        blocked = portsmod.collisions(order, known.ports, serving)
    # An explicit start of a gateway that would not run anyway (stopped, or blocked) comes
    # after every gateway that does: it may not take a port one of them holds, whatever the
    # names' order. One that already wins its ports keeps its place (nothing changes).
    wins = {n for n, runs in order if runs and n not in blocked}
    late = [n for n in sorted(set(starting)) if n not in wins and n not in known.unplaced]
    if late:
        order = [(n, runs) for n, runs in order if n not in late] + [(n, True) for n in late]
        blocked = portsmod.collisions(order, known.ports, serving)
    known.blocked.update(blocked)


def _serving(known: Facts, order) -> dict[str, set[int]]:
    """The ports that gateways wanting a contested port actually listen on now (SPEC §14.5):
    only those, so the usual run reads nothing of /proc."""
    wanting: dict[int, list[str]] = {}
    for name, _ in order:
        gw = known.ports.get(name)
        for port in (gw.bound.values() if gw else ()):
            wanting.setdefault(port, []).append(name)
    involved = {n for names in wanting.values() if len(names) > 1 for n in names}
    out: dict[str, set[int]] = {}
    for name in sorted(involved):
        try:
            status = svstatus.read(os.path.join(known.settings.scandir, SLOT_PREFIX + name))
        except (OSError, ValueError):
            continue
        if status.running and status.pid:
            out[name] = served.listening(status.pid)
    return out


def read_slots(facts: Facts, specs, extra: list[str] = ()) -> None:
    """Read the files of each desired slot (``specs``) and the runtime of every slot that exists.

    ``extra`` names more existing slots whose runtime matters (those about to be retired).
    A slot's files and runtime are read through one directory fd (the hot path at 1000).
    """
    cfg = facts.settings
    present = set(facts.existing)
    under = os.path.join(cfg.scandir, "")
    for spec in specs:
        path = under + spec.name
        try:
            dfd = slots.open_slot(path)
        except FileNotFoundError:
            facts.slots[spec.name] = None
            continue
        except OSError:
            facts.slots[spec.name] = slots.not_a_directory(spec, path)
            continue
        try:
            found = slots.read_at(dfd, path, spec, cfg.service_gid, facts.slot_cache)
            facts.slots[spec.name] = found
            if spec.name in present and spec.name not in facts.runtime:
                seen = found.down if found.structural is None else None
                facts.runtime[spec.name] = _runtime(cfg, spec.name, dfd, seen,
                                                    staying_down=spec.down)
        finally:
            os.close(dfd)
    for name in [*(s.name for s in specs), *extra]:
        if name in present and name not in facts.runtime:
            facts.runtime[name] = _runtime(cfg, name)


def _runtime(cfg: Settings, name: str, dfd: int | None = None,
             down: bool | None = None, staying_down: bool = False) -> Runtime:
    """``staying_down``: see :func:`.runtime.read` (the plan's own rule, :func:`..plan._runtime`,
    reads the reason and the hold only of a gateway it wants up)."""
    profile = name[len(SLOT_PREFIX):] if name.startswith(SLOT_PREFIX) else None
    rt = runtime.read(os.path.join(cfg.scandir, name), cfg.hermes_home, profile, dfd, down,
                      staying_down)
    if rt.held and profile is not None:
        from ..logs import directory

        rt = runtime.with_log_tail(rt, cfg.hermes_home,
                                   directory(profile, cfg.host_id, cfg.shared_volume))
    return rt


def owners(facts: Facts, names: Iterable[str], warn=None) -> None:
    """Fill ``facts.elsewhere`` for ``names``: which another host runs (SPEC §12, §13.1).

    A probe of each profile's ownership lock (taken and released at once): only for
    ``--wait``, where a standby is reported rather than waited for.
    """
    cfg = facts.settings
    for name in names:
        host = ownership.held_elsewhere(cfg.hermes_home, name, cfg.host_id,
                                        cfg.shared_volume, warn)
        if host:
            facts.elsewhere[name] = host
