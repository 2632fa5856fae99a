"""Hostile and broken input at the CLI (issue 6.3): a clear outcome, never a traceback.

Every case runs the real ``python -m hermes_tasks`` and checks the exit code, that stderr is
only ``hermes-tasks: warning|error: …`` lines (an error is exactly one line), that nothing is
lost (the profile data is byte-identical before and after) and that the rest still works.
Unit-level parsing is covered by tests/test_profiles.py and tests/test_inventory.py; this
is the user-visible outcome of the same inputs.
"""

from __future__ import annotations

import json
import os

import pytest
import reliability_kit as kit
import reliability_report
import s6env

CASES = {}


def case(case_id: str, text: str) -> str:
    CASES[case_id] = text
    return case_id


def stderr_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


def assert_clean(res, code: int, *, errors: int | None = None) -> list[str]:
    """Exit ``code``, no traceback, stderr only our one-line warnings/errors."""
    lines = stderr_lines(res)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    for line in lines:
        assert line.startswith(("hermes-tasks: warning: ", "hermes-tasks: error: ")), line
    if errors is not None:
        assert sum(line.startswith("hermes-tasks: error: ") for line in lines) == errors
    if code == 1 and errors:
        assert len(lines) == 1, lines  # an error is one line saying what and what to do
    return lines


def reconcile_json(sb, *args, user=None):
    res = s6env.run_tasks(sb, "reconcile", "--json", *args, user=user)
    doc = json.loads(res.stdout) if res.stdout.strip() else None
    return res, doc


def boot_log(sb) -> list[str]:
    path = sb.home / "logs" / "container-boot.log"
    return path.read_text().splitlines() if path.exists() else []


# Cases checked by single tests below (the parametrized ones are declared with them).
case("input.state.unreadable",
     "gateway_state.json mode 000, reconcile as the service user (root could read it)")
case("input.soul.directory", "SOUL.md that is a directory")
case("input.soul.dangling", "SOUL.md that is a dangling link")
case("input.scandir.missing",
     "scandir missing: reconcile, gateway.status/start, slot.list, profile.create")
case("input.scandir.file", "scandir path is a regular file")
case("input.scandir.read_only", "scandir on a read-only tmpfs")
case("input.scandir.full", "scandir on a 64 KiB tmpfs that fills up mid-run")
case("input.scandir.foreign_and_stale",
     "foreign slots, files and dot-entries plus stale staging/retired dirs in the scandir")
case("input.volume.logs_not_dir", "`logs` is a file; then container-boot.log is a directory")
case("input.volume.home_missing", "hermes_home does not exist")
case("input.runtime_files.kinds",
     "stale gateway.pid/processes.json as symlink to a file outside, directory, FIFO, file")
case("input.state.control_chars",
     "desired_state holding a newline, a forged field and an ANSI escape")


# --------------------------------------------------------------------------- profile names

BAD_NAMES = {
    case("input.name.255_bytes", "profile directory named with 255 bytes"): "x" * 255,
    case("input.name.non_utf8", "profile directory name that is not UTF-8 (caf\\xe9)"):
        os.fsdecode(b"caf\xe9"),
    case("input.name.spaces", "profile directory name with spaces"): "my profile",
    case("input.name.shell", "profile directory name full of shell metacharacters"):
        "$(touch MARK);`id`|&>x'\"",
    case("input.name.newline", "profile directory name with a newline forging a boot-log "
                               "line"): "a\nprior_state=running action=started",
    case("input.name.dots", "profile directory names `..x` and `...`"): "..x",
    case("input.name.dash", "profile directory named `-rf`"): "-rf",
    case("input.name.uppercase", "profile directory with uppercase letters"): "Alice",
    case("input.name.default", "`profiles/default` colliding with the root slot"): "default",
}


