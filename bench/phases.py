"""Where one run of hermes-tasks spends its time and memory, phase by phase (issue 24).

Run with the project venv's python, from anywhere:

    .venv/bin/python bench/phases.py              # N=1000: fresh, re-run, cold; 5 runs
    .venv/bin/python bench/phases.py --n 100 --runs 2

Each measured run is the image's boot call (``hermes-tasks-boot``: its console script,
executed as it is) in a child process, on the bench's home (bench/bench.py's ``make_home``,
tmpfs), in the three situations of bench/bench.py: *fresh* (empty scandir, render cache
kept), *re-run* (unchanged scandir) and *cold* (empty scandir, only the render cache the
image's build primed). Nothing of the product is edited: before the run, the child wraps
functions of the product from the outside (found by ``module:qualname``, once their module
is imported) and times every
module import with an import hook. Time is charged to the innermost phase running
(exclusive), so the phases add up to the process:

* *interpreter start*: spawn until the child's first statement (parent's clock);
* *imports*: executing every module imported anywhere in the run (Jinja on a render cache miss
  too), whichever phase asked for it;
* the phases of :data:`PHASES`, each the functions it names;
* *other*: whatever of the run is in none of them (engine glue, the lock);
* *teardown*: the boot's exit call until the parent reaped the child.

A function that is not there (renamed by later work) is reported, and a phase with none
of its functions found prints ``n/a``; a function that exists but was not called counts 0.

Time comes from runs with nothing but the clock in the wrappers (median per phase over
``--runs``); memory from one more run per situation with the peak RSS (VmHWM) read at every
phase change (the high-water mark after each phase, and how much each phase raised it) and one
with ``tracemalloc`` (the peak of traced Python allocations during each phase, and what is
still allocated when the run ends): tracemalloc slows a run down and costs memory itself,
so neither of those runs is timed. The floor (bench/floor.py) of each situation is timed
alongside, its time split into the same phases (next to ours: what that phase cannot go
below; cold's floor is a fresh boot's). Prints Markdown tables for bench/PROFILE.md; writes nothing.
"""

from __future__ import annotations

import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
ENV_T0 = "HERMES_BENCH_PHASES_T0"  # the parent's clock just before the spawn
ENV_OUT = "HERMES_BENCH_PHASES_OUT"  # where the child writes its measurements
ENV_MODE = "HERMES_BENCH_PHASES_MODE"  # time | rss | tracemalloc
OTHER, IMPORTS, HARNESS = "other (engine glue, lock)", "imports", "harness (this script)"

# (phase, the functions charged to it, what it is). Names follow the public structure of
# engine.run; nested ones (read_profile_at inside discover) are charged to their own phase.
PHASES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("inventory", ("hermes_tasks.workdir:leave", "hermes_tasks.inventory:load",
                   "hermes_tasks.container:prepare_boot"),
     "settings from the inventory file and the environment; the boot's container checks"),
    ("preflight", ("hermes_tasks.preflight:check",), "the s6 tools and the scandir checked"),
    ("profile discovery", ("hermes_tasks.facts:gather", "hermes_tasks.facts:volume",
                           "hermes_tasks.profiles:discover", "hermes_tasks.facts:isolation",
                           "hermes_tasks.facts:multiplexing"),
     "list the profiles, open each, state file; facts.gather's own work"),
    ("ports", ("hermes_tasks.ports:read_profile_at", "hermes_tasks.facts:ports"),
     "each profile's .env / config.yaml read and parsed; allocation; collisions"),
    ("renders", ("hermes_tasks.render:Renderer.__init__", "hermes_tasks.render:Renderer.gateway",
                 "hermes_tasks.render:Renderer.registrar"),
     "every desired slot's files (from the render cache, or Jinja on a miss)"),
    ("reading slots/runtime", ("hermes_tasks.facts:scandir", "hermes_tasks.facts:read_slots",
                               "hermes_tasks.facts:owners"),
     "list the scandir; each slot's files (or their stats, through the slot cache) and "
     "supervise/status"),
    ("planning", ("hermes_tasks.engine:make_plan", "hermes_tasks.plan:scope",
                  "hermes_tasks.plan:build"),
     "the steps from facts and renders (make_plan's own work included)"),
    ("execute", ("hermes_tasks.execute.local:Applier.run",
                 "hermes_tasks.execute.local:Applier.apply"),
     "writes, renames, s6 calls (run-level changes except caches and the boot log)"),
    ("caches", ("hermes_tasks.rendercache:RenderCache.load",
                "hermes_tasks.slotcache:SlotCache.load", "hermes_tasks.rendercache:RenderCache.save",
                "hermes_tasks.slotcache:SlotCache.save"),
     "render cache and slot cache, loaded and saved"),
    ("boot log + report", ("hermes_tasks.execute.local:Applier._append_boot_log",
                           "hermes_tasks.engine:_result", "hermes_tasks.report:emit",
                           "hermes_tasks.metrics:publish"),
     "rows, the boot log line per slot, the printed report, metrics"),
)
ORDER = ("interpreter start", IMPORTS, *(p for p, _, _ in PHASES), OTHER, "teardown")


