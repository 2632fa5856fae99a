"""The owner record's 'since' is the UTC time own.j2 writes, checked without strptime."""

import subprocess
import sys

import pytest

from hermes_tasks import ownership

GOOD = {"host_id": "host-a", "pid": 42}


@pytest.mark.parametrize("since", ["2026-12-07T22:57:50Z", "2024-02-29T23:59:59Z",
                                   "1970-01-01T00:00:00Z"])
def test_what_own_writes_is_believed(since):
    assert ownership._invalid({**GOOD, "since": since}) is None


@pytest.mark.parametrize("since", [
    "2026-02-30T00:00:00Z", "2026-12-07T24:00:00Z", "2026-13-07T22:57:50Z",
    "2026-1-5T1:2:3Z", "2026-12-07 22:57:50Z", "2026-12-07T22:57:50", "+026-12-07T22:57:50Z",
    "２０２６-12-07T22:57:50Z", "2026-12-07T22:57:50Z\n", "", None, 5, ["2026"]])
def test_anything_else_is_not(since):
    assert ownership._invalid({**GOOD, "since": since}) == "holds a 'since' that is not a UTC time"


def test_checking_a_record_imports_no_strptime():
    code = ("import sys; from hermes_tasks import ownership; "
            "ownership._invalid({'host_id': 'a', 'pid': 1, 'since': '2026-12-07T22:57:50Z'}); "
            "print('_strptime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