@pytest.mark.parametrize("case_id", list(BAD_NAMES))
def test_invalid_profile_dir_names_are_skipped_one_line_each(root_sandbox, case_id):
    sb = root_sandbox
    name = BAD_NAMES[case_id]
    kit.write_profile(sb.home, "alice", {"desired_state": "stopped"}, user=sb.user)
    bad = sb.home / "profiles" / name
    bad.mkdir()
    (bad / "SOUL.md").write_text("hostile but someone's data\n")
    (bad / "gateway_state.json").write_text('{"desired_state": "running"}')
    if case_id == "input.name.dots":
        (sb.home / "profiles" / "...").mkdir()
        (sb.home / "profiles" / "..." / "SOUL.md").write_text("x")
    before = kit.snapshot(sb.home)
    res, doc = reconcile_json(sb)
    lines = assert_clean(res, 0, errors=0)
    skipped = [r for r in doc["results"] if r["result"] == "skipped"]
    n_bad = 2 if case_id == "input.name.dots" else 1
    assert len(skipped) == n_bad and len(lines) == n_bad, (skipped, lines)
    assert all("skipping profile" in line for line in lines)
    label = "profiles/default" if name == "default" else None
    shown = skipped[0]["profile"]
    if label:
        assert shown == label
    else:
        # printable, one token: no newline, space, quote or raw non-UTF-8 can get out
        assert all(0x21 <= ord(c) <= 0x7E for c in shown), shown
    assert [r["profile"] for r in doc["results"] if r["result"] == "changed"] == \
        ["default", "alice"]
    log = boot_log(sb)
    assert len(log) == len(doc["results"])  # one line per row: nothing forged
    assert all(len(line.split(" ")) == 5 for line in log), log
    assert kit.snapshot(sb.home) == before
    assert not list(sb.root.rglob("MARK"))
    assert sorted(p.name for p in sb.scandir.iterdir() if p.name.startswith("gateway-")) == \
        ["gateway-alice", "gateway-default"]
    reliability_report.record(case_id, 1, "exit 0; one warning line and one escaped `skipped` "
                                          "row; other profiles reconciled; data untouched")


# --------------------------------------------------------------------------- state files

HUGE = b'{"desired_state": "running", "pad": "' + b"x" * (1 << 20) + b'"}'
STATES = {
    case("input.state.empty", "gateway_state.json empty"): (b"", "not valid JSON"),
    case("input.state.truncated", "gateway_state.json truncated mid-value"):
        (b'{"desired_state": "runn', "not valid JSON"),
    case("input.state.huge", "gateway_state.json of 1 MiB + 40 bytes"): (HUGE, "larger than"),
    case("input.state.binary", "gateway_state.json of random binary"):
        (bytes(range(256)) * 4, "not valid JSON"),
    case("input.state.array", "gateway_state.json holding a JSON array"):
        (b'["running"]', "not a JSON object"),
    case("input.state.nested", "gateway_state.json nested 100,000 deep"):
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    case("input.state.garbage_value", "desired_state that is an object"):
        (b'{"desired_state": {"$(touch MARK)": [1, 2]}}', "not a string"),
    case("input.state.long_value", "desired_state that is a 100,000-character string"):
        (json.dumps({"desired_state": "r" * 100000}).encode(), "characters"),
    case("input.state.bom", "gateway_state.json with a UTF-8 BOM (accepted)"):
        (b'\xef\xbb\xbf{"desired_state": "running"}', None),
    case("input.state.directory", "gateway_state.json that is a directory"): ("dir", "regular"),
    case("input.state.fifo", "gateway_state.json that is a FIFO (must not hang)"):
        ("fifo", "regular"),
}