# -- the child: one run of the boot call, measured ---------------------------------------

class _Clock:
    """Exclusive time (and memory) per phase: a stack of the phases running."""

    def __init__(self, mode: str):
        self.mode = mode
        self.stack = [HARNESS]
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.peak: dict[str, int] = {}  # tracemalloc peak during the phase, bytes
        self.hwm: dict[str, int] = {}  # peak RSS (VmHWM) when the phase last ended, KiB
        self.grew: dict[str, int] = {}  # how much the phase raised it, KiB
        self.last = time.perf_counter()
        self.last_rss = 0
        if mode == "rss":
            self.last_rss = vm_hwm()
        elif mode == "tracemalloc":
            import tracemalloc

            self._tm = tracemalloc
        self.start_rss = self.last_rss

    def _switch(self) -> None:
        now = time.perf_counter()
        top = self.stack[-1]
        self.spent[top] = self.spent.get(top, 0.0) + now - self.last
        if self.mode == "rss":
            rss = vm_hwm()
            self.grew[top] = self.grew.get(top, 0) + rss - self.last_rss
            self.hwm[top] = rss
            self.last_rss = rss
        elif self.mode == "tracemalloc":
            peak = self._tm.get_traced_memory()[1]
            self.peak[top] = max(self.peak.get(top, 0), peak)
            self._tm.reset_peak()
        self.last = time.perf_counter()  # the bookkeeping itself is charged to no phase

    def enter(self, phase: str) -> None:
        self._switch()
        self.stack.append(phase)
        self.calls[phase] = self.calls.get(phase, 0) + 1

    def leave(self) -> None:
        self._switch()
        self.stack.pop()


def vm_hwm() -> int:
    """This process's peak RSS, KiB: VmHWM, the high-water mark of its own memory since exec.
    Not ``ru_maxrss``: Linux starts a child's at the RSS of the parent that spawned it."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def _timed(clock: _Clock, fn, phase: str):
    def wrapper(*args, **kwargs):
        clock.enter(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            clock.leave()

    wrapper.__wrapped__ = fn
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        try:
            setattr(wrapper, attr, getattr(fn, attr))
        except AttributeError:
            pass
    return wrapper


def _patch(clock: _Clock, module, qualname: str, phase: str) -> bool:
    """Wrap ``module.qualname`` (a function, or a method of a class in the module)."""
    *outer, name = qualname.split(".")
    owner = module
    for part in outer:
        owner = getattr(owner, part, None)
        if owner is None:
            return False
    raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if raw is None:
        return False
    if isinstance(raw, (classmethod, staticmethod)):
        setattr(owner, name, type(raw)(_timed(clock, raw.__func__, phase)))
    elif callable(raw):
        setattr(owner, name, _timed(clock, raw, phase))
    else:
        return False
    return True


class _ImportTimer:
    """A meta path finder that finds nothing itself: it times each module's execution
    (charged to ``imports``) and wraps the product's functions once their module is in."""

    def __init__(self, clock: _Clock, targets: dict[str, list[tuple[str, str]]]):
        self.clock = clock
        self.targets = targets  # module -> [(qualname, phase)]
        self.patched: dict[str, bool] = {}  # "module:qualname" -> found
        self.busy = False

    def find_spec(self, name, path, target=None):
        if self.busy:
            return None
        self.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.busy = False
        loader = spec.loader
        # Per-module loader objects (source, bytecode, extension) get a timed exec_module;
        # builtin and frozen modules (loaded by a class) are left alone: they cost ~nothing.
        if loader is not None and not isinstance(loader, type) and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module, run=run, name=name):
                self.clock.enter(IMPORTS)
                try:
                    run(module)
                finally:
                    self.clock.leave()
                self.wrap(name, module)

            try:
                loader.exec_module = exec_module
            except AttributeError:
                pass
        return spec

    def wrap(self, name: str, module) -> None:
        for qualname, phase in self.targets.get(name, ()):
            self.patched[f"{name}:{qualname}"] = _patch(self.clock, module, qualname, phase)


