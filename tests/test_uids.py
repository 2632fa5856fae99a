"""Per-profile uid allocation (SPEC §16): the record read as hostile input, and allocation
that never moves an allocation, never reuses a uid and never collides with an account."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from hermes_tasks import uids
from hermes_tasks.uids import Record, allocate, parse_record, read_record


def parsed(raw: bytes | str, **kw) -> tuple[Record, list[str]]:
    warnings: list[str] = []
    data = raw.encode() if isinstance(raw, str) else raw
    return parse_record(data, warnings.append, **kw), warnings


def doc(profiles, retired=None) -> bytes:
    out = {"profiles": profiles}
    if retired is not None:
        out["retired"] = retired
    return json.dumps(out).encode()


# --------------------------------------------------------------------------- parse


def test_round_trip():
    rec = Record({"alice": 20000, "bob": 20003}, frozenset({20001}))
    back, warnings = parsed(uids.to_json(rec))
    assert back == rec and warnings == []


def test_empty_and_missing_fields_are_empty_without_warning():
    for raw in (b"", b"  \n", b"{}"):
        rec, warnings = parsed(raw)
        assert rec == Record() and warnings == []


@pytest.mark.parametrize("raw, why", [
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # deep: RecursionError inside json
    (b"{" + b'"a":{' * 50_000 + b"}" * 50_001, "not valid JSON"),
    (b"\xff\xfe\x00binary\x00\x01", "not valid JSON"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"profiles"', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"null", "not a JSON object"),
    (b'{"profiles": [20000]}', "'profiles' is not an object"),
    (b'{"profiles": "alice"}', "'profiles' is not an object"),
])
def test_hostile_shapes_warn_once_and_give_empty(raw, why):
    rec, warnings = parsed(raw)
    assert rec == Record()
    assert len(warnings) == 1 and why in warnings[0], warnings


@pytest.mark.parametrize("uid", [19999, 0, -1, -20000, 65534, 65535, 2**31, 2**64,
                                 20000.0, "20000", True, None, [20000], {"uid": 20000}])
def test_out_of_range_or_non_integer_uid_is_dropped(uid):
    rec, warnings = parsed(doc({"alice": uid, "bob": 20001}))
    assert rec.profiles == {"bob": 20001}
    assert len(warnings) == 1 and "alice's uid" in warnings[0]
    assert "\n" not in warnings[0]


def test_custom_range():
    rec, warnings = parsed(doc({"a": 100, "b": 99, "c": 201}), base=100, limit=200)
    assert rec.profiles == {"a": 100} and len(warnings) == 2


def test_invalid_and_default_names_are_dropped_and_escaped():
    rec, warnings = parsed(doc({"default": 20000, "../etc": 20001, "a\nb": 20002,
                                "ok": 20003}))
    assert rec.profiles == {"ok": 20003}
    assert len(warnings) == 3
    assert all("\n" not in w for w in warnings)
    assert any("a\\x0ab" in w for w in warnings)


def test_duplicate_uid_is_kept_by_nobody_and_quarantined():
    rec, warnings = parsed(doc({"alice": 20005, "bob": 20005, "carol": 20006}))
    assert rec.profiles == {"carol": 20006}
    assert 20005 in rec.retired
    assert len(warnings) == 1 and "alice, bob" in warnings[0]
    # and allocation never hands the quarantined uid to anyone
    out = allocate(["alice", "bob", "carol"], rec, {})
    assert 20005 not in out.uids.values()
    assert out.uids["carol"] == 20006
    assert len(set(out.uids.values())) == 3


def test_retired_list_is_validated():
    rec, warnings = parsed(doc({"a": 20000}, [20001, -5, "x", 1.5, 70000, 20000]))
    assert rec.retired == frozenset({20001})  # 20000 is live: a live allocation wins
    assert len(warnings) == 1 and "4 retired" in warnings[0]
    rec, warnings = parsed(doc({}, {"20001": 1}))
    assert rec.retired == frozenset() and "'retired' is not a list" in warnings[0]


# --------------------------------------------------------------------------- read (file)


def warn_list():
    out: list[str] = []
    return out, out.append


def test_read_missing_file_is_empty_without_warning(tmp_path):
    warnings, warn = warn_list()
    assert read_record(str(tmp_path), warn) == Record() and warnings == []


def test_read_valid_file(tmp_path):
    (tmp_path / uids.FILE).write_bytes(doc({"alice": 20002}))
    warnings, warn = warn_list()
    assert read_record(str(tmp_path), warn).profiles == {"alice": 20002}
    assert warnings == []


def test_read_never_follows_a_symlink(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_bytes(doc({"alice": 20002}))
    (tmp_path / uids.FILE).symlink_to(target)
    warnings, warn = warn_list()
    assert read_record(str(tmp_path), warn) == Record()
    assert len(warnings) == 1 and "symlink" in warnings[0]


def test_read_rejects_fifo_directory_and_huge_file(tmp_path):
    for make, why in ((lambda p: os.mkfifo(p), "not a regular file"),
                      (lambda p: p.mkdir(), ""),
                      (lambda p: p.write_bytes(b" " * (uids.FILE_LIMIT + 1)), "larger")):
        path = tmp_path / uids.FILE
        make(path)
        warnings, warn = warn_list()
        assert read_record(str(tmp_path), warn) == Record()  # and returns: no FIFO hang
        assert len(warnings) == 1 and "unusable" in warnings[0] and why in warnings[0]
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def test_read_deep_json_file_warns_not_raises(tmp_path):
    (tmp_path / uids.FILE).write_bytes(b"[" * 200_000 + b"]" * 200_000)
    warnings, warn = warn_list()
    assert read_record(str(tmp_path), warn) == Record()
    assert len(warnings) == 1 and uids.FILE in warnings[0] and "not valid JSON" in warnings[0]


def test_read_missing_home_is_empty(tmp_path):
    # no volume yet is not a defect of the record (the boot reports a missing volume)
    warnings, warn = warn_list()
    assert read_record(str(tmp_path / "nope"), warn) == Record() and warnings == []


# --------------------------------------------------------------------------- allocate


def test_new_profiles_get_lowest_free_uids_in_name_order():
    out = allocate(["bob", "alice", "default", "../x"], Record(), {})
    assert out.uids == {"alice": 20000, "bob": 20001}
    assert out.changed and out.conflicts == {}


def test_allocations_never_move_when_profiles_come_and_go():
    first = allocate(["alice", "bob", "carol"], Record(), {}).record
    second = allocate(["aaron", "bob", "carol"], first, {})  # alice gone, aaron new
    assert second.uids["bob"] == first.profiles["bob"]
    assert second.uids["carol"] == first.profiles["carol"]
    assert second.uids["aaron"] not in first.profiles.values()  # alice's uid is not reused
    assert first.profiles["alice"] in second.record.retired
    third = allocate(["alice", "aaron", "bob", "carol"], second.record, {})
    # even the same name, re-created, gets a fresh uid: leftovers of the old one stay apart
    assert third.uids["alice"] not in (set(first.profiles.values())
                                       | {second.uids["aaron"]})
    assert {n: third.uids[n] for n in ("aaron", "bob", "carol")} == dict(second.uids)


def test_unchanged_record_reports_unchanged():
    rec = allocate(["alice", "bob"], Record(), {}).record
    again = allocate(["bob", "alice"], rec, {})
    assert not again.changed and again.record == rec


def test_taken_uids_are_skipped():
    taken = uids.taken_from_files(
        b"root:x:0:0::/root:/bin/sh\nhermes:x:20000:20000::/:/sbin/nologin\n"
        b"broken line\nx:x:notanumber:1::/:\nsvc:x:20002:20002::/:/bin/sh\n",
        b"staff:x:20001:\n")
    assert taken[20000] == "account hermes" and taken[20001] == "group staff"
    out = allocate(["a", "b"], Record(), taken)
    assert out.uids == {"a": 20003, "b": 20004}


def test_service_user_and_live_process_uids_are_skipped():
    out = allocate(["a"], Record(), [20000, 20001])  # a plain iterable works too
    assert out.uids == {"a": 20002}


def test_recorded_uid_that_an_account_took_is_kept_and_reported():
    rec = Record({"alice": 20000})
    out = allocate(["alice", "bob"], rec, {20000: "account mallory"})
    assert out.uids["alice"] == 20000  # never moved silently: its files are owned by it
    assert "alice" in out.conflicts and "account mallory" in out.conflicts["alice"]
    assert out.uids["bob"] == 20001


def test_exhaustion_warns_and_leaves_profile_without_uid():
    warnings: list[str] = []
    out = allocate(["a", "b", "c"], Record(retired=frozenset({101})), {100: ""},
                   base=100, limit=102, warn=warnings.append)
    assert out.uids == {"a": 102}
    assert len(warnings) == 2 and "no free uid left for profile b" in warnings[0]


def test_allocation_from_hostile_record_never_gives_two_profiles_one_uid():
    hostile = (b'{"profiles": {"a": 20000, "b": 20000, "c": 19999, "d": 20001, '
               b'"e": -1, "f": 20001.0}, "retired": [20002]}')
    rec, _ = parsed(hostile)
    out = allocate(["a", "b", "c", "d", "e", "f", "g"], rec, {20003: "service user"})
    values = list(out.uids.values())
    assert len(values) == len(set(values)) == 7
    assert all(v >= uids.DEFAULT_BASE and v not in (20000, 20002, 20003) for v in values)
    assert out.uids["d"] == 20001


def test_many_profiles_are_quick_and_dense():
    names = [f"p{i:04d}" for i in range(2000)]
    out = allocate(names, Record(), {})
    assert sorted(out.uids.values()) == list(range(20000, 22000))


# --------------------------------------------------------------------------- owners


def test_tree_owner_wins_over_a_tampered_record():
    # the service user swapped alice's and bob's numbers in the record; root chowned the trees
    rec = Record({"alice": 20001, "bob": 20000})
    out = allocate(["alice", "bob"], rec, {}, owners={"alice": 20000, "bob": 20001})
    assert out.uids == {"alice": 20000, "bob": 20001}
    assert out.record.retired == frozenset()


def test_owner_outside_range_or_taken_falls_back_to_record():
    # isolation off: trees belong to the service user (10000): the record decides
    rec = Record({"alice": 20004})
    out = allocate(["alice", "bob"], rec, {10000: "service user", 20001: "account x"},
                   owners={"alice": 10000, "bob": 20001})
    assert out.uids["alice"] == 20004
    assert out.uids["bob"] not in (10000, 20001, 20004)


def test_uid_owning_two_trees_goes_to_neither_and_is_never_reused():
    out = allocate(["a", "b", "c"], Record(), {}, owners={"a": 20000, "b": 20000})
    assert 20000 not in out.uids.values()
    assert 20000 in out.record.retired
    assert len(set(out.uids.values())) == 3


def test_record_entry_colliding_with_another_trees_owner_moves_with_warning():
    warnings: list[str] = []
    out = allocate(["alice", "bob"], Record({"alice": 20003}), {},
                   owners={"bob": 20003}, warn=warnings.append)
    assert out.uids["bob"] == 20003
    assert out.uids["alice"] != 20003
    assert len(warnings) == 1 and "alice" in warnings[0]


def test_replaced_allocation_is_retired_not_freed():
    # alice recorded 20000 but her tree is owned by 20002: 20000 must not go to carol
    out = allocate(["alice", "carol"], Record({"alice": 20000}), {},
                   owners={"alice": 20002})
    assert out.uids["alice"] == 20002
    assert out.uids["carol"] not in (20000, 20002)
    assert 20000 in out.record.retired
    assert not (set(out.record.profiles.values()) & out.record.retired)


def test_read_applies_the_configured_range(tmp_path):
    (tmp_path / uids.FILE).write_bytes(doc({"alice": 30000, "bob": 20000}))
    warnings, warn = warn_list()
    rec = read_record(str(tmp_path), warn, base=30000, limit=30010)
    assert rec.profiles == {"alice": 30000}
    assert len(warnings) == 1 and uids.FILE in warnings[0] and "bob" in warnings[0]


def _settings(**kw):
    from hermes_tasks import inventory

    return inventory.load(None, [f"{k}={v}" for k, v in kw.items()], environ={})


def _recorded(pending, warnings) -> dict[str, str]:
    return pending.record(warnings.append)


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's to write")
def test_for_settings_allocates_records_and_blocks(tmp_path, monkeypatch):
    cfg = _settings(hermes_home=str(tmp_path), profile_isolation="true")
    warnings = []
    got, blocked, pending = uids.for_settings(cfg, ["alice", "bob", "default"], {},
                                              warnings.append)
    assert set(got) == {"alice", "bob"} and not blocked
    assert not (tmp_path / uids.FILE).exists()  # the facts only read: nothing written
    again, _, pending = uids.for_settings(cfg, ["alice", "bob"], {}, warnings.append)
    assert again == got and pending.uids == got  # the check's answer is the run's
    assert _recorded(pending, warnings) == {}  # the executor records it
    assert json.loads((tmp_path / uids.FILE).read_text())["profiles"] == got
    st = os.stat(tmp_path / uids.FILE)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
    assert uids.for_settings(cfg, ["alice", "bob"], {}, warnings.append)[2] is None
    # a tampered record never moves an allocation the trees show (only root chowns them)
    (tmp_path / uids.FILE).write_text(json.dumps({"profiles": {"alice": got["bob"],
                                                               "bob": got["alice"]}}))
    owners = {"alice": got["alice"], "bob": got["bob"]}
    same, _, pending = uids.for_settings(cfg, ["alice", "bob"], owners, warnings.append)
    assert same == got and _recorded(pending, warnings) == {}
    # an account that took a recorded uid fails that profile, naming both
    (tmp_path / uids.FILE).write_text(json.dumps({"profiles": {"alice": 20000}}))
    real = uids.accounts
    monkeypatch.setattr(uids, "accounts", lambda: {**real(), 20000: "account eve"})
    got, blocked, _ = uids.for_settings(cfg, ["alice"], {}, warnings.append)
    monkeypatch.undo()
    assert got == {} and "account eve" in blocked["alice"] and "alice" in blocked["alice"]
    # isolation off: the profiles isolation once converted, to be given back
    off = _settings(hermes_home=str(tmp_path))
    back, blocked, pending = uids.for_settings(off, ["alice", "bob"], {"bob": 20005},
                                               warnings.append)
    assert back == {"alice": 20000, "bob": 20005} and not blocked and pending is None
    assert json.loads((tmp_path / uids.FILE).read_text()) == {"profiles": {"alice": 20000}}


def test_for_settings_off_with_no_record_reads_nothing_else(tmp_path):
    cfg = _settings(hermes_home=str(tmp_path))
    assert uids.for_settings(cfg, ["alice"], {"alice": 10000}, print) == ({}, {}, None)
    assert not (tmp_path / uids.FILE).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's to write")
def test_a_held_lock_hands_out_no_new_uid(tmp_path):
    """The service user can hold the record's lock: root waits 0.5 s, then no new uid is
    handed out (those profiles fail this run, the next run retries); recorded ones work."""
    cfg = _settings(hermes_home=str(tmp_path), profile_isolation="true")
    (tmp_path / uids.FILE).write_text(json.dumps({"profiles": {"alice": 20000}}))
    got, blocked, pending = uids.for_settings(cfg, ["alice", "bob"], {}, print)
    assert got == {"alice": 20000, "bob": 20001} and not blocked
    holder = os.open(tmp_path / uids.FILE, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        warnings = []
        failed = _recorded(pending, warnings)
    finally:
        os.close(holder)
    assert list(failed) == ["bob"] and "locked by another process" in failed["bob"]
    assert "next run" in failed["bob"] and "\n" not in failed["bob"]
    assert json.loads((tmp_path / uids.FILE).read_text()) == {"profiles": {"alice": 20000}}
    assert _recorded(pending, []) == {}  # the lock is free again: the next run records it
    assert json.loads((tmp_path / uids.FILE).read_text())["profiles"] == got


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's to write")
def test_two_hosts_on_one_volume_never_share_a_uid(tmp_path):
    """Two hosts plan from the same record at once (their scandir locks are their own);
    the second to record re-reads under the record's lock: its profile whose planned uid
    the first took fails this run and gets another uid, never the same one."""
    a = _settings(hermes_home=str(tmp_path), profile_isolation="true", host_id="a")
    b = _settings(hermes_home=str(tmp_path), profile_isolation="true", host_id="b")
    (tmp_path / "profiles" / "carol").mkdir(parents=True)
    (tmp_path / "profiles" / "dave").mkdir()
    got_a, _, pending_a = uids.for_settings(a, ["carol"], {}, print)  # creating carol
    got_b, _, pending_b = uids.for_settings(b, ["dave"], {}, print)  # creating dave
    assert got_a["carol"] == got_b["dave"]  # each plan alone would hand out the same uid
    assert _recorded(pending_a, []) == {}
    failed = _recorded(pending_b, [])
    assert list(failed) == ["dave"] and "another host" in failed["dave"]
    record = json.loads((tmp_path / uids.FILE).read_text())["profiles"]
    assert record["carol"] == got_a["carol"] and record["dave"] != record["carol"]
    again, blocked, pending = uids.for_settings(b, ["carol", "dave"], {}, print)
    assert again == record and not blocked and pending is None  # the next run starts it


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's to write")
def test_retire_waits_for_the_lock_and_never_follows_a_symlink(tmp_path):
    cfg = _settings(hermes_home=str(tmp_path), profile_isolation="true")
    (tmp_path / uids.FILE).write_text(json.dumps({"profiles": {"alice": 20000, "bob": 20001}}))
    holder = os.open(tmp_path / uids.FILE, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    warnings = []
    try:
        uids.retire(cfg, "bob", warnings.append)
    finally:
        os.close(holder)
    assert "bob" in json.loads((tmp_path / uids.FILE).read_text())["profiles"]
    assert len(warnings) == 1 and "locked" in warnings[0]
    uids.retire(cfg, "bob", warnings.append)
    assert json.loads((tmp_path / uids.FILE).read_text()) == {"profiles": {"alice": 20000},
                                                              "retired": [20001]}
    os.unlink(tmp_path / uids.FILE)
    (tmp_path / "elsewhere").write_text("keep\n")
    os.symlink("elsewhere", tmp_path / uids.FILE)
    uids.retire(cfg, "alice", warnings.append)
    assert (tmp_path / "elsewhere").read_text() == "keep\n"


def test_conversion_marks_are_kept_with_their_uid_and_validated():
    rec, warnings = parsed(json.dumps({"profiles": {"alice": 20000, "bob": 20001},
                                       "converted": {"alice": [2049, 77], "bob": ["x", 1],
                                                     "carol": [1, 2]}}))
    assert rec.converted == {"alice": (2049, 77)}
    assert len(warnings) == 1 and "2 'converted'" in warnings[0]
    kept = allocate(["alice", "bob"], rec, {})
    assert kept.record.converted == {"alice": (2049, 77)} and not kept.changed
    gone = allocate(["bob"], rec, {})  # alice deleted: her uid retired, her mark forgotten
    assert gone.record.converted == {} and gone.changed
    assert json.loads(uids.to_json(kept.record))["converted"] == {"alice": [2049, 77]}


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's to write")
def test_a_planted_directory_is_refused_only_by_roots_own_record(tmp_path):
    (tmp_path / "profiles" / "alice").mkdir(parents=True)
    here = (1, 2)
    uids.remember(str(tmp_path), "alice", 20000, here, print)  # no allocation: nothing kept
    assert not json.loads((tmp_path / uids.FILE).read_text() or "{}").get("converted")
    (tmp_path / uids.FILE).write_text(json.dumps({"profiles": {"alice": 20000}}))
    uids.remember(str(tmp_path), "alice", 20000, here, print)
    assert uids.converted_check(str(tmp_path), "alice", 20000, here, print) is None
    why = uids.converted_check(str(tmp_path), "alice", 20000, (1, 3), print)
    assert "not the directory given to uid 20000" in why and "\n" not in why
    assert uids.converted_check(str(tmp_path), "alice", 20001, (1, 3), print) is None
    os.chown(tmp_path / uids.FILE, 1000, 1000)  # planted by the service user: not trusted
    assert uids.converted_check(str(tmp_path), "alice", 20000, (1, 3), print) is None
    os.chown(tmp_path / uids.FILE, 0, 0)
    uids.remember(str(tmp_path), "alice", 10000, None, print)  # given back: forgotten
    assert uids.converted_check(str(tmp_path), "alice", 20000, (1, 3), print) is None


def test_retire_with_no_record_creates_none(tmp_path):
    """profile.delete with isolation never used: no profile-uids.json appears."""
    cfg = _settings(hermes_home=str(tmp_path))
    warnings = []
    uids.retire(cfg, "alice", warnings.append)
    assert not (tmp_path / uids.FILE).exists() and warnings == []