@pytest.mark.parametrize("case_id", list(STATES))
def test_broken_state_files_mean_no_state_with_one_warning(root_sandbox, case_id):
    sb = root_sandbox
    content, problem = STATES[case_id]
    d = kit.write_profile(sb.home, "alice", None, user=sb.user)
    target = d / "gateway_state.json"
    if content == "dir":
        target.mkdir()
        (target / "inner").write_text("kept")
    elif content == "fifo":
        os.mkfifo(target)
    else:
        target.write_bytes(content)
    before = kit.snapshot(sb.home)
    res, doc = reconcile_json(sb)
    lines = assert_clean(res, 0, errors=0)
    alice = next(r for r in doc["results"] if r["profile"] == "alice")
    if problem is None:
        assert lines == [] and alice["prior_state"] == "running" and alice["action"] == "started"
    else:
        assert len(lines) == 1 and problem in lines[0] and "alice" in lines[0], lines
        assert "treating as no prior state" in lines[0]
        assert alice["prior_state"] is None and alice["action"] == "registered"
        assert (sb.slot("alice") / "down").exists()
    assert kit.snapshot(sb.home) == before
    assert all(len(line) < 300 for line in boot_log(sb))  # nothing flooded the boot log
    assert not list(sb.root.rglob("MARK"))
    reliability_report.record(case_id, 1, "exit 0; " + (
        "accepted: started" if problem is None else
        f"one warning ('{problem}'), treated as no state: registered down") + "; file untouched")


def test_unreadable_state_file_as_the_service_user(sandbox):
    """Mode 000 does not stop root; so run as the service user, owning a one-user container."""
    sb = sandbox
    user = s6env.ensure_service_user()
    d = kit.write_profile(sb.home, "alice", None)
    (d / "gateway_state.json").write_text('{"desired_state": "running"}')
    os.chmod(d / "gateway_state.json", 0)
    kit.chown_tree(sb.home, user)
    os.chown(d / "gateway_state.json", 0, 0)
    os.chown(sb.scandir, user.uid, user.gid)
    before = kit.snapshot(sb.home)
    res, doc = reconcile_json(sb, user=user)
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "Permission denied" in lines[0], lines
    alice = next(r for r in doc["results"] if r["profile"] == "alice")
    assert alice["prior_state"] is None and alice["action"] == "registered"
    assert kit.snapshot(sb.home) == before
    reliability_report.record(
        "input.state.unreadable", 1,
        "exit 0; one warning 'Permission denied … treating as no prior state'; registered down")


# --------------------------------------------------------------------------- SOUL.md


@pytest.mark.parametrize("kind", ["directory", "dangling"])
def test_soul_md_that_is_not_a_file(root_sandbox, kind):
    sb = root_sandbox
    d = sb.home / "profiles" / "odd"
    d.mkdir(parents=True)
    if kind == "directory":
        (d / "SOUL.md").mkdir()
    else:
        (d / "SOUL.md").symlink_to("/nonexistent/soul")
    kit.write_profile(sb.home, "alice", {"desired_state": "stopped"}, user=sb.user)
    before = kit.snapshot(sb.home)
    res, doc = reconcile_json(sb)
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "SOUL.md is not a regular file" in lines[0]
    assert [(r["profile"], r["result"]) for r in doc["results"]] == [
        ("default", "changed"), ("alice", "changed"), ("odd", "skipped")]
    start = s6env.run_tasks(sb, "gateway.start", "-p", "odd")
    assert_clean(start, 1, errors=1)
    assert kit.snapshot(sb.home) == before
    reliability_report.record(
        f"input.soul.{kind}", 2,
        "reconcile: exit 0, one warning, a skipped row; gateway.start -p: exit 1, one line")


# --------------------------------------------------------------------------- scandir


def test_scandir_missing(root_sandbox):
    sb = root_sandbox
    os.rmdir(sb.scandir)
    tries = 0
    for task in (["reconcile"], ["gateway.status"], ["gateway.start"]):
        res = s6env.run_tasks(sb, *task)
        lines = assert_clean(res, 1, errors=1)
        assert "does not exist" in lines[0] and str(sb.scandir) in lines[0], (task, lines)
        tries += 1
    assert not (sb.home / "profiles" / "alice").exists()  # failed before changing the volume
    # as hermes's own hooks (SPEC §15): nothing registered is an empty list; a profile is
    # still created, with one warning that no slot could be registered
    res = s6env.run_tasks(sb, "slot.list")
    assert assert_clean(res, 0) == []
    res = s6env.run_tasks(sb, "profile.create", "alice")
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "does not exist" in lines[0] and str(sb.scandir) in lines[0]
    assert (sb.home / "profiles" / "alice" / "SOUL.md").is_file()
    assert not sb.scandir.exists()  # never created
    tries += 2
    reliability_report.record(
        "input.scandir.missing", tries,
        "exit 1, one line naming the scandir, nothing created on the volume; slot.list: an "
        "empty list; profile.create: the profile, and one warning naming the scandir")


