"""Standby cost and takeover time (issue 24, SPEC §14.4), before and after.

*Before* is the slot's ``data/own`` and ``data/check`` as they were until issue 24
(bench/baseline/gateway/*.j2: a standby polls the lock every 2 s, its check runs every
second); *after* is the current templates (a standby waits in the kernel). Run with the
project venv's python, as root or not:

    .venv/bin/python bench/standby.py                 # 450 standbys after, 50 before
    .venv/bin/python bench/standby.py --quick         # smoke: 20 / 10 standbys, 10 s

**Cost.** One "host" (a scandir published by hermes-tasks with ``host_id: host-b``,
``shared_volume: true``, under a real ``s6-svscan``) whose every profile is owned by
"host-a": this process holds each profile's ``.gateway.lock`` and wrote its owner record.
The CPU of the whole supervision tree (s6-svscan, every s6-supervise, run scripts,
standbys, loggers, s6-notifyoncheck pollers and their checks, all descendants, including
the double-forked pollers: this process is their subreaper) is read from /proc/<pid>/stat
(utime+stime+cutime+cstime of each live process, plus what this process reaped) at the
start and end of a window, after the slots settled. The registrar slot is removed before
s6-svscan starts: its idle cost is the agent's own target, not the standby's. The *before*
tree is measured with fewer slots (it would take the machine from the other work) and
scaled linearly to the *after* size; the per-slot cost is what is compared.

**Takeover.** Two hosts (two scandirs, host-a and host-b) on one volume; a stand-in gateway
that records ``running`` for its pid (as hermes does) and sleeps. Host a owns every profile,
host b's slots are standbys; then host a dies (its supervisors are SIGKILLed, then each of
its gateways), and for each profile the time from its gateway's death until host b's
gateway runs (the owner record names host b and its supervised process is the gateway) and
until s6 says it is ready.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import fcntl
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(1, str(ROOT))
import bench as harness  # noqa: E402  (bench/bench.py: command dir, boot argv)
from hermes_tasks import inventory, render, svstatus  # noqa: E402

BASELINE = BENCH / "baseline"
TICK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
SECTION = "## Standby cost and takeover (issue 24)"

STANDIN = """#!/bin/sh
# Stand-in gateway: records "running" for its own pid, as hermes does, then sleeps.
dir=$HERMES_HOME
if [ "${1:-}" = -p ]; then dir="$HERMES_HOME/profiles/$2"; fi
printf '{"gateway_state": "running", "desired_state": "running", "pid": %s}\\n' $$ \\
  >"$dir/gateway_state.json"
exec sleep 86400
"""


# -- one host --------------------------------------------------------------------------------

def make_volume(home: Path, n: int) -> list[Path]:
    """``n`` profiles (default plus named ones), all wanted running; their directories."""
    dirs = []
    for i in range(n):
        d = home if i == 0 else home / "profiles" / f"p{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        if i:
            (d / "SOUL.md").write_text("# soul\n")
        (d / "gateway_state.json").write_text('{"desired_state": "running"}\n')
        dirs.append(d)
    return dirs


def publish(work: Path, home: Path, host_id: str, cmd: Path, variant: str) -> Path:
    """A scandir published by hermes-tasks for ``host_id``; ``before`` swaps in the baseline
    data/own and data/check. The registrar slot is taken out."""
    scandir = work / host_id / "scan"
    scandir.mkdir(parents=True)
    settings = {"hermes_home": str(home), "scandir": str(scandir), "s6_bin_dir": str(cmd),
                "hermes_bin": str(cmd / "hermes"), "service_user": None, "max_slots": 5000,
                "webhook_port_base": 8650 + 5000,
                "render_cache_dir": str(work / host_id / "render-cache"),
                "host_id": host_id, "shared_volume": True}
    path = work / host_id / "inventory.yml"
    path.write_text(json.dumps({"all": {"vars": settings}}) + "\n")  # JSON is YAML
    env = harness.base_env(HERMES_TASKS_INVENTORY=path)
    harness.timed([str(harness.BOOT)], env)
    shutil.rmtree(scandir / render.REGISTRAR, ignore_errors=True)
    if variant == "before":
        settings = inventory.load(env["HERMES_TASKS_INVENTORY"], [], environ={})
        baseline = baseline_renderer(settings)
        for slot in scandir.iterdir():
            if slot.name.startswith("gateway-"):
                _, _, check, own = baseline._render_scripts(slot.name[len("gateway-"):],
                                                            None, None)
                (slot / "data" / "check").write_text(check)
                (slot / "data" / "own").write_text(own)
    return scandir


def baseline_renderer(settings) -> render.Renderer:
    """A renderer whose data/own and data/check come from bench/baseline (the rest as now)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(BASELINE)),
                                    jinja2.FileSystemLoader(render.templates_dir())]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        autoescape=False)
    env.filters["shquote"] = render.shquote
    r = render.Renderer(settings)
    r._render = lambda name, ctx: env.get_template(name).render(ctx)
    return r


