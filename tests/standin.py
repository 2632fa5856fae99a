"""Read what tests/bin/fake-gateway recorded in ``$HERMES_HOME/.standin/<profile>.jsonl``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def events_path(home: str | os.PathLike, profile: str = "default") -> Path:
    return Path(home) / ".standin" / f"{profile}.jsonl"


LIFECYCLE = ("start", "stop", "exit")


def events(home: str | os.PathLike, profile: str = "default",
           kinds: tuple[str, ...] = LIFECYCLE) -> list[dict]:
    """Recorded events of a profile, oldest first ([] if none; a torn last line is skipped).

    By default the lifecycle (start, stop, exit); pass ``kinds`` to see others too, such as
    "running" (when it wrote ``running`` into gateway_state.json).
    """
    try:
        lines = events_path(home, profile).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in kinds:
            out.append(event)
    return out


def running_at(home: str | os.PathLike, profile: str, pid: int) -> float | None:
    """When instance ``pid`` wrote ``running`` into its state file (None: not yet).

    The latest such record: pids are reused over long runs.
    """
    found = None
    for e in events(home, profile, ("running",)):
        if e["pid"] == pid:
            found = e["t"]
    return found


def starts(home: str | os.PathLike, profile: str = "default") -> list[dict]:
    """The "start" events of a profile, oldest first."""
    return [e for e in events(home, profile) if e["event"] == "start"]


def is_alive(pid: int, start: dict | None = None) -> bool:
    """True if ``pid`` is a live (non-zombie) fake-gateway process.

    With ``start`` (its recorded "start" event) the process must also be that instance:
    same gateway argv and HERMES_HOME. PIDs wrap around (pid_max is often 32768) during
    long test runs, and a recorded PID may by then belong to another profile's gateway.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2] in "ZX" or b"fake-gateway" not in cmdline:
        return False
    if start is None:
        return True
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    if argv[len(argv) - len(start["argv"]):] != start["argv"]:
        return False
    home = start.get("env", {}).get("HERMES_HOME")
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return True  # not ours to read: argv had to do
    return home is None or f"HERMES_HOME={home}".encode() in environ


def live_pids(home: str | os.PathLike, profile: str = "default") -> list[int]:
    """PIDs of recorded instances of a profile that are still running."""
    return sorted({e["pid"] for e in starts(home, profile) if is_alive(e["pid"], e)})


def write_behaviour(home: str | os.PathLike, **conf) -> None:
    """Write ``.standin/behaviour.json`` (knobs: see tests/bin/fake-gateway; ``profiles``)."""
    directory = Path(home) / ".standin"
    directory.mkdir(exist_ok=True)
    os.chmod(directory, 0o777)
    (directory / "behaviour.json").write_text(json.dumps(conf))


def assert_never_overlapping(evts: list[dict]) -> None:
    """Assert that no two instances (of one profile's events) were ever alive at once.

    An instance lives from its "start" to its "stop"/"exit" record; one without such a record
    lives forever if its PID is still alive, and otherwise (e.g. SIGKILLed) is assumed to have
    ended before the next start, since its end time is unknown.
    """
    spans: dict[int, list[float]] = {}
    start_of: dict[int, dict] = {}
    for e in evts:
        if e["event"] == "start":
            spans[e["pid"]] = [e["t"], math.nan]
            start_of[e["pid"]] = e
        elif e["event"] in ("stop", "exit") and e["pid"] in spans:
            spans[e["pid"]][1] = e["t"]
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    for pid, (_, end) in ordered:
        if math.isnan(end) and is_alive(pid, start_of[pid]):
            spans[pid][1] = math.inf
    alive_now = [pid for pid, (_, end) in ordered if end == math.inf]
    assert len(alive_now) <= 1, f"instances alive at the same time: {alive_now}"
    for (pid_a, (_, end_a)), (pid_b, (start_b, _)) in zip(ordered, ordered[1:]):
        assert math.isnan(end_a) or end_a <= start_b, (
            f"pid {pid_b} started at {start_b:.6f} while pid {pid_a} was still running "
            f"(it stopped at {end_a:.6f})")