def test_scandir_is_a_file(root_sandbox):
    sb = root_sandbox
    os.rmdir(sb.scandir)
    sb.scandir.write_text("not a directory")
    res = s6env.run_tasks(sb, "reconcile")
    assert_clean(res, 1, errors=1)
    assert sb.scandir.read_text() == "not a directory"
    reliability_report.record("input.scandir.file", 1,
                              "exit 1, one line; the file untouched")


def test_scandir_read_only(root_sandbox):
    sb = root_sandbox
    kit.write_profile(sb.home, "alice", {"desired_state": "running"}, user=sb.user)
    with kit.Mount(sb.scandir, "ro,size=1m"):
        res, doc = reconcile_json(sb)
        assert_clean(res, 2, errors=0)
        assert all(r["result"] == "failed" and "Read-only file system" in r["message"]
                   for r in doc["results"]), doc
        assert os.listdir(sb.scandir) == []
    # the boot log still recorded the failure
    assert [line.split(" ")[-1] for line in boot_log(sb)] == ["result=failed"] * 2
    res, doc = reconcile_json(sb)
    assert_clean(res, 0, errors=0)
    reliability_report.record(
        "input.scandir.read_only", 2,
        "exit 2, every slot `failed: … Read-only file system`, boot log written; once writable "
        "the next run converged")


def test_scandir_full(root_sandbox):
    sb = root_sandbox
    for i in range(6):
        kit.write_profile(sb.home, f"p{i}", {"desired_state": "running"}, user=sb.user)
    mount = kit.Mount(sb.scandir, "size=64k")
    with mount:
        res, doc = reconcile_json(sb)
        assert_clean(res, 2, errors=0)
        failed = [r for r in doc["results"] if r["result"] == "failed"]
        assert failed and all("No space left on device" in r["message"] for r in failed)
        assert kit.slot_problems(sb.scandir, sb.user.gid) == []  # nothing visible is partial
        published = sorted(n for n in os.listdir(sb.scandir) if n.startswith("gateway-"))
        mount.remount("size=4m")
        res, doc = reconcile_json(sb)
        assert_clean(res, 0, errors=0)
        assert kit.leftover_dot_entries(sb.scandir) == []
        assert kit.slot_problems(sb.scandir, sb.user.gid) == []
        assert len([n for n in os.listdir(sb.scandir) if n.startswith("gateway-")]) == 7
    reliability_report.record(
        "input.scandir.full", 2,
        "exit 2, failed rows `No space left on device`, no partial slot visible; after growing "
        "it the next run converged with no dot-entries",
        published_when_full=len(published))


def test_foreign_and_stale_scandir_entries(root_sandbox):
    sb = root_sandbox
    kit.write_profile(sb.home, "alice", {"desired_state": "stopped"}, user=sb.user)
    foreign = sb.scandir / "other-service"
    foreign.mkdir()
    (foreign / "run").write_text("#!/bin/sh\nexec sleep 1000\n")
    (sb.scandir / ".foreign-dot").mkdir()
    (sb.scandir / "README").write_text("not ours\n")
    (sb.scandir / ".gateway-alice.tmp").mkdir()  # an interrupted publish
    (sb.scandir / ".gateway-alice.tmp" / "run").write_text("half")
    (sb.scandir / ".gateway-gone.removing").mkdir()  # an interrupted removal
    (sb.scandir / "gateway-orphan").mkdir()  # a slot whose profile is gone
    (sb.scandir / "gateway-orphan" / "run").write_text("#!/bin/sh\n")
    res, doc = reconcile_json(sb)
    assert_clean(res, 0, errors=0)
    assert sorted(set(os.listdir(sb.scandir)) - {".hermes-tasks.slots"}) == sorted(
        [".foreign-dot", ".hermes-tasks.cache", ".hermes-tasks.lock", "README", "gateway-alice", "gateway-default",
         "hermes-tasks-registrar", "other-service"])
    assert (foreign / "run").read_text() == "#!/bin/sh\nexec sleep 1000\n"
    assert {r["profile"]: r["action"] for r in doc["results"]}["orphan"] == "removed"
    reliability_report.record(
        "input.scandir.foreign_and_stale", 1,
        "exit 0; stale dot-entries and the orphan gateway slot removed; foreign entries untouched")