def hold_ownership(dirs: list[Path], host_id: str = "host-a") -> list[int]:
    """Take every profile's ownership lock here, as host a's gateways would."""
    fds = []
    for d in dirs:
        (d / ".gateway-owner.json").write_text(
            json.dumps({"host_id": host_id, "pid": os.getpid(), "since": "bench"}) + "\n")
        fd = os.open(d / ".gateway.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fds.append(fd)
    return fds


def start_svscan(scandir: Path, cmd: Path, home: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(cmd / "s6-svscan"), str(scandir)], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={"PATH": f"{cmd}:/usr/bin:/bin", "HERMES_HOME": str(home)})
    harness.wait_until(lambda: harness.fifo_has_reader(scandir / ".s6-svscan" / "control"), 10,
                       "s6-svscan")
    return proc


def gateway_slots(scandir: Path) -> list[Path]:
    return sorted(p for p in scandir.iterdir() if p.name.startswith("gateway-"))


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def standby_waiting(slot: Path, variant: str) -> bool:
    """Up as a standby: after, the supervised process is flock; before, data/own's shell."""
    st = svstatus.read(str(slot))
    if not (st.up and st.pid):
        return False
    return comm(st.pid) == ("flock" if variant == "after" else "own")


# -- the process tree ------------------------------------------------------------------------

def descendants() -> dict[int, tuple[int, int, int]]:
    """Every live descendant of this process: pid -> (ns on a CPU, times scheduled, ticks of
    its reaped children: cutime + cstime). /proc/<pid>/schedstat counts in ns; stat's
    utime/stime only in ticks (10 ms), too coarse for processes that barely run."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = {}, [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), ()):
            todo.append(child)
            try:
                with open(f"/proc/{child}/schedstat") as fh:
                    run_ns, _, scheduled = (int(f) for f in fh.read().split()[:3])
                with open(f"/proc/{child}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
            out[child] = (run_ns, scheduled, int(fields[13]) + int(fields[14]))
    return out


def reap() -> None:
    """Reap whatever was reparented to this subreaper and has exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def tree_cpu() -> tuple[float, int, int]:
    """CPU seconds used so far by every descendant (live ones and those reaped), how many
    times live ones were scheduled, and how many are alive."""
    reap()
    live = descendants()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(run / 1e9 + ticks / TICK for run, _, ticks in live.values())
    return (cpu + reaped.ru_utime + reaped.ru_stime,
            sum(scheduled for _, scheduled, _ in live.values()), len(live))