def _found(target: str, patched: dict[str, bool]) -> bool | None:
    """Whether ``module:qualname`` exists (None: its module exists but was never imported
    by the run, so the function was not called)."""
    if target in patched:
        return patched[target]
    import importlib

    module_name, qualname = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    owner = module
    for part in qualname.split("."):
        owner = getattr(owner, part, None)
        if owner is None:
            return False
    return None


def child(t_first: float) -> None:
    """The measured process: wrap, then run the boot's console script as it is."""
    t_harness = time.monotonic()
    mode = os.environ.pop(ENV_MODE, "time")
    t_spawn = float(os.environ.pop(ENV_T0))
    out = os.environ.pop(ENV_OUT)
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start(1)
    clock = _Clock(mode)
    targets: dict[str, list[tuple[str, str]]] = {}
    for phase, names, _ in PHASES:
        for target in names:
            module, qualname = target.split(":")
            targets.setdefault(module, []).append((qualname, phase))
    timer = _ImportTimer(clock, targets)
    sys.meta_path.insert(0, timer)
    for name in list(targets):
        if name in sys.modules:
            timer.wrap(name, sys.modules[name])
    real_exit = os._exit
    script = os.path.join(os.path.dirname(sys.executable), "hermes-tasks-boot")
    with open(script, encoding="utf-8") as fh:
        code = compile(fh.read(), script, "exec")
    # As the console script runs: its argv, its directory first on the path, not bench/.
    sys.argv = [script]
    sys.path[:] = [os.path.dirname(script)] + [p for p in sys.path if p not in (BENCH, "")]
    harness_s = time.monotonic() - t_harness

    def finish(status) -> None:
        clock.leave()  # out of OTHER: everything is charged
        t_end = time.monotonic()
        sys.meta_path.remove(timer)
        import json

        doc = {"mode": mode, "start": t_first - t_spawn, "harness": harness_s,
               "spent": clock.spent, "calls": clock.calls, "hwm": clock.hwm, "grew": clock.grew,
               "peak": clock.peak, "status": status,
               "found": {t: _found(t, timer.patched) for _, names, _ in PHASES for t in names}}
        if mode == "tracemalloc":
            doc["end_traced"] = clock._tm.get_traced_memory()[0]
        doc["vmhwm"] = vm_hwm()
        doc["start_rss"] = clock.start_rss
        doc["dump"] = time.monotonic() - t_end
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        doc_written = time.monotonic()
        with open(out + ".end", "w", encoding="utf-8") as fh:
            fh.write(repr(doc_written))

    def exit_(status):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        finish(status)
        real_exit(status)

    os._exit = exit_
    clock.stack = [OTHER]  # the run itself: anything not in a phase is glue
    clock.last = time.perf_counter()
    try:
        exec(code, {"__name__": "__main__", "__file__": script})
    except SystemExit as exc:  # a boot that returns instead of calling os._exit
        code_ = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        exit_(code_)
    exit_(0)


# -- the parent ------------------------------------------------------------------------------

CHILD = ("import time; t = time.monotonic(); import sys; sys.path.insert(0, {bench!r}); "
         "import phases; phases.child(t)")


def run_child(argv_env, mode: str, work) -> dict:
    """One measured run; its document, with the parent's view (total, teardown) added."""
    import json
    import subprocess

    _, env = argv_env
    out = os.path.join(work, "phases.json")
    env = {**env, ENV_MODE: mode, ENV_OUT: out}
    argv = [sys.executable, "-c", CHILD.format(bench=BENCH)]
    t0 = time.monotonic()
    env[ENV_T0] = repr(t0)
    proc = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    reaped = time.monotonic()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    try:
        with open(out, encoding="utf-8") as fh:
            doc = json.load(fh)
        with open(out + ".end", encoding="utf-8") as fh:
            written = float(fh.read())
    except (OSError, ValueError):
        raise RuntimeError(f"the measured run exited {code} without its measurements:\n"
                           f"{err[-2000:]}") from None
    if code != 0:
        raise RuntimeError(f"the measured run exited {code}:\n{err[-2000:]}")
    doc["total"] = reaped - t0
    doc["teardown"] = reaped - written
    doc["maxrss"] = usage.ru_maxrss
    doc["cpu"] = usage.ru_utime + usage.ru_stime
    return doc


