"""Crash consistency (issue 6.1): kill reconcile and profile.create/delete anywhere.

Two complementary attacks, both against a real s6-svscan whose scandir is rescanned every
few milliseconds by a thread running ``s6-svscanctl -a``:

- **random SIGKILL**: the real CLI is killed after a random delay between 0 and the measured
  duration of one run, hundreds of times, over a home of ~20 profiles whose states, config
  and membership keep changing;
- **every crash point**: the real CLI runs under ``reliability_kit.py crash K``, which dies
  (SIGKILL) just before its K-th file-system or s6 operation, for every K of a run that
  publishes, updates (with restarts), swaps, removes slots and toggles down markers.

After every kill: no visible slot is incomplete, no supervisor runs on anything incomplete or
staged, no gateway writes anywhere but its logger, s6-svscan logged no spawn failure, the
profile data is byte-identical (except what hermes-tasks owns), and the next reconcile
converges: no dot-entries left, every slot as rendered, every gateway that should run runs
the current config, exactly once.

Power cuts: the volume keeps only what was fsynced; ``test_power_cut_*`` reproduce the states a
cut between write and rename can leave (temp file truncated, rename lost) and check the next
runs, and trace that data is fsynced before the rename and the directory after it.

Reproduce a random run with ``HT_CRASH_SEED=<seed>``; scale with ``HT_CRASH_KILLS``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import reliability_kit as kit
import reliability_report
import s6env
import standin

from hermes_tasks import engine
from hermes_tasks.execute import volume
from hermes_tasks.intent import Intent

CASES = {
    "crash.sigkill.reconcile": "SIGKILL `reconcile` after a random delay in [0, one run], home of "
                               "~20 profiles, states/config/membership changing, rescans "
                               "every ~5 ms",
    "crash.sigkill.profile_create": "SIGKILL `profile.create NAME [--start]` after a random delay",
    "crash.sigkill.profile_delete": "SIGKILL `profile.delete NAME [--purge]` after a random delay",
    "crash.points.reconcile": "die before each file-system/s6 operation of a reconcile that "
                              "publishes, updates+restarts, swaps (legacy slot without log/), "
                              "removes and toggles down",
    "crash.points.profile": "die before each operation of `profile.create --start` and "
                            "`profile.delete`",
    "powercut.state_file": "power cut between write and rename of gateway_state.json (temp "
                           "file truncated, rename lost), then gateway.* and reconcile",
    "powercut.soul_md": "power cut while profile.create writes SOUL.md (temp file left, "
                        "truncated); the next create completes it",
    "powercut.boot_log": "boot log whose last line was torn by a power cut or a full disk",
    "powercut.fsync_order": "traced: data fsynced before rename, directory after, for state "
                            "files, SOUL.md and the boot log",
    "powercut.scandir_wiped": "power cut = /run wiped while gateways ran: reconcile from an "
                              "empty scandir restores every slot, the stale pid files go",
}

GENS = ("0", "1", "2")
POOL = ("c00", "c01", "c02", "c03")


def desired_of(home: Path, name: str) -> bool:
    """Oracle for "should this gateway run" (SPEC §4), independent of the code under test."""
    d = home if name == "default" else home / "profiles" / name
    try:
        doc = json.loads((d / kit.STATE).read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    if doc.get("desired_state") is not None:
        return doc["desired_state"] == "running"
    return doc.get("gateway_state") in ("running", "draining", "degraded")


class World:
    """A sandbox under a real s6-svscan, and what a converged tree must look like."""

    def __init__(self, sb: s6env.Sandbox, sup: s6env.Supervisor, names: list[str]):
        self.sb, self.sup = sb, sup
        self.hold = sb.root / "hold"  # profiles taken out of the home (to remove slots)
        self.hold.mkdir()
        self.gen = "0"
        self.expected = kit.Expected()
        for gen in GENS:
            self.expected.add(self.settings(gen), ["default", *names, *POOL])
        self.volume: dict = {}
        self.ignore: set[str] = set()  # slots the test planted itself (legacy layout)
        self.expect_up: set[str] = set()  # what must be up once the next reconcile is done
        # Up or down are both right: an interrupted create (started or not yet), or an
        # interrupted delete (`s6-svc -D` stopped it, the profile had not moved yet).
        self.either: set[str] = set()
        self.legacy_runs: set[bytes] = set()

    def settings(self, gen: str | None = None):
        return kit.settings_for(self.sb, f"extra_env={{HT_GEN: '{gen or self.gen}'}}")

    def args(self) -> list[str]:
        return [*s6env.inventory_args(self.sb), "--var", f"extra_env={{HT_GEN: '{self.gen}'}}"]

    def present(self) -> list[str]:
        profiles_dir = self.sb.home / "profiles"
        names = sorted(n for n in os.listdir(profiles_dir)
                       if (profiles_dir / n / "SOUL.md").is_file()) if profiles_dir.is_dir() else []
        return ["default", *names]

    def take_volume(self) -> None:
        """Before a run: the user's data, and which gateways the run must leave up."""
        self.volume = kit.snapshot(self.sb.home)
        self.expect_up = set()
        self.settle_starts()
        # reconcile converges what runs (SPEC §6): once done, exactly the profiles whose
        # desired state is running are up (the stand-ins never exit 0 or 78 here)
        for name in self.present():
            if desired_of(self.sb.home, name):
                self.expect_up.add(name)
        self.either = set()

    def settle_starts(self) -> None:
        """Wait until s6 has acted on the last run: a slot just published without ``down``
        may not be supervised, or its gateway not spawned, when reconcile returns (the
        rescan is asynchronous); counting it "not up" then would make it a wrong "came up".
        """
        for name in self.present():
            slot = self.sb.slot(name)
            if slot.name in self.ignore or not slot.exists() or (slot / "down").exists():
                continue
            s6env.wait_status_file(slot, 15)

            def started(s=slot):
                st = s6env.svstat(s)
                return st["up"] or not st["wantedup"]

            s6env.wait_for(started, 15, what=f"{slot} to start")

    def popen(self, *task: str) -> subprocess.Popen:
        python, extra = s6env.python_for(None)
        return subprocess.Popen([python, "-m", "hermes_tasks", *task, *self.args()],
                                env=s6env.tool_env(self.sb, extra), cwd=self.sb.root,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def converge(self) -> list:
        warnings: list[str] = []
        result = engine.run(self.settings(), Intent("reconcile"), warn=warnings.append)
        rows, registrar = result.rows, result.registrar
        failed = [r for r in rows + [registrar] if r and r.result == "failed"]
        assert not failed, f"converging reconcile failed: {failed} {warnings}"
        return rows

    # -- checks ---------------------------------------------------------------------

    def after_kill(self, label: str, volume_skip: set[str] = frozenset()) -> None:
        """The invariants that must hold at any instant, in particular right after a kill."""
        sb = self.sb
        names = [n for n in os.listdir(sb.scandir) if n not in self.ignore]
        problems = kit.slot_problems(sb.scandir, sb.user.gid, self.expected, names=names)
        problems += kit.supervision_problems(sb.scandir, sb.user.gid, self.expected,
                                             ignore=self.ignore)
        problems += kit.svscan_log_problems(self.sup.log_text())
        now = {k: v for k, v in kit.snapshot(sb.home).items()
               if not any(k == s or k.startswith(s + "/") for s in volume_skip)}
        before = {k: v for k, v in self.volume.items()
                  if not any(k == s or k.startswith(s + "/") for s in volume_skip)}
        problems += kit.diff_snapshots(before, now)
        assert not problems, f"{label}: " + "\n".join(problems)

    def converged(self, label: str) -> None:
        """After a complete reconcile: the tree is exactly what the profiles ask for."""
        sb = self.sb
        assert kit.leftover_dot_entries(sb.scandir) == [], label
        present = self.present()
        visible = sorted(n for n in os.listdir(sb.scandir) if n.startswith("gateway-"))
        assert visible == sorted(f"gateway-{n}" for n in present), label
        spec_settings = self.settings()
        from hermes_tasks.render import Renderer

        renderer = Renderer(spec_settings)
        ports = kit.ports_now(spec_settings)
        for name in present:
            slot = sb.slot(name)
            want_up = desired_of(sb.home, name)
            for rel, f in renderer.gateway(name, want_up, ports.get(name)).files.items():
                assert (slot / rel).read_bytes() == f.content, f"{label}: {slot / rel}"
            assert (slot / "down").exists() is (not want_up), f"{label}: {name} down marker"
        # Reconcile brings up what should run and down what should not (SPEC §6).
        for name in present:
            slot = sb.slot(name)
            s6env.wait_status_file(slot)

            def current(n=name):
                live = kit.live_instances(sb.home, n)
                return len(live) == 1 and live[0]["env"].get("HT_GEN") == self.gen

            if name in self.either:
                want = s6env.svstat(slot)["up"]
            else:
                want = name in self.expect_up
            if want:
                try:
                    s6env.wait_for(current, 15)
                except TimeoutError:
                    raise AssertionError(
                        f"{label}: {name} not up once on generation {self.gen}: "
                        f"svstat {s6env.svstat(slot)}, live {kit.live_instances(sb.home, name)}, "
                        f"last starts {standin.starts(sb.home, name)[-2:]}, scandir "
                        f"{sorted(os.listdir(sb.scandir))}") from None
            else:
                # (from /proc, no s6-svstat per slot: hundreds of iterations must stay cheap)
                assert kit.live_instances(sb.home, name) == [], f"{label}: {name} came up"
        check_rows = engine.run(spec_settings, Intent("reconcile"), check=True,
                                warn=lambda m: None).rows
        assert all(r.result == "ok" for r in check_rows), (label, check_rows)
        assert kit.svscan_log_problems(self.sup.log_text()) == []


def make_world(sb, sup, n: int) -> World:
    names = [f"p{i:02d}" for i in range(n)]
    kit.write_profile(sb.home, "default", {"desired_state": "running"}, user=sb.user)
    for i, name in enumerate(names):
        kit.write_profile(sb.home, name, {"desired_state": "running" if i % 2 else "stopped"},
                          user=sb.user)
    return World(sb, sup, names)


def kill_after(proc: subprocess.Popen, delay: float, lock: Path) -> tuple[bool, bool]:
    """SIGKILL ``proc`` after ``delay`` s; return (killed before it finished, held the lock)."""
    time.sleep(delay)
    killed = proc.poll() is None
    held = False
    if killed:
        proc.send_signal(signal.SIGKILL)
        try:
            held = lock.read_text().strip() == str(proc.pid)
        except OSError:
            pass
    _, err = proc.communicate(timeout=60)
    if not killed:
        assert proc.returncode in (0, 1, 2), err
        assert b"Traceback" not in err, err.decode()
    return killed, held


def measure_run(world: World, runs: int = 3) -> float:
    """Wall time of a reconcile that rewrites every run script and restarts gateways."""
    times = []
    for _ in range(runs):
        world.gen = GENS[(GENS.index(world.gen) + 1) % len(GENS)]
        t = time.monotonic()
        proc = world.popen("reconcile")
        _, err = proc.communicate(timeout=120)
        times.append(time.monotonic() - t)
        assert proc.returncode == 0, err.decode()
    return sorted(times)[len(times) // 2]


def seed() -> int:
    return int(os.environ.get("HT_CRASH_SEED") or time.time_ns() % 2**32)


@pytest.mark.slow
def test_sigkill_at_random_moments(root_sandbox):
    """At least HT_CRASH_KILLS (200) kills in all, most of them of reconcile."""
    sb = root_sandbox
    target = int(os.environ.get("HT_CRASH_KILLS") or 200)
    rng_seed = seed()
    rng = random.Random(rng_seed)
    started = time.monotonic()
    with s6env.Supervisor(sb) as sup, kit.Rescanner(sb.scandir) as rescanner:
        world = make_world(sb, sup, 19)
        world.take_volume()
        world.converge()
        duration = measure_run(world)
        world.take_volume()
        world.converge()
        world.converged("initial")
        counts = {"reconcile": [0, 0, 0], "create": [0, 0, 0], "delete": [0, 0, 0]}
        lock = sb.scandir / ".hermes-tasks.lock"
        iterations = 0
        took: dict[tuple, list[float]] = {}
        while sum(c[0] for c in counts.values()) < target and iterations < target * 3:
            iterations += 1
            label = f"seed {rng_seed} iteration {iterations}"
            gen_before = world.gen
            op = rng.choices(["reconcile", "create", "delete"], [7, 1.5, 1.5])[0]
            skip: set[str] = set()
            if op == "reconcile":
                task = mutate(world, rng)
            elif op == "create":
                free = [n for n in POOL if not (sb.home / "profiles" / n / "SOUL.md").exists()]
                if not free:
                    op, task = "reconcile", mutate(world, rng)
                else:
                    name = rng.choice(free)
                    task = ["profile.create", name] + (["--start"] if rng.random() < 0.3 else [])
                    skip = {f"profiles/{name}"}
            else:
                taken = [n for n in POOL if (sb.home / "profiles" / n / "SOUL.md").exists()]
                if not taken:
                    op, task = "reconcile", mutate(world, rng)
                else:
                    name = rng.choice(taken)
                    task = ["profile.delete", name] + (["--purge"] if rng.random() < 0.3 else [])
                    skip = {f"profiles/{name}"}
            world.take_volume()
            before_delete = kit.snapshot_dir(sb.home / "profiles" / task[1]) \
                if task[0] == "profile.delete" else None
            if op != "reconcile":
                world.either.add(task[1])
            # Delay drawn over the expected length of *this* kind of run (measured as the
            # loop goes), so that most runs are killed somewhere between start and end.
            kind = (op, world.gen != gen_before)
            past = sorted(took.get(kind, [])[-7:])
            expected = past[len(past) // 2] if past else duration
            t0 = time.monotonic()
            killed, held = kill_after(world.popen(*task), rng.uniform(0, expected), lock)
            if not killed:
                took.setdefault(kind, []).append(time.monotonic() - t0)
            c = counts[op]
            c[0] += killed
            c[1] += held
            c[2] += 1
            world.after_kill(f"{label} ({' '.join(task)})", volume_skip=skip)
            if op == "create":
                check_create_outcome(sb.home, task[1], label)
            elif op == "delete":
                check_delete_outcome(sb.home, task[1], before_delete, "--purge" in task, label)
            world.converge()
            world.converged(label)
        elapsed = time.monotonic() - started
        assert rescanner.failures == 0
    assert sum(c[0] for c in counts.values()) >= target, counts
    assert counts["reconcile"][0] >= target // 2, counts
    # The delays must really reach into the critical section, not only the interpreter start.
    assert counts["reconcile"][1] >= target // 6, counts
    for op, (killed, held, tries) in counts.items():
        case = {"reconcile": "crash.sigkill.reconcile", "create": "crash.sigkill.profile_create",
                "delete": "crash.sigkill.profile_delete"}[op]
        reliability_report.record(
            case, tries,
            "every kill left only complete visible slots, no supervisor on anything "
            "incomplete, profile data intact; the next reconcile converged with no "
            "dot-entries and each wanted gateway running the current config exactly once",
            killed_mid_run=killed, killed_holding_lock=held, one_run_s=round(duration, 3),
            profiles=20, rescans=rescanner.count, seed=rng_seed, total_s=round(elapsed, 1))


def mutate(world: World, rng: random.Random) -> list[str]:
    """Change what the next reconcile must do: states, config, membership."""
    sb = world.sb
    named = [n for n in world.present() if n != "default" and n not in POOL]
    for name in rng.sample(named, k=min(len(named), rng.randint(0, 3))):
        kit.set_state(sb.home, name, "stopped" if desired_of(sb.home, name) else "running")
    if rng.random() < 0.5:
        world.gen = rng.choice([g for g in GENS if g != world.gen])
    if rng.random() < 0.25:
        held = sorted(os.listdir(world.hold))
        if held and (rng.random() < 0.5 or len(named) < 15):
            name = rng.choice(held)
            os.rename(world.hold / name, sb.home / "profiles" / name)
        elif named:
            name = rng.choice(named)
            os.rename(sb.home / "profiles" / name, world.hold / name)
    return ["reconcile"]


def check_create_outcome(home: Path, name: str, label: str) -> None:
    """A killed create leaves no profile, an empty dir, or a complete SOUL.md; never half."""
    d = home / "profiles" / name
    if (d / "SOUL.md").exists():
        assert (d / "SOUL.md").read_bytes() == volume.SOUL, f"{label}: torn SOUL.md"


def check_delete_outcome(home: Path, name: str, before: dict, purge: bool, label: str) -> bool:
    """A killed delete leaves the profile whole where it was, or whole in .trash.

    Returns True when the profile is still in place."""
    d = home / "profiles" / name
    trash = home / ".trash" / "profiles"
    moved = sorted(trash.glob(f"{name}.*")) if trash.is_dir() else []
    if d.exists():
        assert not moved or purge, f"{label}: {name} both in profiles/ and .trash"
        assert kit.snapshot_dir(d) == before, f"{label}: {name} changed in place"
        return True
    elif not purge:
        assert len(moved) == 1 and kit.snapshot_dir(moved[0]) == before, \
            f"{label}: {name} not moved whole to .trash"
        for entry in moved:  # tidy up: the test reuses pool names
            subprocess.run(["rm", "-rf", "--", str(entry)], check=True)
    else:
        for entry in moved:
            subprocess.run(["rm", "-rf", "--", str(entry)], check=True)
    return False


# --------------------------------------------------------------------------- crash points


def run_crash(world: World, k: int, *task: str) -> dict:
    """Run the CLI dying before op ``k``; return the driver's log."""
    log = world.sb.root / "crash.json"
    if log.exists():
        log.unlink()
    res = s6env.run_tasks(world.sb, None, argv=[
        "python", str(kit.TESTS_DIR / "reliability_kit.py"), "crash", str(k), "--log", str(log),
        "--", *task, *world.args()])
    doc = json.loads(log.read_text())
    if doc["crashed"]:
        assert res.returncode == -signal.SIGKILL, (k, res.returncode, res.stderr)
    else:
        assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    return doc


LEGACY_RUN = """#!/bin/sh
# a slot from an older layout: no log/ directory
HERMES_HOME={home}
export HERMES_HOME
exec {gateway} -p e gateway run --replace
"""


def plant_legacy(world: World) -> None:
    """Publish gateway-e the way an older version did (no logger): a structural swap."""
    run = LEGACY_RUN.format(home=world.sb.home, gateway=s6env.FAKE_GATEWAY)
    staging = world.sb.scandir / ".legacy-e"
    staging.mkdir()
    (staging / "run").write_text(run)
    (staging / "run").chmod(0o755)
    (staging / "type").write_text("longrun\n")
    os.rename(staging, world.sb.slot("e"))
    world.legacy_runs.add(run.encode())


def state_a(world: World) -> None:
    """gen 0; a up, b down; c present; d absent; e a legacy slot (profile present)."""
    sb = world.sb
    world.gen = "0"
    kit.set_state(sb.home, "b", "stopped")
    for name, where in (("c", sb.home / "profiles"), ("d", world.hold), ("e", world.hold)):
        for src in (sb.home / "profiles" / name, world.hold / name):
            if src.exists() and src.parent != where:
                os.rename(src, where / name)
    world.converge()
    running = len(standin.events(sb.home, "e", ("running",)))
    plant_legacy(world)
    s6env.wait_for(lambda: kit.supervision(sb.scandir).get("gateway-e"), 5, what="legacy e")
    # Let the legacy gateway finish its start-up writes first: one that finds no profile
    # directory when it reads its state file, but finds one when it writes, would replace
    # the recorded desired_state with a fresh file (a race of this test, not of the tool).
    s6env.wait_for(lambda: len(standin.events(sb.home, "e", ("running",))) > running, 10,
                   what="legacy e running")
    os.rename(world.hold / "e", sb.home / "profiles" / "e")
    world.ignore = {"gateway-e"}


def to_b(world: World) -> None:
    """gen 1; b up; c gone; d new: every kind of step in one run."""
    world.gen = "1"
    kit.set_state(world.sb.home, "b", "running")
    os.rename(world.sb.home / "profiles" / "c", world.hold / "c")
    os.rename(world.hold / "d", world.sb.home / "profiles" / "d")


def legacy_ok(world: World) -> None:
    """gateway-e is either still the planted legacy slot, or a complete new one."""
    slot = world.sb.slot("e")
    if not slot.exists():
        return
    if not (slot / "log").exists():
        assert (slot / "run").read_bytes() in world.legacy_runs
        return
    assert kit.slot_problems(world.sb.scandir, world.sb.user.gid, world.expected,
                             names=["gateway-e"]) == []


def crash_points(trace: list[str]) -> list[int]:
    """Which K to crash before: every operation, except that inside a long run of like
    operations (building an invisible staging dir; ``rm -rf`` of a retired dir, where every
    crash leaves the same kind of state) only every third one."""
    points, context = [], ""
    for k, op in enumerate(trace, 1):
        word, _, path = op.partition(" ")
        if "/" in path:
            context = path
        staged = "/.gateway-" in context and (".tmp" in context or ".new" in context)
        removing = word in ("unlink", "rmdir") and k > 1 and \
            trace[k - 2].split(" ")[0] in ("unlink", "rmdir")
        if (staged or removing) and k % 3:
            continue
        points.append(k)
    return points


@pytest.mark.slow
def test_crash_before_every_operation_of_reconcile(root_sandbox):
    sb = root_sandbox
    started = time.monotonic()
    with s6env.Supervisor(sb) as sup, kit.Rescanner(sb.scandir) as rescanner:
        world = World(sb, sup, ["a", "b", "c", "d", "e"])
        kit.write_profile(sb.home, "default", {"desired_state": "running"}, user=sb.user)
        for name, st in (("a", "running"), ("b", "stopped"), ("c", "running"),
                         ("d", "running"), ("e", "running")):
            kit.write_profile(sb.home, name, {"desired_state": st}, user=sb.user)
        os.rename(sb.home / "profiles" / "d", world.hold / "d")
        os.rename(sb.home / "profiles" / "e", world.hold / "e")
        world.converge()
        # Count the operations of one full A -> B run.
        state_a(world)
        to_b(world)
        world.take_volume()
        counted = run_crash(world, 10**9, "reconcile")
        total, points = counted["ops"], crash_points(counted["trace"])
        world.ignore = set()
        world.converge()
        world.converged("counting run")
        assert total > 50
        kinds = set()
        for k in points:
            state_a(world)
            to_b(world)
            world.take_volume()
            doc = run_crash(world, k, "reconcile")
            kinds.add(doc["trace"][-1].split(" ")[0])
            label = f"crash before op {k}/{total}: {doc['trace'][-1]}"
            world.after_kill(label)
            legacy_ok(world)
            world.ignore = set()
            world.converge()
            world.converged(label)
            kit.assert_never_overlapping(sb.home, "e")
            kit.assert_never_overlapping(sb.home, "a")
        assert rescanner.failures == 0
    reliability_report.record(
        "crash.points.reconcile", len(points),
        "at every crash point: visible slots complete, nothing half-built supervised, old and "
        "new gateway never overlapped, data intact; the next reconcile converged",
        operations=total, crash_points=len(points), kinds=" ".join(sorted(kinds)),
        rescans=rescanner.count,
        total_s=round(time.monotonic() - started, 1))


@pytest.mark.slow
def test_crash_before_every_operation_of_profile_create_and_delete(root_sandbox):
    sb = root_sandbox
    tries = 0
    with s6env.Supervisor(sb) as sup, kit.Rescanner(sb.scandir):
        world = World(sb, sup, ["a"])
        kit.write_profile(sb.home, "default", {"desired_state": "stopped"}, user=sb.user)
        kit.write_profile(sb.home, "a", {"desired_state": "running"}, user=sb.user)
        world.converge()
        world.take_volume()
        world.either.add("c00")
        total_create = run_crash(world, 10**9, "profile.create", "c00", "--start")["ops"]
        world.converge()
        world.converged("create counted")
        world.take_volume()
        before = kit.snapshot_dir(sb.home / "profiles" / "c00")
        total_delete = run_crash(world, 10**9, "profile.delete", "c00")["ops"]
        for entry in (sb.home / ".trash" / "profiles").iterdir():
            subprocess.run(["rm", "-rf", "--", str(entry)], check=True)
        world.converge()
        world.converged("delete counted")
        for k in range(1, total_create + 1):
            world.take_volume()
            world.either.add("c00")
            doc = run_crash(world, k, "profile.create", "c00", "--start")
            label = f"create: crash before op {k}/{total_create}: {doc['trace'][-1]}"
            world.after_kill(label, volume_skip={"profiles/c00"})
            check_create_outcome(sb.home, "c00", label)
            world.converge()
            world.converged(label)
            # delete it again for the next k (normally, no crash)
            if (sb.home / "profiles" / "c00").exists():
                subprocess.run(["rm", "-rf", "--", str(sb.home / "profiles" / "c00")], check=True)
            world.converge()
            tries += 1
        for k in range(1, total_delete + 1):
            kit.write_profile(sb.home, "c00", {"desired_state": "running", "keep": k},
                              user=sb.user)
            world.converge()
            world.take_volume()
            world.either.add("c00")
            before = kit.snapshot_dir(sb.home / "profiles" / "c00")
            doc = run_crash(world, k, "profile.delete", "c00")
            label = f"delete: crash before op {k}/{total_delete}: {doc['trace'][-1]}"
            world.after_kill(label, volume_skip={"profiles/c00"})
            check_delete_outcome(sb.home, "c00", before, False, label)
            world.converge()
            world.converged(label)
            if (sb.home / "profiles" / "c00").exists():
                subprocess.run(["rm", "-rf", "--", str(sb.home / "profiles" / "c00")], check=True)
                world.converge()
            tries += 1
    reliability_report.record(
        "crash.points.profile", tries,
        "a killed create leaves no profile, an empty directory or a complete SOUL.md; a killed "
        "delete leaves the profile whole in place or whole in .trash; the next reconcile "
        "converged every time",
        create_operations=total_create, delete_operations=total_delete)


# --------------------------------------------------------------------------- power cuts


def crash_on(sb, prefix: str, after: str, *task: str) -> None:
    """Run ``task`` under the crash driver, dying just before its first op starting with
    ``prefix`` once an op naming ``after`` was seen: a run may write other files first (the
    port allocation), and not always the same number of them."""
    argv = ["python", str(kit.TESTS_DIR / "reliability_kit.py"), "crash", f"{prefix}@{after}",
            "--", *task, *s6env.inventory_args(sb)]
    res = s6env.run_tasks(sb, None, argv=argv)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)


def test_power_cut_between_write_and_rename_of_the_state_file(root_sandbox, supervisor):
    sb = root_sandbox
    # running, so that gateway.stop has an intent to record (an unchanged one is not written)
    d = kit.write_profile(sb.home, "alice", {"desired_state": "running", "keep": "me"},
                          user=sb.user)
    original = (d / kit.STATE).read_bytes()
    tmp = d / ".gateway_state.json.hermes-tasks.tmp"
    tries = 0
    # before the fsync: the new data may be anything from nothing to all of it; before the
    # rename: it is all there, but the name still holds the old file
    for prefix, cut in (("fsync", 0), ("fsync", 7), ("rename .gateway_state", None)):
        crash_on(sb, prefix, tmp.name, "gateway.stop", "-p", "alice")
        assert tmp.exists() and (d / kit.STATE).read_bytes() == original
        if cut is not None:
            os.truncate(tmp, cut)  # the part the power cut lost
        res = s6env.run_tasks(sb, "reconcile", "--json")
        assert res.returncode == 0 and res.stderr == "", res.stderr
        row = next(r for r in json.loads(res.stdout)["results"] if r["profile"] == "alice")
        assert row["prior_state"] == "running"  # the old, whole file decided
        supervisor.rescan()
        s6env.wait_status_file(sb.slot("alice"))
        status = s6env.run_tasks(sb, "gateway.status", "-p", "alice", "--json")
        assert json.loads(status.stdout)["gateways"][0]["desired_state"] == "running"
        res = s6env.run_tasks(sb, "gateway.start", "-p", "alice")
        assert "Traceback" not in res.stderr
        res = s6env.run_tasks(sb, "gateway.stop", "-p", "alice")
        assert res.returncode == 0, res.stderr
        doc = json.loads((d / kit.STATE).read_text())
        assert doc["desired_state"] == "stopped" and doc["keep"] == "me"
        assert not tmp.exists()  # the next write of the same file removed the leftover
        (d / kit.STATE).write_bytes(original)
        tries += 1
    reliability_report.record(
        "powercut.state_file", tries,
        "the old state file stayed whole and decided; the next gateway.stop replaced it and "
        "removed the torn temp file; other keys kept")


def test_power_cut_while_creating_soul_md(root_sandbox):
    sb = root_sandbox
    kit.write_profile(sb.home, "alice", {"desired_state": "stopped"}, user=sb.user)
    d = sb.home / "profiles" / "bob"
    tmp = d / ".SOUL.md.hermes-tasks.tmp"
    tries = 0
    for prefix, cut in (("fsync", 3), ("link", None)):
        crash_on(sb, prefix, tmp.name, "profile.create", "bob")
        assert tmp.exists() and not (d / "SOUL.md").exists()
        if cut is not None:
            os.truncate(tmp, cut)
        res = s6env.run_tasks(sb, "reconcile", "--json")
        assert res.returncode == 0 and res.stderr == ""  # an empty dir: not a profile, silently
        rows = [r for r in json.loads(res.stdout)["results"] if r["profile"] == "bob"]
        assert all(r["action"] == "removed" for r in rows)  # (the counting run's slot)
        res = s6env.run_tasks(sb, "profile.create", "bob")
        assert res.returncode == 0, res.stderr
        assert (d / "SOUL.md").read_bytes() == volume.SOUL and not tmp.exists()
        subprocess.run(["rm", "-rf", "--", str(d)], check=True)
        s6env.run_tasks(sb, "reconcile")
        tries += 1
    reliability_report.record(
        "powercut.soul_md", tries,
        "no SOUL.md appeared (the directory is ignored, silently); the next profile.create "
        "wrote it whole and removed the temp file")


def test_power_cut_tore_the_boot_log(root_sandbox):
    sb = root_sandbox
    logs = sb.home / "logs"
    logs.mkdir()
    torn = "2026-11-26T12:00:00+00:00 profile=alice prior_sta"
    (logs / "container-boot.log").write_text("2026-11-26T11:00:00+00:00 profile=default "
                                             "prior_state=None action=registered result=ok\n"
                                             + torn)
    res = s6env.run_tasks(sb, "reconcile")
    assert res.returncode == 0 and res.stderr == ""
    lines = (logs / "container-boot.log").read_text().splitlines()
    assert lines[1] == torn and len(lines) == 3
    assert lines[2].split(" ", 1)[1] == "profile=default prior_state=None action=registered " \
                                        "result=changed"
    reliability_report.record(
        "powercut.boot_log", 1,
        "the torn line stayed alone on its line; the next run's lines were whole")


def test_durable_writes_are_fsynced_in_the_right_order(tmp_path, monkeypatch):
    """Trace the syscalls: data fsynced before the rename/link, the directory after."""
    from hermes_tasks import bootlog, fsops, state

    events: list[tuple[str, str]] = []
    real = {n: getattr(os, n) for n in ("fsync", "rename", "link", "write")}

    def name_of(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", name_of(fd))),
                                                 real["fsync"](fd))[1])
    monkeypatch.setattr(os, "write", lambda fd, data: (events.append(("write", name_of(fd))),
                                                       real["write"](fd, data))[1])
    monkeypatch.setattr(os, "rename", lambda a, b, **kw: (events.append(("rename", f"{a}>{b}")),
                                                          real["rename"](a, b, **kw))[1])
    monkeypatch.setattr(os, "link", lambda a, b, **kw: (events.append(("link", f"{a}>{b}")),
                                                        real["link"](a, b, **kw))[1])
    home = tmp_path
    (home / "profiles" / "alice").mkdir(parents=True)
    state.record_desired(str(home), "alice", "running", (0, 0))
    tmpname = ".gateway_state.json.hermes-tasks.tmp"
    d = str(home / "profiles" / "alice")
    assert events == [("write", f"{d}/{tmpname}"), ("fsync", f"{d}/{tmpname}"),
                      ("rename", f"{tmpname}>gateway_state.json"), ("fsync", d)], events
    events.clear()
    with fsops.opened_dir(d) as dfd:
        fsops.write_exclusive(dfd, "SOUL.md", b"soul\n", 0o644)
    assert events == [("write", f"{d}/.SOUL.md.hermes-tasks.tmp"),
                      ("fsync", f"{d}/.SOUL.md.hermes-tasks.tmp"),
                      ("link", ".SOUL.md.hermes-tasks.tmp>SOUL.md"), ("fsync", d)], events
    events.clear()
    bootlog.append(str(home), [("alice", None, "registered", "ok")], 1000, (0, 0), print)
    log = f"{home}/logs/container-boot.log"
    assert events == [("write", log), ("fsync", log)], events
    reliability_report.record(
        "powercut.fsync_order", 3,
        "state file: write, fsync(data), rename, fsync(dir); SOUL.md: write, fsync, link, "
        "fsync(dir); boot log: append, fsync")


def test_power_cut_wipes_run_while_gateways_run(root_sandbox):
    """A power cut loses /run (tmpfs): the next boot's reconcile rebuilds every slot."""
    sb = root_sandbox
    for name, st in (("default", "running"), ("alice", "running"), ("bob", "stopped"),
                     ("carol", "draining")):
        kit.write_profile(sb.home, name, {"desired_state": st} if st != "draining" else
                          {"gateway_state": st}, user=sb.user)
    sup = s6env.Supervisor(sb).start()
    try:
        assert s6env.run_tasks(sb, "reconcile").returncode == 0
        sup.rescan()
        for name in ("default", "alice", "carol"):
            s6env.wait_up(sb.slot(name))
    finally:
        sup.stop()
    before = kit.snapshot(sb.home)
    subprocess.run(["rm", "-rf", "--", str(sb.scandir)], check=True)  # /run is gone
    sb.scandir.mkdir()
    for name in ("alice", "bob", "carol"):  # what the dead gateways left behind
        for stale in ("gateway.pid", "processes.json"):
            (sb.home / "profiles" / name / stale).write_text("4242\n")
    with s6env.Supervisor(sb) as sup:  # stage 1 first, then cont-init
        res = s6env.run_tasks(sb, "reconcile", "--json")
        assert res.returncode == 0 and res.stderr == "", res.stderr
        sup.rescan()  # services-up
        for name in ("default", "alice", "carol"):
            s6env.wait_up(sb.slot(name))
        s6env.wait_status_file(sb.slot("bob"))
        assert s6env.svstat(sb.slot("bob"))["up"] is False
        for name in ("alice", "bob", "carol"):
            for stale in ("gateway.pid", "processes.json"):
                assert not (sb.home / "profiles" / name / stale).exists()
        assert kit.snapshot(sb.home) == before
        assert kit.slot_problems(sb.scandir, sb.user.gid) == []
    reliability_report.record(
        "powercut.scandir_wiped", 1,
        "every slot rebuilt from the volume, running/draining ones up, stopped one down, stale "
        "pid files of the previous boot removed, profile data unchanged")
