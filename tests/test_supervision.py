"""supervision.down when another task replaces the slot meanwhile (no s6 needed: a fake s6)."""

from __future__ import annotations

import os
import struct
import time

from hermes_tasks import supervision, svstatus

TAI = svstatus.TAI_OFFSET


def up_slot(path, pid=None) -> None:
    """A slot directory whose supervise/status says up (``pid``, default this process)."""
    (path / "supervise").mkdir(parents=True, exist_ok=True)
    record = struct.pack(">QLQLQHB", int(time.time()) + TAI, 0, 0, 0, pid or os.getpid(), 0,
                         svstatus._FLAG_WANT_UP)
    (path / "supervise" / "status").write_bytes(record)


class ReplacingS6:
    """Told to bring the slot down, another task retires it and publishes a new one, up."""

    def __init__(self):
        self.calls = []

    def svc(self, path, flag, **_):
        self.calls.append((os.path.basename(path), flag))
        if flag in ("-d", "-D"):
            os.rename(path, path + ".old")
            up_slot(type(self).root / os.path.basename(path))


def test_a_slot_replaced_meanwhile_is_neither_waited_for_nor_killed(tmp_path):
    slot = tmp_path / "gateway-c3"
    up_slot(slot)
    ReplacingS6.root = tmp_path
    s6 = ReplacingS6()
    t = time.monotonic()
    assert supervision.down(s6, [str(slot)], "-D", timeout=2) == {}
    assert time.monotonic() - t < 1.5
    assert s6.calls == [("gateway-c3", "-D")]  # no -k for the new gateway


def test_a_slot_that_stays_up_still_fails_after_the_kill(tmp_path):
    slot = tmp_path / "gateway-c3"
    up_slot(slot)

    class Deaf:
        calls = []

        def svc(self, path, flag, **_):
            self.calls.append(flag)

    s6 = Deaf()
    errors = supervision.down(s6, [str(slot)], "-d", timeout=0.2)
    assert s6.calls == ["-d", "-k"] and "still up" in errors[str(slot)]


def test_a_gateway_started_again_by_another_task_counts_as_stopped(tmp_path):
    """The process told to stop is gone; the new one (another task's start) is not ours."""
    slot = tmp_path / "gateway-p2"
    up_slot(slot, pid=os.getpid())

    class Restarted:
        calls = []

        def svc(self, path, flag, **_):
            self.calls.append(flag)
            if flag == "-d":
                up_slot(slot, pid=os.getppid())

    s6 = Restarted()
    assert supervision.down(s6, [str(slot)], "-d", timeout=2) == {}
    assert s6.calls == ["-d"]


def test_wait_until_asks_once_more_at_the_deadline_and_never_sleeps_past_it():
    calls = []
    assert supervision.wait_until(lambda: calls.append(1) or True, 0) and len(calls) == 1
    calls.clear()
    started = time.monotonic()
    assert not supervision.wait_until(lambda: calls.append(1), 0.1, 0.03)
    took = time.monotonic() - started
    assert 0.1 <= took < 0.5 and len(calls) >= 3  # first, in between, at the deadline
    left = iter([False, False, True])
    assert supervision.wait_until(lambda: next(left), 5, 0.001)
    assert supervision.wait_all([1, 2, 3], lambda i: i != 2, 0.05, 0.01) == [2]


def test_one_wording_of_how_a_gateway_failed():
    """The rows' wording ("exited 78: reason"); --wait and gateway.status add to it."""
    assert supervision.failure(78, None, "Port 8642 already in use") == \
        "exited 78: Port 8642 already in use"
    assert supervision.failure(None, "SIGKILL") == "killed by SIGKILL"
    assert supervision.failure(1, None, "boom", "/h/logs/gateways/a/current",
                               "exited 2 times since it was started", ("x", "y")) == (
        "exited 2 times since it was started; exited 1: boom "
        "(see /h/logs/gateways/a/current); last log lines: x | y")
    # a phrase that already says how it ended is not repeated; one that only looks alike is
    assert supervision.failure(0, None, None, None, "exited 0") == "exited 0"
    assert supervision.failure(2, None, None, None, "exited 2 times since it was started") \
        == "exited 2 times since it was started; exited 2"
    assert supervision.failure(None, None, what="crash loop: 5 exits in 60 s, last exit 1",
                               tail=("a",)) == \
        "crash loop: 5 exits in 60 s, last exit 1; last log lines: a"