def situations(bench, work, n: int):
    """(name, home, scandir, prepare) of fresh, re-run and cold; prepare() before each run."""
    import shutil
    from pathlib import Path

    cmd = bench.command_dir(Path(work) / "command")
    out = []
    for name in ("fresh", "re-run", "cold"):
        base = Path(work) / name
        home, scandir = base / "home", base / "scan"
        bench.make_home(home, n)
        scandir.mkdir(parents=True)
        argv_env = bench.ours_argv(home, scandir, cmd)
        # cold: a new container of the image, whose render cache holds what its build primed
        # (its child runs the boot under this interpreter: the registrar's run names it)
        keep = bench.primed(argv_env, scandir, sys.executable) if name == "cold" else None

        def prepare(name=name, scandir=scandir, keep=keep):
            if name != "re-run":
                shutil.rmtree(scandir)
                scandir.mkdir()
            if keep is not None:
                bench.restore_primed(keep)

        out.append((name, home, scandir, argv_env, prepare))
    return out


def floor_case(bench, work, n: int, name: str):
    """bench/floor.py for a situation (cold: a fresh boot's floor): (argv, prepare)."""
    import shutil
    from pathlib import Path

    base = Path(work) / f"floor-{name}"
    home, scandir = base / "home", base / "scan"
    bench.make_home(home, n)
    scandir.mkdir(parents=True)
    if name == "re-run":  # over the slots a fresh floor publishes (our shape)
        bench.timed(bench.floor_argv(home, scandir), bench.base_env())
        return bench.floor_argv(home, scandir, "rerun"), lambda: None

    def prepare():
        shutil.rmtree(scandir)
        scandir.mkdir()

    return bench.floor_argv(home, scandir), prepare


def run_floor(argv: list[str], bench, work) -> dict:
    """One timed floor run; its phases (bench/floor.py writes them), total and teardown."""
    import json
    import subprocess

    out = os.path.join(work, "floor-phases.json")
    t0 = time.monotonic()
    env = bench.base_env(HERMES_BENCH_FLOOR_PHASES=out, **{ENV_T0: repr(t0)})
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, _ = os.wait4(proc.pid, 0)
    reaped = time.monotonic()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{err[-2000:]}")
    with open(out, encoding="utf-8") as fh:
        doc = json.load(fh)
    with open(out + ".end", encoding="utf-8") as fh:
        doc["teardown"] = reaped - float(fh.read())
    doc["total"] = reaped - t0
    return doc


def fmt_ms(values: list[float] | None) -> str:
    import statistics

    return "n/a" if values is None else f"{statistics.median(values) * 1000:.1f}"


