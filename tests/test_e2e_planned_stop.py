"""hermes's planned-stop marker with the REAL gateway (hermes-agent 0.19.0, SPEC §15).

``gateway.stop`` writes ``.gateway-planned-stop.json`` in the profile's home (as the service
user) before s6 is told: the real gateway then exits 0 (``s6-svstat`` shows it) and records
``gateway_state: stopped``. A SIGTERM without the marker (a container stop) still leaves
``running`` on disk, so the next boot brings the gateway back.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import s6env
from control_helpers import make_profile, own
from test_e2e_hermes import hermes_bin, run, state_dir, wait_running  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e


def gateway_doc(sb, name):
    return json.loads((state_dir(sb, name) / "gateway_state.json").read_text())


def settled(sb, name, want):
    """The slot is down and the gateway's own file says ``want`` (its last write)."""
    def check():
        st = s6env.svstat(sb.slot(name), ("up", "exitcode"))
        if st["up"]:
            return None
        try:
            doc = gateway_doc(sb, name)
        except (OSError, ValueError):
            return None
        return st if doc.get("gateway_state") == want else None
    return s6env.wait_for(check, 60, interval=0.1, what=f"{name} down with {want} on disk")


@pytest.mark.parametrize("name,user", [("default", False), ("alice", True)])
def test_stop_is_planned_and_a_bare_sigterm_is_not(root_sandbox, hermes_bin, name, user):  # noqa: F811
    sb = root_sandbox
    make_profile(sb.home, "default", {"desired_state": "running" if name == "default"
                                      else "stopped"})
    if name != "default":
        make_profile(sb.home, name, {"desired_state": "running"})
    own(sb, sb.home)
    caller = sb.user if user else None
    with s6env.Supervisor(sb) as sup:
        run(sb, hermes_bin, "reconcile")
        pid = wait_running(sb, hermes_bin, name)
        # a deliberate stop (as root for default, as the service user for alice)
        run(sb, hermes_bin, "gateway.stop", "-p", name, "--wait", user=caller)
        st = settled(sb, name, "stopped")
        assert st["exitcode"] == 0, st  # hermes saw the marker: a clean, planned exit
        doc = gateway_doc(sb, name)
        assert doc["desired_state"] == "stopped"
        assert not (state_dir(sb, name) / ".gateway-planned-stop.json").exists()  # consumed
        assert not os.path.exists(f"/proc/{pid}")

        # started again, then a SIGTERM nobody announced (what a container stop sends)
        run(sb, hermes_bin, "gateway.start", "-p", name, "--wait", user=caller)
        pid = wait_running(sb, hermes_bin, name)
        subprocess.run([str(sb.cmd_dir / "s6-svc"), "-d", str(sb.slot(name))], check=True)
        st = settled(sb, name, "running")
        assert st["exitcode"] != 0, st  # unplanned: s6 would restart it
        assert gateway_doc(sb, name)["gateway_state"] == "running"  # the next boot starts it
        sup.stop()
