"""svstatus.read against s6-svstat on live slots in every state it distinguishes (real s6)."""

from __future__ import annotations

import subprocess

import s6env

from hermes_tasks import svstatus

FIELDS = ("up", "wantedup", "normallyup", "ready", "pid", "exitcode", "signal")


def _compare(slot):
    st = svstatus.read(str(slot))
    ref = s6env.svstat(slot, FIELDS)
    assert st.supervised is True
    assert (st.up, st.wanted_up, st.normally_up, st.ready) == (
        ref["up"], ref["wantedup"], ref["normallyup"], ref["ready"]), (st, ref)
    assert st.pid == (ref["pid"] if ref["pid"] > 0 else None)
    if not ref["up"]:
        assert st.exit_code == (ref["exitcode"] if ref["exitcode"] >= 0 else None)
        assert st.signal == (None if ref["signal"] == "NA" else ref["signal"])
    return st


def test_record_matches_s6_svstat_in_each_state(sandbox):
    sb = sandbox
    with s6env.Supervisor(sb) as sup:
        sleeper = s6env.publish_test_slot(sb.scandir, "sleeper", "#!/bin/sh\nexec sleep 600\n")
        exit78 = s6env.publish_test_slot(
            sb.scandir, "exit78", "#!/bin/sh\nexit 78\n")
        (exit78 / "finish").write_text("#!/bin/sh\nexit 125\n")
        (exit78 / "finish").chmod(0o755)
        ready = s6env.publish_test_slot(
            sb.scandir, "ready", "#!/bin/sh\necho >&3\nexec sleep 600\n")
        (ready / "notification-fd").write_text("3\n")
        downed = s6env.publish_test_slot(sb.scandir, "downed", "#!/bin/sh\nexec sleep 600\n",
                                         down=True)
        sup.rescan()
        s6env.wait_up(sleeper)
        s6env.wait_for(lambda: s6env.svstat(ready, ("ready",))["ready"], 5, what="ready")
        s6env.wait_status_file(exit78)
        s6env.wait_for(lambda: not s6env.svstat(exit78, ("wantedup",))["wantedup"], 5,
                       what="exit78 kept down")
        s6env.wait_status_file(downed)
        st = _compare(sleeper)
        assert st.running and st.pid > 0 and not st.ready
        assert _compare(ready).ready
        st = _compare(exit78)
        assert st.exit_code == 78 and not st.up and not st.wanted_up
        assert not _compare(downed).normally_up
        subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-wd", "-d", str(sleeper)], check=True)
        st = _compare(sleeper)
        assert st.signal == "SIGTERM" and not st.wanted_up
    # The supervisor is gone: the record stays but is no longer a fact.
    st = svstatus.read(str(sleeper))
    assert st.supervised is False and not st.running


def test_missing_slot_record_reads_unsupervised(tmp_path):
    (tmp_path / "supervise").mkdir()
    st = svstatus.read(str(tmp_path))
    assert st.supervised is False and not st.up and st.pid is None