def stop_everything(procs: list[subprocess.Popen], scandirs: list[Path], cmd: Path) -> None:
    """End the trees this process started: s6-svscanctl -t, then SIGKILL by pid whatever
    descendant is left (never anything by name)."""
    for scandir in scandirs:
        subprocess.run([str(cmd / "s6-svscanctl"), "-t", str(scandir)], check=False,
                       stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while descendants() and time.monotonic() < deadline:
        reap()
        time.sleep(0.1)
    for _ in range(20):
        left = descendants()
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        reap()
    for proc in procs:
        proc.returncode = 0  # reaped above; keep Popen from complaining


# -- measurements ----------------------------------------------------------------------------

def measure_cost(variant: str, n: int, seconds: float, settle: float,
                 work: Path | None = None) -> dict:
    """CPU of a host with ``n`` standby slots over ``seconds``, in fractions of one core."""
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="hermes-standby-", dir=harness.TMPFS)) if own_work \
        else work
    cmd = harness.command_dir(work / "command")
    home = work / "home"
    dirs = make_volume(home, n)
    fds = hold_ownership(dirs)
    procs, scandirs = [], []
    try:
        scandir = publish(work, home, "host-b", cmd, variant)
        scandirs.append(scandir)
        procs.append(start_svscan(scandir, cmd, home, work / "svscan.log"))
        slots = gateway_slots(scandir)
        harness.wait_until(lambda: all(standby_waiting(s, variant) for s in slots),
                           60 + n / 5, f"{n} standbys")
        time.sleep(settle)  # first checks, loggers starting: not the steady state
        cpu0, woken0, _ = tree_cpu()
        t0 = time.monotonic()
        time.sleep(seconds)
        cpu1, woken1, count = tree_cpu()
        elapsed = time.monotonic() - t0
        if not all(standby_waiting(s, variant) for s in slots):
            raise RuntimeError("a standby left its wait during the measurement")
        core = (cpu1 - cpu0) / elapsed
        return {"variant": variant, "slots": n, "seconds": elapsed, "cpu_s": cpu1 - cpu0,
                "core": core, "per_slot": core / n, "processes": count,
                "wakeups_per_s": (woken1 - woken0) / elapsed}
    finally:
        stop_everything(procs, scandirs, cmd)
        for fd in fds:
            os.close(fd)
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def measure_takeover(variant: str, n: int, rounds: int) -> dict:
    """Per profile and round: seconds from host a's gateway's death to host b's gateway
    running and to s6's ready flag on host b. Each round starts afresh and kills host a at
    a random moment of the old standby's 2 s poll."""
    out = {"variant": variant, "profiles": n, "rounds": rounds, "running": [], "ready": []}
    for _ in range(rounds):
        one = takeover_round(variant, n)
        out["running"] += one["running"]
        out["ready"] += one["ready"]
    out["running"].sort()
    out["ready"].sort()
    return out


