"""The container's command decides its role (SPEC §15); only root's processes may say it."""

from __future__ import annotations

import os

from hermes_tasks import container

SERVICE_UID = 10000


def fake_proc(tmp_path, entries):
    """A /proc stand-in: ``{pid: (argv, uid)}``; a pid directory's owner is its euid."""
    for pid, (argv, uid) in entries.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        os.chown(d, uid, uid)
    return str(tmp_path)


V3_PID1 = (["s6-svscan", "-t0", "/run/service"], 0)


def test_v3_command_is_read_from_roots_rc_init(tmp_path):
    proc = fake_proc(tmp_path, {1: V3_PID1, 40: (
        ["/package/admin/s6-overlay/libexec/rc.init", "top",
         "/opt/hermes-tasks/main-wrapper.sh", "dashboard"], 0)})
    assert container.role(container.read_argv(proc)) == container.DASHBOARD


def test_a_service_user_process_naming_the_wrapper_is_not_the_command(tmp_path):
    # An agent with shell tools, as the service user: sh -c '… main-wrapper.sh dashboard'.
    proc = fake_proc(tmp_path, {1: V3_PID1, 30: (
        ["sh", "-c", "x", "/opt/hermes-tasks/main-wrapper.sh", "dashboard"], SERVICE_UID)})
    assert container.read_argv(proc) == tuple(V3_PID1[0])
    assert container.role(container.read_argv(proc)) == container.SUPERVISOR