def report(n: int, runs: int, docs: dict, floors: dict, argv: list[str]) -> str:
    import datetime

    names = list(docs)
    found = docs[names[0]]["time"][0]["found"]
    missing = sorted(t for t, ok in found.items() if ok is False)
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [f"### Per phase, N={n} (bench/phases.py)", "",
             f"Produced by `{' '.join(argv)}` on {now}; {os.cpu_count()} CPUs, load average "
             f"(1 min) {os.getloadavg()[0]:.2f}, uid {os.geteuid()}. Wall ms per phase, "
             f"exclusive (a phase's inner phases are charged to them), medians of {runs} runs; "
             "the phases add up to the process (spawn to reap). `n/a`: none of the phase's "
             "functions exists in this tree. *floor*: bench/floor.py's run of the same "
             "situation split the same way (cold: a fresh boot's floor; `-`: the floor has "
             "no such phase).", "",
             "| phase | " + " | ".join(f"{s} ms | floor" for s in names) + " | what it is |",
             "|---|" + "---:|---:|" * len(names) + "---|"]
    what = {p: w for p, _, w in PHASES}
    what.update({"interpreter start": "spawn to the first statement (python, site, venv)",
                 IMPORTS: "every module executed, wherever imported (Jinja on a render cache miss)",
                 OTHER: "in no phase above: engine.run's glue, the lock, the boot's body",
                 "teardown": "from the exit call until the parent reaped the process"})
    absent = {p for p, targets, _ in PHASES if all(found[t] is False for t in targets)}

    def phase_values(doc: dict, phase: str) -> float | None:
        if phase in absent:
            return None
        if phase == "interpreter start":
            return doc["start"]
        if phase == "teardown":
            return doc["teardown"]
        return doc["spent"].get(phase, 0.0)

    def floor_values(s: str, phase: str) -> str:
        runs_ = floors.get(s) or []
        if not runs_:
            return "-"
        if phase in ("interpreter start", "teardown"):
            return fmt_ms([d["start" if phase == "interpreter start" else phase] for d in runs_])
        if all(phase not in d["spent"] for d in runs_):
            return "-"
        return fmt_ms([d["spent"].get(phase, 0.0) for d in runs_])

    for phase in ORDER:
        cells = []
        for s in names:
            vals = [phase_values(d, phase) for d in docs[s]["time"]]
            cells += [fmt_ms(None if vals[0] is None else vals), floor_values(s, phase)]
        lines.append(f"| {phase} | " + " | ".join(cells) + f" | {what[phase]} |")
    sums = " | ".join(f"**{fmt_ms([d['total'] for d in docs[s]['time']])}** "
                      f"| **{fmt_ms([d['total'] for d in floors.get(s, [])] or None)}**"
                      for s in names)
    lines.append(f"| **process (spawn to reap)** | {sums} | the phases above, and the wrappers' "
                 "own cost |")
    lines.append("| harness | " + " | ".join(
        fmt_ms([d["harness"] + d["dump"] for d in docs[s]["time"]]) + " | -" for s in names)
        + " | this script's own start and dump, in the process but in no phase |")
    lines.append("| CPU (user + sys) | " + " | ".join(
        fmt_ms([d["cpu"] for d in docs[s]["time"]]) + " | -" for s in names)
        + " | from `wait4` |")
    lines += ["", ("Memory, one run per situation each way: *traced peak* is the peak of Python "
                   "allocations (tracemalloc) while the phase ran, MiB; *maxrss* is the process's "
                   "peak RSS (VmHWM, as `ru_maxrss` would be without the parent's share) when "
                   "the phase last ended and, in brackets, how much the phase raised it, MiB; "
                   "`-`: the phase did not run."), "",
              "| phase | " + " | ".join(f"{s} traced peak | {s} maxrss (+raised)" for s in names)
              + " |", "|---|" + "---:|---:|" * len(names)]
    lines.append("| interpreter start (and this script) | " + " | ".join(
        f"- | {docs[s]['rss']['start_rss'] / 1024:.1f}" for s in names) + " |")
    for phase in ORDER:
        if phase in ("interpreter start", "teardown"):
            continue
        cells = []
        for s in names:
            tm, rss = docs[s]["tracemalloc"], docs[s]["rss"]
            if phase in absent:
                cells += ["n/a", "n/a"]
                continue
            peak = tm["peak"].get(phase)
            cells.append("-" if peak is None else f"{peak / 2**20:.1f}")
            hwm = rss["hwm"].get(phase)
            cells.append("-" if hwm is None else
                         f"{hwm / 1024:.1f} (+{rss['grew'].get(phase, 0) / 1024:.1f})")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **process** | " + " | ".join(
        f"{docs[s]['tracemalloc']['end_traced'] / 2**20:.1f} at the end "
        f"| **{docs[s]['rss']['vmhwm'] / 1024:.1f}** (VmHWM at exit)" for s in names) + " |")
    if missing:
        lines += ["", "Not in this tree (renamed or removed; their time is in the phase that "
                  "called them): " + ", ".join(f"`{t}`" for t in missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import importlib.util
    import shutil
    import statistics
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="profiles (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per situation (5)")
    parser.add_argument("--only", help="comma-separated situations: fresh,re-run,cold")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("hermes_bench", os.path.join(BENCH, "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses resolve annotations through it
    spec.loader.exec_module(bench)
    bench.compile_ours()
    work = tempfile.mkdtemp(prefix="hermes-phases-", dir=str(bench.TMPFS))
    try:
        cases = situations(bench, work, args.n)
        if args.only:
            wanted = args.only.split(",")
            cases = [c for c in cases if c[0] in wanted]
        floors = {name: floor_case(bench, work, args.n, name) for name, *_ in cases}
        docs: dict[str, dict] = {name: {"time": []} for name, *_ in cases}
        floor_runs: dict[str, list[dict]] = {name: [] for name, *_ in cases}
        for _name, _, _, argv_env, prepare in cases:  # warm-up: seeds re-run and render cache
            prepare()
            run_child(argv_env, "time", work)
        for r in range(args.runs):
            k = r % len(cases)
            for name, _, _, argv_env, prepare in cases[k:] + cases[:k]:
                prepare()
                docs[name]["time"].append(run_child(argv_env, "time", work))
                f_argv, f_prepare = floors[name]
                f_prepare()
                floor_runs[name].append(run_floor(f_argv, bench, work))
            print(f"round {r + 1}: " + ", ".join(
                f"{s} {statistics.median([d['total'] for d in v['time']]) * 1000:.0f} ms"
                for s, v in docs.items()), file=sys.stderr, flush=True)
        for mode in ("rss", "tracemalloc"):
            for name, _, _, argv_env, prepare in cases:
                prepare()
                docs[name][mode] = run_child(argv_env, mode, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shown = [os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT),
             *(sys.argv[1:] if argv is None else argv)]
    print(report(args.n, args.runs, docs, floor_runs, shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