def takeover_round(variant: str, n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hermes-takeover-", dir=harness.TMPFS))
    cmd = harness.command_dir(work / "command")
    (cmd / "hermes").write_text(STANDIN)
    home = work / "home"
    make_volume(home, n)
    procs, scandirs = [], []
    try:
        a = publish(work, home, "host-a", cmd, variant)
        scandirs.append(a)
        procs.append(start_svscan(a, cmd, home, work / "svscan-a.log"))
        a_slots = gateway_slots(a)
        harness.wait_until(lambda: all(svstatus.read(str(s)).ready for s in a_slots),
                           60 + n, "host a's gateways ready")
        owners = {s.name: svstatus.read(str(s)).pid for s in a_slots}
        b = publish(work, home, "host-b", cmd, variant)
        scandirs.append(b)
        procs.append(start_svscan(b, cmd, home, work / "svscan-b.log"))
        b_slots = gateway_slots(b)
        harness.wait_until(lambda: all(standby_waiting(s, variant) for s in b_slots),
                           60 + n, "host b's standbys")
        time.sleep(2 + random.uniform(0, 2))  # at any phase of the old standby's poll
        # Host a dies: its supervisors first (nothing restarts), then its gateways.
        supervisors = [pid for pid in descendants()
                       if comm(pid) in ("s6-svscan", "s6-supervise")
                       and _cwd(pid).startswith(str(a))]
        for pid in supervisors:
            os.kill(pid, signal.SIGKILL)
        gone = {}
        for slot in a_slots:
            os.kill(owners[slot.name], signal.SIGKILL)
            gone[slot.name] = time.monotonic()
        running, ready = {}, {}
        deadline = time.monotonic() + 30
        while len(ready) < len(b_slots) and time.monotonic() < deadline:
            now = time.monotonic()
            for slot in b_slots:
                if slot.name in ready:
                    continue
                st = svstatus.read(str(slot))
                if slot.name not in running and st.up and comm(st.pid) == "sleep":
                    running[slot.name] = now - gone[slot.name]
                if st.ready and st.up:
                    ready[slot.name] = now - gone[slot.name]
                    running.setdefault(slot.name, ready[slot.name])
            reap()
            time.sleep(0.005)
        if len(ready) < len(b_slots):
            raise RuntimeError(f"only {len(ready)} of {len(b_slots)} profiles taken over")
        return {"running": list(running.values()), "ready": list(ready.values())}
    finally:
        stop_everything(procs, scandirs, cmd)
        shutil.rmtree(work, ignore_errors=True)


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# -- report ----------------------------------------------------------------------------------

def pct(core: float) -> str:
    return f"{core * 100:.4f}%"


def report(costs: dict, takeovers: dict, target_n: int, argv: list[str], load: float) -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [SECTION, "",
             f"Produced by `{' '.join(argv)}` on {now}; {os.cpu_count()} CPUs, load average "
             f"(1 min) {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; uid "
             f"{os.geteuid()}. *Before*: data/own polls the lock every 2 s and data/check runs "
             "every second (bench/baseline/); *after*: the standby waits in the kernel "
             "(flock -F on the lock; the check waits on the standby's mark, then checks every "
             "0.1 s for up to 2 s).", "",
             f"CPU of the whole supervision tree of one host whose every slot is a standby, "
             f"over a window after the slots settled; in % of one core. "
             f"Scaled to {target_n} = per-slot cost × {target_n}.", "",
             "*Wake-ups/s*: times the processes alive at the end were scheduled, per second "
             "(processes that came and went are in the CPU column only).", "",
             "| variant | slots measured | window s | processes | wake-ups/s | tree CPU "
             f"| per slot | scaled to {target_n} |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in costs.values():
        lines.append(f"| {c['variant']} | {c['slots']} | {c['seconds']:.0f} | {c['processes']} "
                     f"| {c['wakeups_per_s']:.1f} | {pct(c['core'])} | {pct(c['per_slot'])} "
                     f"| {pct(c['per_slot'] * target_n)} |")
    if "before" in costs and "after" in costs and costs["after"]["per_slot"] > 0:
        lines += ["", f"Per-slot ratio after / before: "
                  f"{costs['after']['per_slot'] / costs['before']['per_slot']:.4f}."]
    after = costs.get("after")
    if after:
        verdict = "pass" if after["per_slot"] * target_n < 0.01 else "FAIL"
        lines += ["", f"Target: {target_n} standby slots under 1% of one core: "
                  f"{pct(after['per_slot'] * target_n)} — **{verdict}**."]
    if takeovers:
        lines += ["", "Takeover: host a dies (supervisors, then gateways SIGKILLed); seconds "
                  "from each gateway's death until host b runs it and until s6 says ready "
                  "(median, max over the profiles and rounds; each round kills host a at a "
                  "random moment of the old 2 s poll). The stand-in gateway is running at once; "
                  "before, ready follows at the check's next run (every second); after, within "
                  "0.1 s (the check that waited on the standby's mark checks every 0.1 s for "
                  "2 s once the mark goes).", "",
                  "| variant | profiles × rounds | running median | running max | ready median "
                  "| ready max |", "|---|---:|---:|---:|---:|---:|"]
        for t in takeovers.values():
            lines.append(f"| {t['variant']} | {t['profiles']} × {t['rounds']} "
                         f"| {statistics.median(t['running']):.2f} | {max(t['running']):.2f} "
                         f"| {statistics.median(t['ready']):.2f} | {max(t['ready']):.2f} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace this script's section of the report (or append it); keep everything else."""
    old = path.read_text() if path.exists() else ""
    start = old.find(SECTION)
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(SECTION))
    path.write_text(old[:start] + text + (old[end:] if end >= 0 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=450, help="standbys, after (default 450)")
    parser.add_argument("--before-slots", type=int, default=50,
                        help="standbys, before (default 50; scaled to --slots)")
    parser.add_argument("--seconds", type=float, default=60, help="window (default 60 s)")
    parser.add_argument("--settle", type=float, default=10, help="before the window (10 s)")
    parser.add_argument("--takeover", type=int, default=20,
                        help="profiles in the takeover run (default 20; 0 = skip)")
    parser.add_argument("--rounds", type=int, default=5, help="takeover rounds (default 5)")
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--quick", action="store_true", help="smoke: 20/10 slots, 10 s")
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    parser.add_argument("--json", action="store_true",
                        help="print the measurements as JSON instead of writing the report")
    args = parser.parse_args(argv)
    if args.quick:
        args.slots, args.before_slots, args.seconds, args.settle, args.takeover = 20, 10, 10, 3, 5
        args.rounds = 2
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    harness.compile_ours()
    load = os.getloadavg()[0]
    variants = args.variants.split(",")
    costs, takeovers = {}, {}
    for variant in variants:
        n = args.slots if variant == "after" else args.before_slots
        costs[variant] = measure_cost(variant, n, args.seconds, args.settle)
        print(f"cost {variant}: {costs[variant]}", file=sys.stderr, flush=True)
    for variant in variants:
        if args.takeover:
            takeovers[variant] = measure_takeover(variant, args.takeover, args.rounds)
            print(f"takeover {variant}: {takeovers[variant]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"target_slots": args.slots, "costs": costs, "takeovers": takeovers}))
        return 0
    text = report(costs, takeovers, args.slots,
                  [os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT),
                   *sys.argv[1:]], load)
    write_section(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