# --------------------------------------------------------------------------- the volume


def test_logs_is_a_file_and_boot_log_is_a_directory(root_sandbox):
    sb = root_sandbox
    (sb.home / "logs").write_text("user's file\n")
    res = s6env.run_tasks(sb, "reconcile")
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "cannot write" in lines[0]
    assert (sb.home / "logs").read_text() == "user's file\n"
    (sb.home / "logs").unlink()
    (sb.home / "logs" / "container-boot.log").mkdir(parents=True)
    res = s6env.run_tasks(sb, "reconcile")
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "cannot write" in lines[0]
    reliability_report.record(
        "input.volume.logs_not_dir", 2,
        "exit 0, one warning 'cannot write …'; the slots are still reconciled, nothing replaced")


def test_missing_hermes_home(root_sandbox):
    sb = root_sandbox
    os.rmdir(sb.home)
    res = s6env.run_tasks(sb, "reconcile")
    lines = assert_clean(res, 0, errors=0)
    assert len(lines) == 1 and "cannot write" in lines[0]
    assert (sb.slot("default") / "down").exists()  # no state: registered down, no crash loop
    assert not sb.home.exists()  # the volume is not ours to create
    reliability_report.record(
        "input.volume.home_missing", 1,
        "exit 0, one warning (boot log); gateway-default registered down; home not created")


# --------------------------------------------------------------------------- inventories

INVENTORIES = {
    case("input.inventory.unknown_key", "inventory with a misspelt key"):
        (b"all:\n  vars: {scandr: /x}\n", "did you mean 'scandir'"),
    case("input.inventory.wrong_type", "inventory with wrong types"):
        (b"all:\n  vars: {lock_timeout: [1], service_uid: yes}\n", "must be"),
    case("input.inventory.not_yaml", "inventory that is not YAML"):
        (b"all: {vars: [\n  - :\n", "not valid YAML"),
    case("input.inventory.not_utf8", "inventory with non-UTF-8 bytes"):
        (b"all:\n  vars: {hermes_home: /caf\xe9}\n", "not valid YAML"),
    case("input.inventory.bad_date", "inventory value PyYAML turns into an impossible date"):
        (b"all:\n  vars: {hermes_bin: 2001-13-01}\n", "not valid YAML"),
    case("input.inventory.deep", "inventory nested 50,000 levels deep"):
        (b"all: " + b"[" * 50000, "nested too deeply"),
    case("input.inventory.aliases", "inventory 'billion laughs' alias bomb"):
        (b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nall:\n  vars: {extra_env: {A: *c}}\n",
         "must be a string, number or boolean"),
    case("input.inventory.top_level", "inventory whose top level is a list"):
        (b"- all\n", "top-level 'all' group"),
    case("input.inventory.huge", "inventory larger than 1 MiB"):
        (b"#" * (1 << 20) + b"\nall: {}\n", "larger than"),
    case("input.inventory.nan_timeout", "lock_timeout: .nan (an unbounded wait)"):
        (b"all:\n  vars: {lock_timeout: .nan}\n", "lock_timeout"),
    case("input.inventory.huge_uid", "service_uid beyond 32 bits"):
        (b"all:\n  vars: {service_uid: 99999999999}\n", "at most"),
    case("input.inventory.dash_bin", "hermes_bin starting with '-'"):
        (b"all:\n  vars: {hermes_bin: -rf}\n", "must not start with '-'"),
    case("input.inventory.bad_env_key", "extra_env key that is not a variable name"):
        (b"all:\n  vars: {extra_env: {'A B; touch MARK': x}}\n", "invalid variable name"),
    case("input.inventory.children", "inventory children that are not mappings"):
        (b"all:\n  children: {web: 5}\n", "must be a mapping"),
    case("input.inventory.fifo", "inventory path that is a FIFO (must not hang)"):
        ("fifo", "not a regular file"),
    case("input.inventory.missing", "inventory path that does not exist"):
        ("missing", "cannot read inventory"),
    case("input.inventory.dir_without_hosts", "inventory directory without hosts.yml"):
        ("dir", "no hosts.yml"),
}


