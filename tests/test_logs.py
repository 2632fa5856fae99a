"""hermes_tasks.logs: a gateway log read as hostile input (bounded tail, no links, no FIFOs)."""

from __future__ import annotations

import os
import time

import pytest

from hermes_tasks import logs

PARTS = ("logs", "gateways", "alice")


@pytest.fixture
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("home")
    (h / "logs" / "gateways" / "alice").mkdir(parents=True)
    return h


def current(home):
    return home / "logs" / "gateways" / "alice" / "current"


def test_tail_of_a_huge_file_reads_only_its_end(home):
    with open(current(home), "wb") as fh:
        fh.truncate(8 << 30)  # 8 GiB, sparse: reading it whole would never finish
        fh.seek(0, 2)
        fh.write(b"\n2026-12-07 00:00:01.000000000  last one\n")
    start = time.monotonic()
    got = logs.tail(str(home), PARTS, 1)
    assert got == ["2026-12-07 00:00:01.000000000  last one"]
    assert time.monotonic() - start < 5


def test_a_line_longer_than_the_window_is_cut_and_escaped(home):
    current(home).write_bytes(b"\x1b[31m" + b"x" * (5 << 20) + b"\n")
    [line] = logs.tail(str(home), PARTS, 3)
    assert "\x1b" not in line and len(line) <= logs.LINE_LIMIT


def test_fifo_and_symlink_and_linked_directory_are_refused(home, tmp_path_factory):
    os.mkfifo(current(home))
    assert logs.tail(str(home), PARTS, 3) == []  # no hang on a planted FIFO
    os.unlink(current(home))
    secret = tmp_path_factory.mktemp("secret") / "s"
    secret.write_text("secret line\n")
    os.symlink(secret, current(home))
    assert logs.tail(str(home), PARTS, 3) == []
    os.unlink(current(home))
    d = home / "logs" / "gateways" / "alice"
    os.rmdir(d)
    os.symlink(secret.parent, d)  # the directory itself a link
    secret.rename(secret.parent / "current")
    assert logs.tail(str(home), PARTS, 3) == []


def test_tai64n_labels_become_utc_and_other_lines_stay(home):
    label = f"@{(1 << 62) + 37 + 1796601600:016x}{500000000:08x}"
    current(home).write_text(f"{label} from t\nplain line\n")
    assert logs.tail(str(home), PARTS, 5) == [
        "2026-12-07 00:00:00.500000 from t", "plain line"]
    assert logs.tail(str(home), PARTS, 0) == []
    assert logs.tail(str(home), ("logs", "gateways", "nobody"), 5) == []


def test_a_held_gateways_log_tail_never_goes_through_a_planted_link(home, tmp_path_factory):
    """The crash-loop row quotes the log (SPEC §14.6) through no-follow directories: a link
    at logs/gateways/<name> to a root directory holding a `current` yields no lines."""
    from hermes_tasks import crashloop, svstatus
    from hermes_tasks.facts import runtime

    secret = tmp_path_factory.mktemp("rootonly")
    (secret / "current").write_text("root's secret line\n")
    gateways = home / "logs" / "gateways"
    gateways.mkdir(parents=True, exist_ok=True)
    (gateways / "p").symlink_to(secret)
    rt = runtime.Runtime(svstatus.Status(supervised=True),
                         hold=crashloop.Hold(5, 60, 1, None, time.time()))
    held = runtime.with_log_tail(rt, str(home), logs.directory("p", "h", False))
    assert held.log_tail == ()
    (gateways / "p").unlink()
    (gateways / "p").mkdir()
    (gateways / "p" / "current").write_text("line one\nline two\n")
    held = runtime.with_log_tail(rt, str(home), logs.directory("p", "h", False))
    assert held.log_tail == ("line one", "line two")
