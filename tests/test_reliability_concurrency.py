"""Concurrency (issue 6.2): many tasks at once, then one tree, no deadlock.

Workers run the real CLI in parallel for a bounded time: reconcile, profile.create/delete,
gateway.start/stop/restart/status and slot.list, on overlapping profiles, against a real
s6-svscan. Every invocation must end within a bound (no deadlock), with exit 0, or exit 1/2
and one clear line per failure (never a traceback). Afterwards, with nothing more run, the
tree must already be what a single reconcile produces (``reconcile --check`` finds nothing
to do), no two instances of a gateway ever overlapped, and nothing is left half-done.
Lock waits are bounded: a held lock makes a mutating task exit 1 naming the lock and holder.
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest
import reliability_kit as kit
import reliability_report
import s6env

from hermes_tasks.render import Renderer

CASES = {
    "concurrency.storm.root": "4 parallel workers for 25 s: reconcile, profile.create/delete, "
                              "gateway.start/stop/restart/status, slot.list (as root)",
    "concurrency.storm.service_user": "3 parallel workers for 15 s as the service user "
                                      "(slot changes through the registrar) plus root "
                                      "reconciles",
    "concurrency.lock_timeout": "a mutating task meets a lock held by another process",
    "concurrency.lock_after_sigkill": "the lock holder is SIGKILLed: the next task goes at once",
}

POOL = ("c0", "c1", "c2", "c3")
STABLE = ("p0", "p1", "p2", "p3", "p4", "p5")
# Messages a task may legitimately end with when another task got there first.
# (A profile deleted meanwhile; a slot published an instant ago whose supervisor s6-svscan
# has not started yet.) Anything else fails the test.
RACE_MESSAGES = re.compile(r"no profile '|deleted while being created|is not supervised")


ERRORS: collections.Counter = collections.Counter()
TIMELINE: list = []


def pick(rng: random.Random) -> list[str]:
    kind = rng.choices(["reconcile", "create", "delete", "gateway", "status", "list"],
                       [3, 2, 2, 4, 1, 1])[0]
    if kind == "reconcile":
        return ["reconcile"]
    if kind == "create":
        return ["profile.create", rng.choice(POOL)] + (["--start"] if rng.random() < .4 else [])
    if kind == "delete":
        return ["profile.delete", rng.choice(POOL)] + (["--purge"] if rng.random() < .3 else [])
    if kind == "gateway":
        action = rng.choice(["start", "stop", "restart"])
        args = [f"gateway.{action}", "-p", rng.choice(STABLE + POOL + ("default",))]
        return args + (["--wait", "--timeout", "10"] if rng.random() < .3 else [])
    return ["gateway.status", "--json"] if kind == "status" else ["slot.list"]


def storm(sb, seconds: float, workers: int, seed: int, user=None, root_reconciles=False):
    deadline = time.monotonic() + seconds
    results, lock = [], threading.Lock()

    def worker(n: int):
        rng = random.Random(seed * 100 + n)
        while time.monotonic() < deadline:
            args = ["reconcile"] if root_reconciles and n == 0 else pick(rng)
            t = time.monotonic()
            try:
                res = s6env.run_tasks(sb, *args, user=None if root_reconciles and n == 0
                                      else user, timeout=150)
            except subprocess.TimeoutExpired:
                res = None
            with lock:
                results.append((args, res, time.monotonic() - t))
                TIMELINE.append((t, time.monotonic(), n, args, res.returncode if res else None,
                                 (res.stdout + res.stderr)[-400:] if res else ""))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 300)
    assert not any(th.is_alive() for th in threads), "a worker never returned"
    return results


def judge(results) -> tuple[collections.Counter, float]:
    """Every run ended in bounded time, cleanly; return outcome counts and the longest run."""
    outcomes = collections.Counter()
    ERRORS.clear()
    longest = 0.0
    for args, res, took in results:
        assert res is not None, f"{args} did not finish within 150 s: a deadlock"
        longest = max(longest, took)
        assert "Traceback" not in res.stderr + res.stdout, (args, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert all(line.startswith("hermes-tasks: ") for line in lines), (args, lines)
        assert res.returncode in (0, 1, 2), (args, res.returncode, res.stderr)
        if res.returncode == 1:
            errors = [line for line in lines if line.startswith("hermes-tasks: error: ")]
            assert len(errors) == 1, (args, lines)
            assert RACE_MESSAGES.search(errors[0]), (args, errors)
            ERRORS[re.sub(r"/\S+|\b[cp]\d\b|pid \d+", "…", errors[0])[21:90]] += 1
        if res.returncode == 2:
            assert args[0] in ("reconcile",) or "--all" in args, (args, res.stdout)
            failed = [r for r in json.loads(res.stdout)["results"]] if res.stdout.startswith(
                "{") else []
            del failed
        outcomes[(args[0], res.returncode)] += 1
    return outcomes, longest


def desired_up(home, name) -> bool:
    d = home if name == "default" else home / "profiles" / name
    try:
        doc = json.loads((d / "gateway_state.json").read_text())
    except (OSError, ValueError):
        return False
    if doc.get("desired_state") is not None:
        return doc["desired_state"] == "running"
    return doc.get("gateway_state") in ("running", "draining", "degraded")


def assert_one_tree(sb) -> None:
    """The tree is what one reconcile produces, and no gateway ever ran twice at once."""
    check = s6env.run_tasks(sb, "reconcile", "--check", "--json")
    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    bad = [r for r in doc["results"] if r["result"] != "ok"]
    assert bad == [], (bad, {r["profile"]: (sorted(os.listdir(sb.slot(r["profile"])))
                                           if sb.slot(r["profile"]).exists() else None,
                                           desired_up(sb.home, r["profile"])) for r in bad})
    assert kit.leftover_dot_entries(sb.scandir) == []
    present = ["default"] + sorted(n for n in os.listdir(sb.home / "profiles")
                                   if (sb.home / "profiles" / n / "SOUL.md").is_file())
    assert sorted(n for n in os.listdir(sb.scandir) if n.startswith("gateway-")) == \
        sorted(f"gateway-{n}" for n in present)
    renderer = Renderer(kit.settings_for(sb))
    for name in present:
        for rel, f in renderer.gateway(name, desired_up(sb.home, name)).files.items():
            assert (sb.slot(name) / rel).read_bytes() == f.content, (name, rel)
        assert (sb.slot(name) / "down").exists() is not desired_up(sb.home, name), name
    for name in set(present) | set(POOL):
        kit.assert_never_overlapping(sb.home, name)
        assert len(kit.live_instances(sb.home, name)) <= 1, name
    assert kit.slot_problems(sb.scandir, sb.user.gid if sb.user else None) == []


def setup_home(sb) -> None:
    kit.write_profile(sb.home, "default", {"desired_state": "running"}, user=sb.user)
    for i, name in enumerate(STABLE):
        kit.write_profile(sb.home, name, {"desired_state": "running" if i % 2 else "stopped"},
                          user=sb.user)


@pytest.mark.slow
def test_parallel_tasks_as_root_end_in_one_tree(root_sandbox, supervisor):
    sb = root_sandbox
    setup_home(sb)
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    supervisor.rescan()
    seed = int(os.environ.get("HT_STORM_SEED") or time.time_ns() % 10**6)
    with kit.Rescanner(sb.scandir, interval=0.05):
        results = storm(sb, 25, 4, seed)
    outcomes, longest = judge(results)
    assert sum(outcomes.values()) > 40, outcomes
    time.sleep(0.5)  # let restarts requested at the very end settle
    assert_one_tree(sb)
    assert kit.svscan_log_problems(supervisor.log_text()) == []
    reliability_report.record(
        "concurrency.storm.root", len(results),
        "no deadlock, no traceback; failures were one-line races (profile gone, not "
        "supervised yet); afterwards reconcile --check found nothing to do and no gateway "
        "ever ran twice at once",
        seed=seed, longest_s=round(longest, 2),
        outcomes=" ".join(f"{k[0]}:{k[1]}={v}" for k, v in sorted(outcomes.items())),
        errors=" | ".join(f"{v}× {k}" for k, v in ERRORS.most_common()))


@pytest.mark.slow
def test_parallel_tasks_as_the_service_user_through_the_registrar(root_sandbox, supervisor):
    sb = root_sandbox
    setup_home(sb)
    assert s6env.run_tasks(sb, "reconcile").returncode == 0  # publishes the registrar too
    supervisor.rescan()
    s6env.wait_up(sb.scandir / "hermes-tasks-registrar", 10)
    seed = int(os.environ.get("HT_STORM_SEED") or time.time_ns() % 10**6)
    results = storm(sb, 15, 3, seed, user=sb.user, root_reconciles=True)
    outcomes, longest = judge(results)
    assert sum(outcomes.values()) > 15, outcomes
    time.sleep(0.5)
    assert_one_tree(sb)
    for dirpath, dirs, files in os.walk(sb.scandir):  # nothing root runs became the user's
        for n in files + dirs:
            st = os.lstat(os.path.join(dirpath, n))
            assert st.st_uid == 0, os.path.join(dirpath, n)
    reliability_report.record(
        "concurrency.storm.service_user", len(results),
        "no deadlock, no traceback; the registrar serialised slot changes; the tree ended "
        "as one reconcile makes it, every slot file still root's",
        seed=seed, longest_s=round(longest, 2),
        outcomes=" ".join(f"{k[0]}:{k[1]}={v}" for k, v in sorted(outcomes.items())),
        errors=" | ".join(f"{v}× {k}" for k, v in ERRORS.most_common()))


def test_held_lock_times_out_with_a_clear_message(root_sandbox):
    sb = root_sandbox
    lock_path = sb.scandir / ".hermes-tasks.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)  # root's, as a root run makes it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        tries = 0
        for args in (["reconcile"], ["profile.create", "alice"]):
            t = time.monotonic()
            res = s6env.run_tasks(sb, *args, *s6env.inventory_args(sb), "--var", "lock_timeout=1",
                                  inventory_vars=False)
            took = time.monotonic() - t
            lines = res.stderr.strip().splitlines()
            assert res.returncode == 1 and len(lines) == 1, (args, res.stderr)
            assert str(lock_path) in lines[0] and f"pid {os.getpid()}" in lines[0], lines
            assert "Traceback" not in res.stderr and 1 <= took < 10, took
            tries += 1
        assert [n for n in os.listdir(sb.scandir) if not n.startswith(".")] == []
    finally:
        os.close(fd)
    res = s6env.run_tasks(sb, "reconcile", "--var", "lock_timeout=1")
    assert res.returncode == 0, res.stderr
    reliability_report.record(
        "concurrency.lock_timeout", tries,
        "exit 1 after lock_timeout (1 s), one line naming the lock file and the holder's pid; "
        "nothing changed; the next run after release went through", waited_s=round(took, 2))


def test_lock_of_a_killed_holder_is_free_at_once(root_sandbox, supervisor):
    sb = root_sandbox
    setup_home(sb)
    kills = 0
    for delay in (0.3, 0.4, 0.5, 0.6):
        s6env.run_tasks(sb, "reconcile", "--var", "extra_env={HT_X: a}")
        python, extra = s6env.python_for(None)
        proc = subprocess.Popen([python, "-m", "hermes_tasks", "reconcile",
                                 *s6env.inventory_args(sb), "--var", "extra_env={HT_X: b}"],
                                env=s6env.tool_env(sb, extra), cwd=sb.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        t = time.monotonic()
        res = s6env.run_tasks(sb, "reconcile", "--var", "lock_timeout=2")
        assert res.returncode == 0, res.stderr
        assert time.monotonic() - t < 10
    reliability_report.record(
        "concurrency.lock_after_sigkill", kills,
        "the kernel released the flock with the process: the next run (lock_timeout 2 s) went "
        "straight through and converged")
