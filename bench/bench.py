"""Benchmark hermes-tasks against the reference reconciler (hermes-agent 0.19.0), issue 7.

Run with the project venv's python, from anywhere:

    .venv/bin/python bench/bench.py            # N = 1, 10, 100, 1000; writes bench/RESULTS.md
    .venv/bin/python bench/bench.py --quick    # smoke: N = 1, 10, 2 runs; standby --quick
    .venv/bin/python bench/bench.py --no-standby   # without the standby cost and takeover

Per N it times, interleaved round by round (A B C D E, A B C D E, ...): our reconcile on a
fresh scandir, our re-run over an unchanged home, our cold boot, the reference fresh and
re-run, and the floors of a fresh boot and of an unchanged re-run (bench/floor.py). Homes
and scandirs live on tmpfs (/dev/shm). Each run is a child process timed wall-clock from
spawn to reap; its peak RSS and CPU come from ``os.wait4``. Then it times ``hermes-tasks
gateway.status`` (under a real s6-svscan) against the reference's ``hermes gateway status``
and the floor of a status, and, unless ``--no-standby``, runs bench/standby.py: the CPU of a
host whose slots are all standbys and the takeover time when the owner dies, before (the
old 2 s poll) and after. Every target row shows its floor, so a gap can be told apart
from what no implementation can avoid (bench/phases.py splits our side into phases).
Stdlib only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REF_VENV = BENCH / ".venv-ref"
REF_PACKAGE = "hermes-agent==0.19.0"
OURS = Path(sys.executable).parent / "hermes-tasks"
BOOT = Path(sys.executable).parent / "hermes-tasks-boot"  # what the image's cont-init runs
FLOOR = BENCH / "floor.py"
S6_BIN = Path("/usr/bin")
TMPFS = Path("/dev/shm")
STATUS_N = 10
GOAL_N = 1000
TARGETS = (  # issue 24's table at N=1000: (row, kind, before the runtime work, goal)
    ("cold boot (new container: the image's primed render cache only)", "cold", "0.40x", 0.35),
    ("boot of a restarted container (render cache kept)", "fresh", "-", 0.25),
    ("later unchanged re-run", "rerun", "0.17x", 0.12),
    (f"`gateway.status` ({STATUS_N} profiles) vs `hermes gateway status`", "status", "0.13x",
     0.10),
    (f"peak RSS at N={GOAL_N}", "rss", "0.70x", 0.60),
)
STANDBY = BENCH / "standby.py"
STANDBY_GOAL = 0.01  # 450 standby slots under 1% of one core (issue 24)
TAKEOVER_GOAL = 2.0  # no worse than the old standby's 2 s poll (issue 24)

# -- the things timed ---------------------------------------------------------------------

def make_home(home: Path, n: int) -> None:
    """A home with ``n`` profiles: default plus ``n - 1`` named ones; every other one running."""
    home.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pdir = home if i == 0 else home / "profiles" / f"p{i:04d}"
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "SOUL.md").write_text("# soul\n")
        state = "running" if i % 2 == 0 else "stopped"
        (pdir / "gateway_state.json").write_text(json.dumps({"desired_state": state}) + "\n")


def ours_argv(home: Path, scandir: Path, cmd: Path, task: str = "reconcile",
              cold: bool = False, **extra) -> tuple[list[str], dict[str, str]]:
    """Our command and environment: settings in an inventory file, as the image has them.

    ``reconcile`` is the boot entry point the image's cont-init runs (no arguments);
    other tasks go through the ``hermes-tasks`` program. Like the image, renders are kept
    in a ``render_cache_dir`` outside the scandir (a restarted container keeps it);
    ``cold`` names one that does not exist: a boot with no render cache at all (the
    *cold, unprimed* column; the cold case itself is a kept directory that :func:`primed`
    restores before each run, what the image's build wrote). The parsed
    inventory is kept in a directory every case has (``$HERMES_TASKS_CACHE_DIR``), as the
    image primes its ``/var/cache/hermes-tasks`` at build time.
    """
    cache = scandir.parent / "render-cache"
    if not cold:
        cache.mkdir(mode=0o700, exist_ok=True)
    parsed = scandir.parent / "inventory-cache"
    parsed.mkdir(mode=0o700, exist_ok=True)
    settings = {"hermes_home": str(home), "scandir": str(scandir), "s6_bin_dir": str(cmd),
                "hermes_bin": str(cmd / "hermes"), "service_user": None,
                "max_slots": 5000, "webhook_port_base": 8650 + 5000, "render_cache_dir": str(cache),
                **{k: str(v) for k, v in extra.items()}}
    inventory = scandir.parent / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"vars": settings}}) + "\n")  # JSON is YAML
    env = base_env(HERMES_TASKS_INVENTORY=inventory, HERMES_TASKS_CACHE_DIR=parsed)
    return ([str(BOOT)] if task == "reconcile" else [str(OURS), task]), env


def primed(argv_env: tuple[list[str], dict[str, str]], scandir: Path,
           python: str | None = None) -> Path:
    """Prime the render cache of ``ours_argv``'s settings as the image's build does
    (``python -m hermes_tasks.prime``: the settings' shared renders, nothing reconciled), and
    keep a copy of the directory beside it; returns the copy. :func:`restore_primed` puts it
    back before each cold run: a new container of the image holds exactly that, and nothing
    a boot adds (no volume cache, no other render). ``python``: the interpreter path the
    timed process runs as (default the boot script's shebang): the registrar's run names it,
    as the image's build primes with the venv's python the boot runs."""
    cache = scandir.parent / "render-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(mode=0o700)
    # The boot's own interpreter path (its shebang): the registrar's run names it.
    python = python or BOOT.read_text().splitlines()[0][2:].strip()
    subprocess.run([python, "-m", "hermes_tasks.prime"], env=argv_env[1], check=True,
                   stdout=subprocess.DEVNULL)
    keep = scandir.parent / "render-cache.primed"
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(cache, keep)
    return keep


def restore_primed(keep: Path) -> None:
    """``render_cache_dir`` as the image ships it (see :func:`primed`)."""
    cache = keep.parent / "render-cache"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(keep, cache)  # copystat: root's 0700 as built


def floor_argv(home: Path, scandir: Path, mode: str | None = None) -> list[str]:
    """bench/floor.py: a fresh boot's floor; ``mode`` "rerun" or "status" for the others."""
    return [sys.executable, str(FLOOR), *([f"--{mode}"] if mode else []), str(home), str(scandir)]


def ref_argv() -> list[str]:
    return [str(REF_VENV / "bin" / "python"), "-m", "hermes_cli.container_boot"]


def base_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES", "S6_PROFILE")) and k != "PYTHONPATH"}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def ref_env(home: Path, scandir: Path) -> dict[str, str]:
    return base_env(HERMES_HOME=home, S6_PROFILE_GATEWAY_SCANDIR=scandir)


def harness_rss() -> int:
    """This process's peak RSS, KiB. Linux starts a spawned child's ``ru_maxrss`` at it (the
    parent's memory it was spawned from), so a child's smaller peak reads as this one."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Run ``argv`` to completion; return (wall s, peak RSS KiB, CPU s). Raises on failure.

    The peak RSS is ``os.wait4``'s: at least :func:`harness_rss` whatever the child used."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}:\n"
                               f"{err.read().decode(errors='replace')[-2000:]}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def slot_shape(scandir: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Each ``gateway-*`` slot as sorted (relative path, kind, octal mode) rows."""
    kinds = {0o040000: "dir", 0o100000: "file", 0o010000: "fifo", 0o120000: "link"}
    shape = {}
    for slot in sorted(p for p in scandir.iterdir() if p.name.startswith("gateway-")):
        rows = []
        for path in sorted(slot.rglob("*")):
            st = path.lstat()
            rows.append((str(path.relative_to(slot)), kinds.get(st.st_mode & 0o170000, "?"),
                         oct(st.st_mode & 0o7777)))
        shape[slot.name] = rows
    return shape


def count_slots(scandir: Path) -> int:
    return sum(1 for name in os.listdir(scandir) if name.startswith("gateway-"))


# -- cases and rounds ---------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """One thing timed at one N. ``fresh`` cases get an empty scandir before every run."""

    name: str
    home: Path
    scandir: Path
    argv: list[str]
    env: dict[str, str] | None
    fresh: bool
    n: int
    times: list[float] = dataclasses.field(default_factory=list)
    rss: list[int] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    bound: int = 0  # this harness's peak RSS, KiB: an ``rss`` no larger is only a bound
    primed: Path | None = None  # restored as render_cache_dir before each run (untimed)

    def once(self, record: bool = True) -> None:
        if self.primed is not None:
            restore_primed(self.primed)
        if self.fresh:
            shutil.rmtree(self.scandir, ignore_errors=True)
            self.scandir.mkdir(parents=True)
        self.bound = max(self.bound, harness_rss())
        elapsed, rss, cpu = timed(self.argv, self.env)
        if count_slots(self.scandir) != self.n:
            raise RuntimeError(f"{self.name}: expected {self.n} gateway slots in {self.scandir}")
        if record:
            self.times.append(elapsed)
            self.rss.append(rss)
            self.cpu.append(cpu)


def cases_for(work: Path, n: int) -> list[Case]:
    out = []
    cmd = work / "command"
    if not cmd.exists():
        command_dir(cmd)
    for name, fresh in (("ours", True), ("ours_rerun", False), ("ours_cold", True),
                        ("ours_unprimed", True), ("ref", True), ("ref_rerun", False), ("floor", True),
                        ("floor_rerun", False)):
        home, scandir = work / f"{name}-{n}" / "home", work / f"{name}-{n}" / "scan"
        make_home(home, n)
        scandir.mkdir(parents=True, exist_ok=True)
        keep = None
        if name.startswith("ours"):
            argv, env = ours_argv(home, scandir, cmd, cold=name == "ours_unprimed")
            if name == "ours_cold":
                keep = primed((argv, env), scandir)
        elif name.startswith("ref"):
            argv, env = ref_argv(), ref_env(home, scandir)
        elif name == "floor_rerun":  # over the slots a fresh floor publishes (our shape)
            timed(floor_argv(home, scandir), base_env())
            argv, env = floor_argv(home, scandir, "rerun"), base_env()
        else:
            argv, env = floor_argv(home, scandir), base_env()
        out.append(Case(name, home, scandir, argv, env, fresh, n, primed=keep))
    return out


def interleave(cases: list[Case], runs: int) -> None:
    """One untimed warm-up each (it also seeds the re-run scandirs), then ``runs`` rounds."""
    for case in cases:
        case.once(record=False)
    for r in range(runs):
        k = r % len(cases)  # rotate the starting case so no one always runs first
        for case in cases[k:] + cases[:k]:
            case.once()


# -- gateway.status under a real s6-svscan ------------------------------------------------

def command_dir(path: Path) -> Path:
    """An s6-overlay-like /command: the s6 tools, a with-contenv shim, a stand-in gateway."""
    if path.exists():
        return path
    path.mkdir(parents=True)
    for tool in S6_BIN.glob("s6-*"):
        (path / tool.name).symlink_to(tool)
    for name, body in (("with-contenv", 'exec "$@"'), ("hermes", "exec sleep 86400")):
        (path / name).write_text(f"#!/bin/sh\n{body}\n")
        (path / name).chmod(0o755)
    return path


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fifo_has_reader(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def bench_status(work: Path, runs: int) -> list[Case]:
    """Ours under a live s6-svscan vs the reference CLI on an identical sandbox home."""
    cmd = command_dir(work / "command")
    home, scandir = work / "status-ours" / "home", work / "status-ours" / "scan"
    make_home(home, STATUS_N)
    scandir.mkdir(parents=True)
    timed(*ours_argv(home, scandir, cmd))
    ref_home = work / "status-ref" / "home"
    make_home(ref_home, STATUS_N)
    with open(work / "svscan.log", "ab") as log:
        svscan = subprocess.Popen([str(cmd / "s6-svscan"), str(scandir)], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={"PATH": f"{cmd}:/usr/bin:/bin", "HERMES_HOME": str(home)})
    try:
        wait_until(lambda: fifo_has_reader(scandir / ".s6-svscan" / "control"), 5, "s6-svscan")
        up = [scandir / f"gateway-{'default' if i == 0 else f'p{i:04d}'}"
              for i in range(0, STATUS_N, 2)]
        wait_until(lambda: all((s / "supervise" / "status").exists() for s in up), 10, "slots")
        time.sleep(0.5)  # let the registrar's own reconcile run finish
        cases = [
            Case("ours_status", home, scandir, *ours_argv(home, scandir, cmd, "gateway.status"),
                 False, STATUS_N),
            Case("ref_status", ref_home, scandir, [str(REF_VENV / "bin" / "hermes"), "gateway",
                 "status"], base_env(HERMES_HOME=ref_home, HOME=ref_home), False, STATUS_N),
            Case("floor_status", home, scandir, floor_argv(home, scandir, "status"), base_env(),
                 False, STATUS_N),
        ]
        interleave(cases, runs)
    finally:
        subprocess.run([str(cmd / "s6-svscanctl"), "-t", str(scandir)], check=False)
        try:
            svscan.wait(15)
        except subprocess.TimeoutExpired:
            svscan.kill()  # our own child, by its PID
            svscan.wait()
    return cases


# -- setup and report ---------------------------------------------------------------------

def ensure_ref_venv() -> None:
    """Install the reference into bench/.venv-ref once; reuse it afterwards."""
    if (REF_VENV / "bin" / "hermes").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(REF_VENV)], check=True)
    subprocess.run([str(REF_VENV / "bin" / "pip"), "install", "-q", REF_PACKAGE], check=True)


def compile_ours() -> None:
    """Byte-compile our package, as ``pip install`` does for the reference.

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE`` (or edited since its last
    import) would otherwise recompile every changed module in every timed run.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "hermes_tasks")],
                   check=True)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_facts(load_at_start: float) -> list[str]:
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    ref_py = subprocess.run([str(REF_VENV / "bin" / "python"), "-c",
                             "import sys; print(sys.version.split()[0])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    return [f"nproc: {len(os.sched_getaffinity(0))} (cpu_count {os.cpu_count()}), CPU: {cpu}",
            f"kernel: {platform.release()}; homes and scandirs on tmpfs ({TMPFS})",
            f"python: ours {platform.python_version()} ({os.path.relpath(sys.executable, ROOT)}); "
            f"reference {ref_py}",
            f"uid: {os.geteuid()} (as root both implementations chown the supervise skeleton)",
            (f"load average (1 min) at start / end: {load_at_start:.2f} / "
             f"{os.getloadavg()[0]:.2f} (other work on the machine inflates wall times; "
             "interleaving keeps the ratios fair)")]


def ms(case: Case) -> str:
    return f"{med(case.times) * 1000:.0f}"


def cpu_ms(case: Case) -> str:
    return f"{med(case.cpu) * 1000:.0f}"


def ratio(ours: Case, ref: Case) -> float:
    return med(ours.times) / med(ref.times)


def peak_mib(*cases: Case) -> float:
    return max(max(c.rss) for c in cases) / 1024


def rss_cell(*cases: Case) -> str:
    """The peak RSS as printed: "<= x" when it is no larger than this harness's own peak
    (:func:`harness_rss`), which the child's ``ru_maxrss`` starts at."""
    peak = max(max(c.rss) for c in cases)
    bounded = peak <= max(c.bound for c in cases) + 64
    return f"{'<= ' if bounded else ''}{peak / 1024:.1f}"


def measured(kind: str, n: int, results: dict[int, dict[str, Case]],
             status: list[Case]) -> float | None:
    """The value a target is judged on (a ratio ours / reference), None if not measured."""
    if kind == "status":
        return ratio(status[0], status[1])
    if n not in results:
        return None
    c = results[n]
    if kind == "cold":
        return ratio(c["ours_cold"], c["ref"])
    if kind == "rss":
        return peak_mib(c["ours"], c["ours_rerun"], c["ours_cold"]) / \
            peak_mib(c["ref"], c["ref_rerun"])
    suffix = "" if kind == "fresh" else "_rerun"
    return ratio(c["ours" + suffix], c["ref" + suffix])


def sides(kind: str, c: dict[str, Case] | None, status: list[Case]) -> tuple[str, str]:
    """The two values a target's ratio is made of, as printed."""
    if kind == "status":
        return f"{ms(status[0])} ms", f"{ms(status[1])} ms"
    if kind == "rss":
        return (f"{rss_cell(c['ours'], c['ours_rerun'], c['ours_cold'])} MiB",
                f"{rss_cell(c['ref'], c['ref_rerun'])} MiB")
    ours, ref = {"cold": ("ours_cold", "ref"), "fresh": ("ours", "ref"),
                 "rerun": ("ours_rerun", "ref_rerun")}[kind]
    return f"{ms(c[ours])} ms", f"{ms(c[ref])} ms"


def bench_standby(args: list[str]) -> dict:
    """bench/standby.py (cost and takeover, before and after) in its own process: it becomes
    the subreaper of the trees it measures. Its JSON document."""
    res = subprocess.run([sys.executable, str(STANDBY), *args, "--json"], check=True,
                         stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def standby_section(doc: dict, argv: list[str], load: float) -> tuple[str, str]:
    """bench/standby.py's own report section for ``doc``, and its heading."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hermes_bench_standby", STANDBY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.report(doc["costs"], doc["takeovers"], doc["target_slots"], argv, load), \
        module.SECTION


def with_section(text: str, heading: str, section: str) -> str:
    """``text`` with its ``heading`` section replaced by ``section`` (or it appended)."""
    start = text.find(heading)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(heading))
    return text[:start] + section + (text[end:] if end >= 0 else "")


def report(results: dict[int, dict[str, Case]], status: list[Case], runs: dict[int, int],
           argv: list[str], load_at_start: float, standby: dict | None = None) -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = ["# hermes-tasks benchmark (issue 7)", "",
             f"Produced by `{shlex.join(argv)}` (run from the repository root) on {now}.", ""]
    lines += [f"- {fact}" for fact in machine_facts(load_at_start)]
    lines += ["", ("Medians of wall time per child process (spawn to reap), in ms; ratios are "
                   "ours / reference; RSS is the largest peak RSS over the runs, in MiB "
                   "(`ru_maxrss` from `wait4`: Linux starts a child's at the peak RSS of the "
                   "process that spawned it, this harness, so `<=` marks a bound: the child "
                   "used no more). N counts "
                   "the default profile; every other profile is `running`. Runs interleaved. As root, "
                   "ours also publishes its registrar slot; both append to the boot log; the "
                   "floor does neither. *Fresh* is a boot into an empty scandir with the image's "
                   "render cache directory kept (a restarted container); *cold* is a new "
                   "container's first boot: the render cache directory holds exactly what the "
                   "image's build primed (`python -m hermes_tasks.prime`, restored before each "
                   "run); *cold, unprimed* has no render cache anywhere (Jinja is imported and "
                   "the templates compiled). *Floor* is bench/floor.py: only the file operations a fresh "
                   "boot cannot avoid; *floor re-run* only the reads an unchanged re-run cannot "
                   "avoid (no write); both are Python processes too, so they include the "
                   "interpreter's start."), "",
              ("| N | runs | ours fresh | ref fresh | ratio | ours re-run | ref re-run | ratio "
               "| ours cold | cold/ref | ours cold, unprimed | unprimed/ref | floor | floor/ref "
               "| floor re-run | floor re-run/ref | RSS ours | RSS ref | RSS floor |"),
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
              "---:|---:|---:|"]
    for n, c in results.items():
        lines.append(
            f"| {n} | {runs[n]} | {ms(c['ours'])} | {ms(c['ref'])} "
            f"| {ratio(c['ours'], c['ref']):.2f} | {ms(c['ours_rerun'])} | {ms(c['ref_rerun'])} "
            f"| {ratio(c['ours_rerun'], c['ref_rerun']):.2f} | {ms(c['ours_cold'])} "
            f"| {ratio(c['ours_cold'], c['ref']):.2f} | {ms(c['ours_unprimed'])} "
            f"| {ratio(c['ours_unprimed'], c['ref']):.2f} | {ms(c['floor'])} "
            f"| {ratio(c['floor'], c['ref']):.2f} | {ms(c['floor_rerun'])} "
            f"| {ratio(c['floor_rerun'], c['ref_rerun']):.2f} "
            f"| {rss_cell(c['ours'], c['ours_rerun'], c['ours_cold'])} "
            f"| {rss_cell(c['ref'], c['ref_rerun'])} "
            f"| {rss_cell(c['floor'], c['floor_rerun'])} |")
    lines += ["", ("Peak RSS per case (MiB; the RSS columns above take the largest of each side's "
                   "cases; `<=`: a bound, as above):"), ""]
    lines += [f"- N={n}: " + ", ".join(f"{c.name} {rss_cell(c)}" for c in cases.values())
              for n, cases in results.items()]
    lines += ["", ("CPU time (user + sys of the child, medians, ms): less sensitive than wall "
                   "time to other load on the machine."), "",
              ("| N | ours fresh | ref fresh | ours re-run | ref re-run | ours cold "
               "| ours cold, unprimed | floor | floor re-run |"),
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {cpu_ms(c['ours'])} | {cpu_ms(c['ref'])} | {cpu_ms(c['ours_rerun'])} "
              f"| {cpu_ms(c['ref_rerun'])} | {cpu_ms(c['ours_cold'])} "
              f"| {cpu_ms(c['ours_unprimed'])} | {cpu_ms(c['floor'])} "
              f"| {cpu_ms(c['floor_rerun'])} |"
              for n, c in results.items()]
    ours_st, ref_st, floor_st = status
    lines += ["", (f"CLI, {STATUS_N} profiles under a live s6-svscan, {len(ours_st.times)} runs: "
                   f"`hermes-tasks gateway.status` {ms(ours_st)} ms (CPU {cpu_ms(ours_st)} ms) "
                   f"vs `hermes gateway status` {ms(ref_st)} ms (CPU {cpu_ms(ref_st)} ms), ratio "
                   f"{ratio(ours_st, ref_st):.3f}; the floor of a status (state file, port files "
                   f"and `supervise/status` of each profile, one line printed each) "
                   f"{ms(floor_st)} ms (CPU {cpu_ms(floor_st)} ms). The reference's status "
                   "does not use s6 here (only when PID 1 is s6-svscan); it scans processes."),
              "", f"## Targets (issue 24, N={GOAL_N})", "",
              ("*Floor*: the same row for bench/floor.py (fresh: the floor of a boot; re-run: of "
               "an unchanged re-run; status: of a status; RSS: the floor's peak), as a ratio to "
               "the same reference: the best any Python implementation could reach. *Gap* is "
               "ours − floor; bench/phases.py says where it goes."), "",
              ("| row | ours | reference | ratio | floor | floor ratio | gap | "
               "before the runtime work | goal | result |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, kind, before, limit in TARGETS:
        value = measured(kind, GOAL_N, results, status)
        if value is None:
            lines.append(f"| {label} | not measured | | | | | | {before} | <= {limit}x | n/a |")
            continue
        ours, ref = sides(kind, results.get(GOAL_N), status)
        fl, fl_ratio, gap = floor_side(kind, results.get(GOAL_N), status)
        verdict = "pass" if value <= limit else "FAIL"
        lines.append(f"| {label} | {ours} | {ref} | {value:.3f}x | {fl} | {fl_ratio} | {gap} "
                     f"| {before} | <= {limit}x | {verdict} |")
    lines += standby_rows(standby)
    return "\n".join(lines) + "\n"


def floor_side(kind: str, c: dict[str, Case] | None,
               status: list[Case]) -> tuple[str, str, str]:
    """A target row's floor, the floor's ratio to the same reference, and ours - floor."""
    if kind == "rss":
        ours = peak_mib(c["ours"], c["ours_rerun"], c["ours_cold"])
        fl = peak_mib(c["floor"], c["floor_rerun"])
        return f"{rss_cell(c['floor'], c['floor_rerun'])} MiB", \
            f"{fl / peak_mib(c['ref'], c['ref_rerun']):.3f}x", f"{ours - fl:.1f} MiB"
    if kind == "status":
        ours, ref, fl = status
    else:
        names = {"cold": ("ours_cold", "ref", "floor"), "fresh": ("ours", "ref", "floor"),
                 "rerun": ("ours_rerun", "ref_rerun", "floor_rerun")}[kind]
        ours, ref, fl = (c[name] for name in names)
    gap = (med(ours.times) - med(fl.times)) * 1000
    return f"{ms(fl)} ms", f"{ratio(fl, ref):.3f}x", f"{gap:.0f} ms"


def standby_rows(standby: dict | None) -> list[str]:
    """The standby rows of the targets table (bench/standby.py's measurements)."""
    def row(label, ours, before, goal, verdict, ref="(no standby)"):
        return "| " + " | ".join([label, ours, ref, "", "", "", "", before, goal, verdict]) + " |"

    cost_goal, take_goal = f"< {STANDBY_GOAL:.0%} of a core", \
        f"<= {TAKEOVER_GOAL:.0f} s (the old poll)"
    if standby is None:
        return [row("standby host: 450 standby slots", "not measured", "1.2 cores", cost_goal,
                    "n/a", ""),
                row("takeover: owner's gateway killed -> standby's gateway running",
                    "not measured", "2 s poll", take_goal, "n/a", "")]
    rows = []
    target = standby["target_slots"]
    after, before = standby["costs"].get("after"), standby["costs"].get("before")
    if after:
        scaled = after["per_slot"] * target
        was = f"{before['per_slot'] * target:.3%} of a core" if before else "1.2 cores"
        rows.append(row(f"standby host: {target} standby slots ({after['slots']} measured, "
                        f"{after['seconds']:.0f} s)", f"{scaled:.3%} of a core", was, cost_goal,
                        "pass" if scaled < STANDBY_GOAL else "FAIL"))
    t_after, t_before = (standby["takeovers"].get(v) for v in ("after", "before"))
    if t_after:
        # Judged on "running" (the standby's gateway is up); s6's ready flag is shown too.
        worst = max(t_after["running"])
        rows.append(row(f"takeover: owner's gateway killed -> standby's gateway running "
                        f"(ready) ({t_after['profiles']} profiles x {t_after['rounds']} rounds)",
                        takeover_cell(t_after), takeover_cell(t_before) if t_before
                        else "2 s poll", take_goal, "pass" if worst <= TAKEOVER_GOAL else "FAIL"))
    return rows


def takeover_cell(t: dict) -> str:
    return (f"median {statistics.median(t['running']):.2f} s, max {max(t['running']):.2f} s "
            f"(ready: median {statistics.median(t['ready']):.2f} s, max {max(t['ready']):.2f} s)")


def kept_sections(path: Path) -> str:
    """The report's sections written by other bench scripts (bench/fleet.py's), kept as is."""
    try:
        old = path.read_text()
    except FileNotFoundError:
        return ""
    start = old.find("\n## Fleet")
    return old[start:] if start >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: N=1,10 with 2 runs")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--big-runs", type=int, default=5, help="timed runs at N=1000 (default 5)")
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="Markdown report path")
    parser.add_argument("--standby-slots", type=int, default=450,
                        help="standby slots measured by bench/standby.py (default 450; 0 = skip)")
    parser.add_argument("--standby-seconds", type=float, default=60,
                        help="its measurement window (default 60 s)")
    parser.add_argument("--takeover", type=int, default=20,
                        help="profiles in bench/standby.py's takeover run (default 20; 0 = skip)")
    parser.add_argument("--no-standby", action="store_true",
                        help="skip bench/standby.py (standby cost and takeover)")
    parser.add_argument("--sizes", help="comma-separated N to time (default 1,10,100,1000)")
    args = parser.parse_args(argv)
    standby_args = ["--slots", str(args.standby_slots), "--seconds", str(args.standby_seconds),
                    "--takeover", str(args.takeover)]
    if args.quick:
        standby_args = ["--quick"]
    if args.no_standby or not args.standby_slots:
        standby_args = None
    sizes = (1, 10) if args.quick else (1, 10, 100, 1000)
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
    runs = {n: 2 if args.quick else (args.big_runs if n >= 1000 else args.runs) for n in sizes}
    ensure_ref_venv()
    compile_ours()
    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="hermes-bench-", dir=TMPFS))
    try:
        results = {}
        for n in sizes:
            t0 = time.monotonic()
            cases = cases_for(work, n)
            interleave(cases, runs[n])
            results[n] = {c.name: c for c in cases}
            print(f"N={n}: " + ", ".join(f"{c.name} {med(c.times) * 1000:.0f} ms" for c in cases)
                  + f" ({time.monotonic() - t0:.0f} s)", flush=True)
            for c in cases:  # free the tmpfs before the next size
                shutil.rmtree(c.home.parent, ignore_errors=True)
        status = bench_status(work, max(runs.values()) if args.quick else args.runs)
        print(", ".join(f"{c.name} {med(c.times) * 1000:.0f} ms" for c in status), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    standby = None
    if standby_args is not None:
        standby_load = os.getloadavg()[0]
        standby = bench_standby(standby_args)
        after = standby["costs"].get("after")
        if after:
            print(f"standby: {after['core']:.3%} of a core for {after['slots']} slots",
                  flush=True)
    shown = [os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT),
             *sys.argv[1:]]
    text = report(results, status, runs, shown, load_at_start, standby)
    out = text + kept_sections(Path(args.out))
    if standby is not None:
        section, heading = standby_section(
            standby, [*shown[:1], os.path.relpath(STANDBY, ROOT), *standby_args], standby_load)
        out = with_section(out, heading, section)
        text += "\n" + section
    Path(args.out).write_text(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