@pytest.mark.parametrize("case_id", list(INVENTORIES))
def test_broken_inventories_are_one_line_errors(sandbox, case_id):
    sb = sandbox
    content, needle = INVENTORIES[case_id]
    path = sb.root / "inv.yml"
    if content == "fifo":
        os.mkfifo(path)
    elif content == "dir":
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    tries = 0
    for task in (["reconcile"], ["gateway.status"], ["profile.create", "alice"]):
        res = s6env.run_tasks(sb, *task, "--inventory", str(path), inventory_vars=False,
                              timeout=30)
        lines = assert_clean(res, 1, errors=1)
        assert needle in lines[0] and str(path) in lines[0], (task, lines)
        tries += 1
    assert not (sb.home / "profiles").exists() and os.listdir(sb.scandir) == []
    assert not list(sb.root.rglob("MARK"))
    reliability_report.record(case_id, tries, f"exit 1, one line naming the file ('{needle}'); "
                                              "nothing changed")


VARS = {
    case("input.var.no_equals", "`--var novalue`"): ("novalue", "key=value"),
    case("input.var.unknown", "`--var hermes_hom=/x`"): ("hermes_hom=/x", "did you mean"),
    case("input.var.relative_home", "`--var hermes_home=relative`"):
        ("hermes_home=relative", "absolute path"),
    case("input.var.s6_bin_space", "`--var 's6_bin_dir=/a b'` (it goes in shebangs)"):
        ("s6_bin_dir=/a b", "no whitespace"),
    case("input.var.extra_env_deep", "`--var extra_env=[[[[…` 10,000 deep"):
        ("extra_env=" + "[" * 10000, "must be a mapping"),
    case("input.var.env_inventory_missing", "HERMES_TASKS_INVENTORY naming a missing file"):
        (None, "cannot read inventory"),
}


@pytest.mark.parametrize("case_id", list(VARS))
def test_bad_vars_are_one_line_errors(sandbox, case_id):
    sb = sandbox
    var, needle = VARS[case_id]
    if var is None:
        res = s6env.run_tasks(sb, "reconcile", inventory_vars=False,
                              env={"HERMES_TASKS_INVENTORY": str(sb.root / "nope.yml")})
    else:
        # after the sandbox's own --var flags: the later one wins
        res = s6env.run_tasks(sb, "reconcile", *s6env.inventory_args(sb), "--var", var,
                              inventory_vars=False)
    lines = assert_clean(res, 1, errors=1)
    assert needle in lines[0], lines
    assert os.listdir(sb.scandir) == []
    reliability_report.record(case_id, 1, f"exit 1, one line ('{needle}'); nothing changed")


# --------------------------------------------------------------------------- task arguments

BAD_ARGS = {
    case("input.arg.create_traversal", "`profile.create ../evil`"):
        (["profile.create", "../evil"], "invalid profile name"),
    case("input.arg.create_shell", "`profile.create '$(touch MARK)'`"):
        (["profile.create", "$(touch MARK)"], "invalid profile name"),
    case("input.arg.create_long", "`profile.create` with a 255-character name"):
        (["profile.create", "a" * 255], "invalid profile name"),
    case("input.arg.create_non_utf8", "`profile.create` with a non-UTF-8 name"):
        (["profile.create", os.fsdecode(b"caf\xe9")], "invalid profile name"),
    case("input.arg.delete_default", "`profile.delete default`"):
        (["profile.delete", "default"], "cannot be deleted"),
    case("input.arg.delete_unknown", "`profile.delete ghost`"):
        (["profile.delete", "ghost"], "no profile"),
    case("input.arg.start_unknown", "`gateway.start -p ghost`"):
        (["gateway.start", "-p", "ghost"], "profile.create ghost"),
    case("input.arg.stop_traversal", "`gateway.stop -p ../../etc`"):
        (["gateway.stop", "-p", "../../etc"], "invalid profile name"),
    case("input.arg.render_newline", "`slot.render 'a\\nb'`"):
        (["slot.render", "a\nb"], "invalid profile name"),
}


@pytest.mark.parametrize("case_id", list(BAD_ARGS))
def test_bad_task_arguments_are_one_line_errors(root_sandbox, case_id):
    sb = root_sandbox
    kit.write_profile(sb.home, "alice", {"desired_state": "stopped"}, user=sb.user)
    s6env.run_tasks(sb, "reconcile")
    args, needle = BAD_ARGS[case_id]
    before, slots_before = kit.snapshot(sb.home), sorted(os.listdir(sb.scandir))
    res = s6env.run_tasks(sb, *args)
    lines = assert_clean(res, 1, errors=1)
    assert needle in lines[0], lines
    assert "\n" not in lines[0] and "\\x" in lines[0] if "\n" in args[-1] or "\udce9" in args[-1] \
        else True
    assert kit.snapshot(sb.home) == before and sorted(os.listdir(sb.scandir)) == slots_before
    assert not list(sb.root.rglob("MARK")) and not (sb.root / "evil").exists()
    reliability_report.record(case_id, 1, f"exit 1, one line ('{needle}'); nothing changed")


# --------------------------------------------------------------------------- runtime files


def test_stale_runtime_files_of_every_kind(root_sandbox):
    """gateway.pid / processes.json as symlinks, directories and FIFOs: never followed."""
    sb = root_sandbox
    outside = sb.root / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("must survive\n")
    kinds = {"link": None, "dir": None, "fifo": None, "file": None}
    for kind in kinds:
        d = kit.write_profile(sb.home, f"p-{kind}", {"desired_state": "stopped"}, user=sb.user)
        for name in ("gateway.pid", "processes.json"):
            p = d / name
            if kind == "link":
                p.symlink_to(victim)
            elif kind == "dir":
                p.mkdir()
            elif kind == "fifo":
                os.mkfifo(p)
            else:
                p.write_text("123\n")
    res = s6env.run_tasks(sb, "reconcile")
    assert_clean(res, 0, errors=0)
    assert victim.read_text() == "must survive\n"
    for kind in kinds:
        d = sb.home / "profiles" / f"p-{kind}"
        left = sorted(n for n in ("gateway.pid", "processes.json") if os.path.lexists(d / n))
        # links, FIFOs and files are swept (the link itself, never its target); a directory
        # of that name is not a stale pid file: left alone
        assert left == (["gateway.pid", "processes.json"] if kind == "dir" else []), (kind, left)
    reliability_report.record(
        "input.runtime_files.kinds", 1,
        "exit 0; links/FIFOs/files removed without following, directories left; the symlink "
        "target outside untouched")


def test_non_utf8_and_control_characters_in_state_values(root_sandbox):
    sb = root_sandbox
    d = kit.write_profile(sb.home, "alice", None, user=sb.user)
    (d / "gateway_state.json").write_bytes(
        json.dumps({"desired_state": "weird\nprior_state=running \x1b[31m"}).encode())
    res, doc = reconcile_json(sb)
    assert_clean(res, 0, errors=0)
    alice = next(r for r in doc["results"] if r["profile"] == "alice")
    assert alice["action"] == "registered"
    lines = boot_log(sb)
    assert len(lines) == 2 and all(len(line.split(" ")) == 5 for line in lines), lines
    assert "\x1b" not in "".join(lines)
    human = s6env.run_tasks(sb, "gateway.status", "-p", "alice")
    assert_clean(human, 0, errors=0)
    assert "\x1b" not in human.stdout and human.stdout.count("\n") == 1
    reliability_report.record(
        "input.state.control_chars", 2,
        "exit 0; registered down; boot log and gateway.status print it escaped on one line")
