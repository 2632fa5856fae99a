"""The hermes.tasks Ansible collection and ansible/site.yml over real SSH (SPEC §12, §13.4).

Each "host" is a Debian sshd on its own loopback port (tests/sshenv.py) with its own
sandbox scandir and s6-svscan (tests/s6env.py); alpha and beta share one hermes_home. The
hosts run this checkout's ``hermes-tasks`` (the venv's console script) with the stand-in
gateway. The playbook's role builds each host's settings from what Ansible resolved for it
(inventory, group_vars, host_vars, -e) and keeps them on the host; the single-task modules
are driven ad hoc and by small playbooks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import s6env
import sshenv
import standin
import yaml

REPO = s6env.REPO_ROOT
VENV_BIN = Path(sys.executable).parent
HERMES_TASKS = VENV_BIN / "hermes-tasks"
SITE = REPO / "ansible" / "site.yml"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)
COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
TASK_LINE = re.compile(r"^(ok|changed|fatal|failed|skipping): \[(\S+)\]", re.M)
ADHOC = re.compile(r"^(\S+) \| (SUCCESS|CHANGED|FAILED!)(?: \| rc=\d+)? => ", re.M)


class Host:
    """One SSH host: its sshd, its sandbox (scandir, /command) and its s6-svscan."""

    def __init__(self, name: str, ssh: sshenv.SshHost, home: Path | None):
        self.name = name
        self.ssh = ssh
        self.sandbox = s6env.make_sandbox(service_user=True)
        self.home = home or self.sandbox.home
        self.supervisor = s6env.Supervisor(self.sandbox).start()
        self.host_vars: dict = {}

    def slots(self) -> list[str]:
        return sorted(n for n in os.listdir(self.sandbox.scandir) if n.startswith("gateway-"))

    def slot(self, profile: str) -> Path:
        return self.sandbox.slot(profile)

    def stop(self) -> None:
        self.supervisor.stop()
        self.sandbox.cleanup()


class Fleet:
    """sshd + supervisor per host, one inventory file, and ways to run Ansible on them."""

    def __init__(self, names: list[str], shared: dict[str, str] = None):
        shared = shared or {}
        self.ssh = sshenv.SshFleet(names).start()
        self.hosts: dict[str, Host] = {}
        try:
            for name in names:
                home = self.hosts[shared[name]].home if name in shared else None
                self.hosts[name] = Host(name, self.ssh.hosts[name], home)
        except BaseException:
            self.stop()
            raise
        self.inventory = self.ssh.dir / "fleet" / "hosts.yml"
        self.inventory.parent.mkdir()
        self.shipped = self.ssh.dir / "shipped"
        self.group_vars: dict[str, dict] = {}  # group_vars/<group>.yml next to hosts.yml
        self.all_vars: dict = {}  # more all.vars

    @property
    def user(self) -> s6env.ServiceUser:
        return next(iter(self.hosts.values())).sandbox.user

    def write_inventory(self) -> None:
        """The one inventory both Ansible and hermes-tasks read."""
        first = next(iter(self.hosts))
        common = {k: v for k, v in self.ssh.ssh_vars(first, sys.executable).items()
                  if k != "ansible_port"}
        doc = {"all": {
            # watch_interval 0: these tests compare the disk between runs, and each host's
            # agent would reconcile on its own meanwhile (its lock pid, its caches)
            "vars": {"service_user": self.user.name, "service_uid": self.user.uid,
                     "service_gid": self.user.gid, "hermes_bin": str(s6env.FAKE_GATEWAY),
                     "watch_interval": 0,
                     **common, **self.all_vars},
            "hosts": {name: {"ansible_port": h.ssh.port, "hermes_home": str(h.home),
                             "scandir": str(h.sandbox.scandir),
                             "s6_bin_dir": str(h.sandbox.cmd_dir), **h.host_vars}
                      for name, h in self.hosts.items()},
            "children": {"hermes": {"hosts": {name: None for name in self.hosts}}},
        }}
        self.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        gv = self.inventory.parent / "group_vars"
        gv.mkdir(exist_ok=True)
        for group, values in self.group_vars.items():
            (gv / f"{group}.yml").write_text(yaml.safe_dump(values))

    def host_vars_file(self, host: str, values: dict) -> None:
        """``host_vars/<host>.yml`` next to the inventory (only Ansible reads it)."""
        hv = self.inventory.parent / "host_vars"
        hv.mkdir(exist_ok=True)
        (hv / f"{host}.yml").write_text(yaml.safe_dump(values))

    def settings_file(self, host: str) -> Path:
        """Where the role keeps ``host``'s settings in these tests."""
        return self.shipped / host / "inventory.yml"

    def profile(self, host: str, name: str, state: str | None = "running") -> Path:
        h = self.hosts[host]
        d = s6env.make_profile(h.home, name, None if state is None else {"desired_state": state})
        s6env.own(h.sandbox, h.home)
        return d

    def run(self, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.ssh.env(REPO), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.ssh.dir)

    def playbook(self, *flags: str, extra: dict | None = None,
                 book: Path = SITE) -> subprocess.CompletedProcess:
        extra = {"gateways_executable": str(HERMES_TASKS),
                 # one machine plays every host: each keeps its settings in its own place
                 "gateways_settings_file": f"{self.shipped}/{{{{ inventory_hostname }}}}/inventory.yml",
                 **(extra or {})}
        return self.run(str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory.parent),
                        "-e", json.dumps(extra), str(book), *flags)

    def adhoc(self, host: str, module: str, args: dict, *flags: str) -> tuple[str, dict]:
        """One module on one host (``ansible HOST -m MODULE``): its status word and result."""
        res = self.run(str(VENV_BIN / "ansible"), host, "-i", str(self.inventory), "-m", module,
                       "-a", json.dumps({"executable": str(HERMES_TASKS), **args}), *flags)
        m = ADHOC.search(res.stdout)
        assert m and m.group(1) == host, res.stdout + res.stderr
        out = json.JSONDecoder().raw_decode(res.stdout[m.end():])[0]
        out["_stdout"] = res.stdout + res.stderr  # a diff is printed, not returned
        return m.group(2), out

    def stop(self) -> None:
        for h in self.hosts.values():
            h.stop()
        self.ssh.stop()


@pytest.fixture
def make_fleet():
    made: list[Fleet] = []

    def make(names, shared=None):
        made.append(Fleet(names, shared))
        return made[-1]

    yield make
    for f in made:
        f.stop()


def recap(res: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    found = {m.group(1): dict(zip(COUNTERS, map(int, m.groups()[1:])))
             for m in RECAP.finditer(res.stdout)}
    assert found, res.stdout + res.stderr
    return found


def task_results(res: subprocess.CompletedProcess, task: str) -> dict[str, str]:
    """``{host: ok|changed|fatal|…}`` for one task of a playbook's output."""
    return {host: word for host, (word, _) in task_docs(res, task).items()}


def task_docs(res: subprocess.CompletedProcess, task: str) -> dict[str, tuple[str, dict]]:
    """``{host: (word, result)}`` for one task; the result is {} unless run with ``-v``."""
    section = res.stdout.split(f"TASK [{task}]", 1)[1].split("\nTASK [", 1)[0]
    section = section.split("PLAY RECAP", 1)[0]
    found = {}
    for m in TASK_LINE.finditer(section):
        rest = section[m.end():]
        doc = {}
        if rest.startswith(" => {") or rest.startswith(": FAILED! => {"):
            doc = json.JSONDecoder().raw_decode(rest[rest.index("{"):])[0]
        found[m.group(2)] = (m.group(1), doc)
    return found


RECONCILE = "hermes.tasks.gateways : Reconcile the gateways"


def reconcile_counts(res: subprocess.CompletedProcess) -> dict[str, tuple]:
    """Per host: (changed rows, failed rows, settings file changed), from ``-v`` output."""
    return {host: (doc["stats"]["changed"], doc["stats"]["failed"], doc["inventory_saved"])
            for host, (_, doc) in task_docs(res, RECONCILE).items()}


def saved_settings(fleet: Fleet, host: str):
    """The settings hermes-tasks reads from the file the role left on ``host``."""
    sys.path.insert(0, str(REPO))
    from hermes_tasks import inventory

    return inventory.load(str(fleet.settings_file(host)), (), environ={})


def gateways_up(fleet: Fleet, expected: dict[str, list[str]]) -> None:
    """Wait until each host's listed profiles have a live stand-in gateway."""
    for host, profiles in expected.items():
        h = fleet.hosts[host]
        for p in profiles:
            s6env.wait_up(h.slot(p), 15)
            s6env.wait_for(lambda h=h, p=p: standin.live_pids(h.home, p), 15,
                           what=f"{p} running on {host}")


def snapshot(fleet: Fleet) -> dict:
    """Every file and directory the tool writes, with mode and content, plus live gateways.

    Left out: what s6 and the gateways themselves write while running (``supervise/``,
    ``event/``, logs, the stand-in's event files).
    """
    out: dict = {}
    skip_dirs = {"supervise", "event", ".standin", "logs", ".s6-svscan"}
    roots = {str(h.sandbox.scandir) for h in fleet.hosts.values()} | \
        {str(h.home) for h in fleet.hosts.values()} | {str(fleet.shipped)}
    for root in sorted(roots):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in skip_dirs]
            for n in dirs + files:
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None
                out[p] = (st.st_mode, st.st_uid, data)
    for host, h in fleet.hosts.items():
        log = h.home / "logs" / "container-boot.log"
        out[f"{host}:bootlog"] = log.read_bytes() if log.exists() else None
        for slot in h.slots():
            out[f"{host}:{slot}:pid"] = s6env.svstat(h.sandbox.scandir / slot)["pid"]
    return out


def supervising_scandir(pid: int) -> str | None:
    """The scandir whose s6-supervise is an ancestor of ``pid``."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.index("(") + 1:stat.rindex(")")] == "s6-supervise":
                return os.path.dirname(os.readlink(f"/proc/{pid}/cwd"))
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            return None
    return None


# ----------------------------------------------------------------------------- documentation


@pytest.mark.parametrize("module", ["reconcile", "gateway", "profile", "gateway_info"])
def test_ansible_doc_renders_each_module(module):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "LC_ALL": "C.UTF-8", "ANSIBLE_COLLECTIONS_PATH": str(REPO), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "module", f"hermes.tasks.{module}"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert f"hermes.tasks.{module}" in text
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in text, f"{section} missing from ansible-doc {module}"
    for option in ("host", "inventory", "inventory_content", "settings", "executable"):
        assert re.search(rf"^-?\s*{option}\s", text, re.M), f"{module}: option {option} undocumented"
    assert "check_mode" in text and "diff_mode" in text
    assert "REQUIREMENTS" in text.upper() and "hermes-tasks" in text
    assert "[WARNING]" not in res.stderr, res.stderr


def test_ansible_doc_lists_the_collection():
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "LC_ALL": "C.UTF-8", "ANSIBLE_COLLECTIONS_PATH": str(REPO), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([str(VENV_BIN / "ansible-doc"), "-l", "hermes.tasks"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert sorted(re.findall(r"^(hermes\.tasks\.\w+)", res.stdout, re.M)) == [
        "hermes.tasks.gateway", "hermes.tasks.gateway_info", "hermes.tasks.profile",
        "hermes.tasks.reconcile"]


# ----------------------------------------------------------------------------- the playbook


def three_hosts(make_fleet) -> Fleet:
    """alpha and beta share one hermes_home (alpha: default + al*, beta: b*); gamma has its own."""
    fleet = make_fleet(["alpha", "beta", "gamma"], shared={"beta": "alpha"})
    fleet.hosts["alpha"].host_vars = {"gateway_profiles": ["default", "al*"]}
    fleet.hosts["beta"].host_vars = {"gateway_profiles": ["b*"]}
    fleet.hosts["gamma"].host_vars = {"gateway_profiles": ["*"]}
    for name in ("default", "alice", "bob"):
        fleet.profile("alpha", name)
    fleet.profile("gamma", "default", "stopped")
    fleet.profile("gamma", "carol")
    fleet.write_inventory()
    return fleet


def test_playbook_converges_then_changes_nothing_and_check_diff_writes_nothing(make_fleet):
    fleet = three_hosts(make_fleet)
    alpha, beta, gamma = (fleet.hosts[n] for n in ("alpha", "beta", "gamma"))

    first = fleet.playbook()
    assert first.returncode == 0, first.stdout + first.stderr
    assert {h: c["changed"] > 0 and c["failed"] == 0 for h, c in recap(first).items()} == \
        {"alpha": True, "beta": True, "gamma": True}
    assert task_results(first, RECONCILE) == {"alpha": "changed", "beta": "changed",
                                                "gamma": "changed"}
    # Each host picked its own entry: placement and paths are per host.
    assert alpha.slots() == ["gateway-alice", "gateway-default"]
    assert beta.slots() == ["gateway-bob"]
    assert gamma.slots() == ["gateway-carol", "gateway-default"]
    gateways_up(fleet, {"alpha": ["default", "alice"], "beta": ["bob"], "gamma": ["carol"]})
    assert s6env.svstat(gamma.slot("default"))["up"] is False  # desired stopped
    shipped = fleet.settings_file("gamma")
    assert shipped.stat().st_mode & 0o777 == 0o600
    # only gamma's own settings, resolved: no other host, no connection variables
    assert list(yaml.safe_load(shipped.read_text())["all"]["hosts"]) == ["gamma"]
    assert "ansible_" not in shipped.read_text() and "alpha" not in shipped.read_text()
    assert saved_settings(fleet, "gamma").host_id == "gamma"

    second = fleet.playbook()
    assert second.returncode == 0, second.stdout + second.stderr
    assert {h: (c["changed"], c["failed"]) for h, c in recap(second).items()} == \
        {"alpha": (0, 0), "beta": (0, 0), "gamma": (0, 0)}

    # Something to do: a new profile on the shared volume (alpha's) and carol no longer
    # placed on gamma (an inventory edit not shipped yet: check mode must still see it).
    fleet.profile("alpha", "albert")
    gamma.host_vars = {"gateway_profiles": ["default"]}
    fleet.write_inventory()
    before = snapshot(fleet)
    check = fleet.playbook("--check", "--diff", "-v")
    assert check.returncode == 0, check.stdout + check.stderr
    assert snapshot(fleet) == before, "--check --diff changed something on disk or in s6"
    # alpha: albert's new slot; gamma: carol's slot retired and its own settings file (no
    # other host's: each keeps only what Ansible resolved for it)
    assert reconcile_counts(check) == {"alpha": (1, 0, False), "beta": (0, 0, False),
                                       "gamma": (1, 0, True)}, check.stdout
    section = check.stdout.split(f"TASK [{RECONCILE}]", 1)[1]
    assert "gateway-albert/run" in section, section  # the would-be slot file's diff
    assert "gateway_profiles" not in section  # the settings file's text is never shown
    assert "(content not shown)\n" in section  # the note ends its line
    assert "DRY RUN" not in check.stderr

    applied = fleet.playbook("--diff", "-v")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert reconcile_counts(applied) == reconcile_counts(check)  # check says what a run does
    assert saved_settings(fleet, "gamma").gateway_profiles == ("default",)
    assert alpha.slots() == ["gateway-albert", "gateway-alice", "gateway-default"]
    assert gamma.slots() == ["gateway-default"]
    gateways_up(fleet, {"alpha": ["albert"]})
    s6env.wait_for(lambda: not standin.live_pids(gamma.home, "carol"), 15, what="carol stopped")

    again = fleet.playbook("--check")
    assert {h: (c["changed"], c["failed"]) for h, c in recap(again).items()} == \
        {"alpha": (0, 0), "beta": (0, 0), "gamma": (0, 0)}


def test_a_host_without_s6_tools_fails_alone(make_fleet):
    fleet = make_fleet(["alpha", "beta", "gamma"], shared={"beta": "alpha"})
    empty = fleet.hosts["gamma"].sandbox.root / "no-s6"
    empty.mkdir()
    fleet.hosts["alpha"].host_vars = {"gateway_profiles": ["default"]}
    fleet.hosts["beta"].host_vars = {"gateway_profiles": ["alice"]}
    fleet.hosts["gamma"].host_vars = {"s6_bin_dir": str(empty)}
    for name in ("default", "alice"):
        fleet.profile("alpha", name)
    fleet.profile("gamma", "carol")
    fleet.write_inventory()

    res = fleet.playbook()
    assert res.returncode == 2, res.stdout + res.stderr  # 2: some host failed
    counts = recap(res)
    assert (counts["gamma"]["failed"], counts["alpha"]["failed"], counts["beta"]["failed"]) == \
        (1, 0, 0), res.stdout
    fatal = res.stdout.split("fatal: [gamma]: FAILED! => ", 1)[1]
    msg = json.JSONDecoder().raw_decode(fatal)[0]["msg"]
    assert str(empty) in msg or "s6" in msg, msg
    assert fleet.hosts["alpha"].slots() == ["gateway-default"]
    assert fleet.hosts["beta"].slots() == ["gateway-alice"]
    gateways_up(fleet, {"alpha": ["default"], "beta": ["alice"]})
    assert standin.live_pids(fleet.hosts["gamma"].home, "carol") == []


def test_moving_a_profile_between_hosts_never_runs_it_twice(make_fleet):
    fleet = make_fleet(["alpha", "beta", "gamma"], shared={"beta": "alpha"})
    alpha, beta = fleet.hosts["alpha"], fleet.hosts["beta"]
    alpha.host_vars = {"gateway_profiles": ["default", "alice"]}
    beta.host_vars = {"gateway_profiles": ["bob"]}
    for name in ("default", "alice", "bob"):
        fleet.profile("alpha", name)
    fleet.profile("gamma", "default")
    fleet.write_inventory()
    first = fleet.playbook()
    assert first.returncode == 0, first.stdout + first.stderr
    gateways_up(fleet, {"alpha": ["alice"], "beta": ["bob"]})
    [old] = standin.live_pids(alpha.home, "alice")
    assert supervising_scandir(old) == str(alpha.sandbox.scandir)

    # Move alice from alpha to beta: an inventory edit and one playbook run.
    alpha.host_vars = {"gateway_profiles": ["default"]}
    beta.host_vars = {"gateway_profiles": ["bob", "alice"]}
    fleet.write_inventory()
    samples: list[list[int]] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(standin.live_pids(alpha.home, "alice"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        moved = fleet.playbook()
        # keep sampling until the new owner runs it (the handover may finish after the play)
        s6env.wait_for(lambda: standin.live_pids(alpha.home, "alice") not in ([], [old]), 20,
                       what="alice running again after the move")
        time.sleep(0.5)
    finally:
        done.set()
        sampler.join()
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert len(samples) > 20, "too few samples to show anything"
    assert max(map(len, samples)) <= 1, [s for s in samples if len(s) > 1][:5]
    assert alpha.slots() == ["gateway-default"]
    assert beta.slots() == ["gateway-alice", "gateway-bob"]
    [new] = standin.live_pids(alpha.home, "alice")
    assert supervising_scandir(new) == str(beta.sandbox.scandir)


# ----------------------------------------------------------------------------- resolved settings


def test_role_settings_are_what_ansible_resolved_from_group_vars_host_vars_and_extra_vars(make_fleet):
    """Two hosts sharing a volume: placement, max_slots and extra_env come from group_vars,
    host_vars and -e, none of which is in the inventory file hermes-tasks could read."""
    fleet = make_fleet(["alpha", "beta"], shared={"beta": "alpha"})
    alpha, beta = fleet.hosts["alpha"], fleet.hosts["beta"]
    for name in ("default", "alice", "bob", "carol"):
        fleet.profile("alpha", name)
    fleet.group_vars["hermes"] = {"shared_volume": True, "max_slots": 5,
                                  "extra_env": {"HT_FROM": "group",
                                                "HT_API_TOKEN": "s3cr3t-token-value"}}
    fleet.write_inventory()
    fleet.host_vars_file("alpha", {"gateway_profiles": ["default", "alice"]})
    fleet.host_vars_file("beta", {"gateway_profiles": ["bob"], "extra_env": {"HT_FROM": "beta"}})
    extra = {"max_slots": 7}  # -e wins over group_vars on every host

    before = snapshot(fleet)
    check = fleet.playbook("--check", "-v", extra=extra)
    assert check.returncode == 0, check.stdout + check.stderr
    assert snapshot(fleet) == before, "check mode changed something"
    # alpha: default + alice published, the registrar, the settings file; beta: bob, the
    # registrar, the settings file (registrar rows are in `registrar`, not in `stats`)
    assert reconcile_counts(check) == {"alpha": (2, 0, True), "beta": (1, 0, True)}, check.stdout
    assert {h: c["changed"] for h, c in recap(check).items()} == {"alpha": 1, "beta": 1}

    run = fleet.playbook("-v", extra=extra)
    assert run.returncode == 0, run.stdout + run.stderr
    assert reconcile_counts(run) == reconcile_counts(check)
    assert alpha.slots() == ["gateway-alice", "gateway-default"]
    assert beta.slots() == ["gateway-bob"]
    a, b = saved_settings(fleet, "alpha"), saved_settings(fleet, "beta")
    assert (a.host_id, a.gateway_profiles, a.max_slots, dict(a.extra_env), a.shared_volume) == \
        ("alpha", ("default", "alice"), 7,
         {"HT_FROM": "group", "HT_API_TOKEN": "s3cr3t-token-value"}, True)
    assert (b.host_id, b.gateway_profiles, b.max_slots, dict(b.extra_env), b.shared_volume) == \
        ("beta", ("bob",), 7, {"HT_FROM": "beta"}, True)
    # the secret reached the host, and no -v output on the controller
    assert "s3cr3t-token-value" not in check.stdout + run.stdout + check.stderr + run.stderr
    assert "HT_FROM=group" in (alpha.slot("alice") / "run").read_text().replace("'", "")
    assert "HT_FROM=beta" in (beta.slot("bob") / "run").read_text().replace("'", "")
    gateways_up(fleet, {"alpha": ["default", "alice"], "beta": ["bob"]})
    # no host lists the fleet's other profiles as skipped rows (they are only counted)
    for _host, (_, doc) in task_docs(run, RECONCILE).items():
        assert {r["profile"] for r in doc["results"]} <= {"default", "alice", "bob"}, doc
        assert doc["stats"]["skipped"] >= 2

    for flags in (("--check",), ()):
        again = fleet.playbook(*flags, extra=extra)
        assert {h: (c["changed"], c["failed"]) for h, c in recap(again).items()} == \
            {"alpha": (0, 0), "beta": (0, 0)}, (flags, again.stdout)


COLLECTION = REPO / "ansible_collections" / "hermes" / "tasks"


def test_collection_integration_target_runs_on_a_two_host_fleet(make_fleet):
    """`ansible-test integration` runs the collection's own target (check = run, the resolved
    slots, then changed=0) against two loopback sshd hosts sharing one volume."""
    fleet = make_fleet(["alpha", "beta"], shared={"beta": "alpha"})
    alpha, beta = fleet.hosts["alpha"], fleet.hosts["beta"]
    for name in ("default", "alice", "bob"):
        fleet.profile("alpha", name)
    fleet.group_vars["hermes"] = {"shared_volume": True, "extra_env": {"HT_FROM": "group"}}
    # ansible-test passes no ANSIBLE_* of ours: the inventory carries what the run needs
    fleet.all_vars = {
        "gateways_executable": str(HERMES_TASKS),
        "gateways_settings_file": f"{fleet.shipped}/{{{{ inventory_hostname }}}}/inventory.yml",
        "ansible_ssh_args": "-o ControlMaster=no", "ansible_pipelining": True}
    alpha.host_vars = {"expected_slots": ["default", "alice"]}
    beta.host_vars = {"expected_slots": ["bob"]}
    fleet.write_inventory()
    fleet.host_vars_file("alpha", {"gateway_profiles": ["default", "al*"]})
    fleet.host_vars_file("beta", {"gateway_profiles": ["bob"]})

    # ansible-test passes the target its own vars file, not our environment: the fleet's
    # inventory is named there (a git-ignored file, removed afterwards)
    config = COLLECTION / "tests" / "integration" / "integration_config.yml"
    config.write_text(f"fleet_inventory: {fleet.inventory.parent}\n")
    env = {**fleet.ssh.env(REPO), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    try:
        res = subprocess.run(
            [str(VENV_BIN / "ansible-test"), "integration", "--color", "no", "--local",
             "--python", f"{sys.version_info.major}.{sys.version_info.minor}",
             "--allow-unsupported", "gateways_fleet"],
            cwd=COLLECTION, env=env, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL)
    finally:
        config.unlink()
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert "Running gateways_fleet integration test" in res.stdout + res.stderr
    assert alpha.slots() == ["gateway-alice", "gateway-default"]
    assert beta.slots() == ["gateway-bob"]
    gateways_up(fleet, {"alpha": ["default", "alice"], "beta": ["bob"]})


# ----------------------------------------------------------------------------- the modules


def test_profile_and_gateway_modules_report_changed_truthfully(make_fleet):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    fleet.profile("alpha", "default", "stopped")
    fleet.write_inventory()
    inv = {"inventory": str(fleet.inventory)}
    erin = alpha.home / "profiles" / "erin"

    word, out = fleet.adhoc("alpha", "hermes.tasks.profile", {"name": "erin", **inv}, "--check")
    assert (word, out["changed"]) == ("CHANGED", True), out
    assert not erin.exists() and not alpha.slot("erin").exists()
    word, out = fleet.adhoc("alpha", "hermes.tasks.profile", {"name": "erin", **inv})
    assert (word, out["changed"], out["name"], out["state"]) == ("CHANGED", True, "erin", "present")
    assert (erin / "SOUL.md").is_file() and (alpha.slot("erin") / "down").exists()
    assert out["commands"][0][-2:] == ["--host", "alpha"]  # host defaults to inventory_hostname
    word, out = fleet.adhoc("alpha", "hermes.tasks.profile", {"name": "erin", **inv})
    assert (word, out["changed"], out["stats"]["ok"]) == ("SUCCESS", False, 1), out

    gw = {"name": "erin", **inv}
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**gw, "state": "started"},
                            "--check", "--diff")
    assert (word, out["changed"]) == ("CHANGED", True), out
    assert "--check" in out["commands"][-1]  # the tool's own check mode, no prediction here
    assert re.search(r"^gateway-erin: would .*bring up\n", out["_stdout"], re.M), out["_stdout"]
    s6env.wait_status_file(alpha.slot("erin"))
    assert s6env.svstat(alpha.slot("erin"))["up"] is False  # check mode started nothing
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway",
                            {**gw, "state": "started", "wait": True, "timeout": 20}, "--diff")
    assert (word, out["changed"], out["name"], out["state"]) == ("CHANGED", True, "erin", "started")
    assert out["status"]["up"] is True and out["status"]["desired_state"] == "running", out
    assert '-    "up": false' in out["_stdout"] and '+    "up": true' in out["_stdout"]
    assert standin.live_pids(alpha.home, "erin")
    for flags in (("--check",), ()):
        # `profile:` is an alias of `name:`
        word, out = fleet.adhoc("alpha", "hermes.tasks.gateway",
                                {"profile": "erin", **inv, "state": "started"}, *flags)
        assert (word, out["changed"]) == ("SUCCESS", False), (flags, out)
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**gw, "state": "stopped",
                                                              "wait": True})
    assert (word, out["changed"], out["status"]["up"]) == ("CHANGED", True, False), out
    assert standin.live_pids(alpha.home, "erin") == []
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**gw, "state": "stopped"}, "--check")
    assert (word, out["changed"]) == ("SUCCESS", False), out
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**gw, "state": "restarted"})
    assert (word, out["changed"]) == ("CHANGED", True), out
    s6env.wait_for(lambda: standin.live_pids(alpha.home, "erin"), 15, what="erin restarted")

    # One error, said once (not once from stderr and once from the JSON report)
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {"name": "ghost", **inv})
    assert word == "FAILED!" and out["msg"].count("no profile 'ghost'") == 1, out
    assert "no profile 'ghost'" not in json.dumps({k: v for k, v in out.items()
                                                   if k not in ("msg", "_stdout")}), out

    word, out = fleet.adhoc("alpha", "hermes.tasks.profile",
                            {"name": "erin", "state": "absent", **inv}, "--check")
    assert (word, out["changed"]) == ("CHANGED", True) and erin.exists(), out
    word, out = fleet.adhoc("alpha", "hermes.tasks.profile", {"name": "erin", "state": "absent", **inv})
    assert (word, out["changed"]) == ("CHANGED", True), out
    assert not erin.exists() and not alpha.slot("erin").exists()
    assert list((alpha.home / ".trash" / "profiles").iterdir())
    word, out = fleet.adhoc("alpha", "hermes.tasks.profile", {"name": "erin", "state": "absent", **inv})
    assert (word, out["changed"]) == ("SUCCESS", False), out


def sequence(fleet, host, module, args, flags=((), ("--check",))):
    """(word, changed) of each run in order; flags per run (cycled)."""
    out = []
    for f in flags:
        word, doc = fleet.adhoc(host, module, args, *f)
        out.append((word, doc.get("changed"), doc.get("msg", "")))
    return out


def test_registrar_only_host_and_stopped_without_a_slot_report_changed_truthfully(make_fleet):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    fleet.profile("alpha", "default")
    fleet.profile("alpha", "alice", "running")
    fleet.write_inventory()
    inv = {"inventory": str(fleet.inventory)}
    none_here = {**inv, "settings": {"gateway_profiles": []}}

    # A host that runs no gateway still gets its registrar slot: that is a change, once.
    runs = sequence(fleet, "alpha", "hermes.tasks.reconcile", none_here,
                    [("--check",), (), ("--check",), ()])
    assert [r[:2] for r in runs] == [("CHANGED", True), ("CHANGED", True),
                                     ("SUCCESS", False), ("SUCCESS", False)], runs
    assert alpha.slots() == [] and (alpha.sandbox.scandir / "hermes-tasks-registrar").is_dir()

    # stopped on a placed profile with no slot yet: records stopped (a change), then ok
    runs = sequence(fleet, "alpha", "hermes.tasks.gateway", {**inv, "name": "alice",
                                                             "state": "stopped"},
                    [("--check",), (), ("--check",), (), ("--check",)])
    assert [r[:2] for r in runs] == [("CHANGED", True), ("CHANGED", True), ("SUCCESS", False),
                                     ("SUCCESS", False), ("SUCCESS", False)], runs
    assert json.loads((alpha.home / "profiles" / "alice" / "gateway_state.json").read_text())[
        "desired_state"] == "stopped"


def test_a_start_that_cannot_happen_here_fails_with_the_reason(make_fleet):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    fleet.profile("alpha", "default")
    fleet.profile("alpha", "alice", "stopped")
    alpha.host_vars = {"gateway_profiles": ["default"]}
    fleet.write_inventory()
    inv = {"inventory": str(fleet.inventory)}

    for flags in (("--check",), ()):
        word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**inv, "name": "alice"}, *flags)
        assert word == "FAILED!" and "not placed on " in out["msg"], (flags, out)
        assert out["msg"].count("not placed on ") == 1 and out["changed"] is False, out
    assert alpha.slots() == []

    carl = alpha.home / "profiles" / "carl"
    for flags in (("--check",), ()):
        word, out = fleet.adhoc("alpha", "hermes.tasks.profile",
                                {**inv, "name": "carl", "start": True}, *flags)
        # the profile is (would be) created, and that is said; the start is not: failed
        assert (word, out["changed"]) == ("FAILED!", True), (flags, out)
        assert "gateway not started" in out["msg"] and "not placed on " in out["msg"], out
    assert carl.is_dir() and alpha.slots() == []


def test_a_gateway_that_exits_78_fails_the_task_once_the_tool_saw_it(make_fleet):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    fleet.profile("alpha", "default", "stopped")
    fleet.profile("alpha", "alice", "stopped")
    standin.write_behaviour(alpha.home, profiles={"alice": {"exit_at_start": 78,
                                                            "exit_reason": "bad config"}})
    s6env.own(alpha.sandbox, alpha.home)
    fleet.write_inventory()
    inv = {"inventory": str(fleet.inventory)}
    gw = {**inv, "name": "alice", "state": "started"}

    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", gw, "--check")
    assert (word, out["changed"]) == ("CHANGED", True), out
    # Without wait the start is a change; if the tool already saw the exit, a failure.
    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", gw)
    assert word in ("CHANGED", "FAILED!"), out
    if word == "FAILED!":
        assert "exited 78: bad config" in out["msg"], out

    def exited():
        _, info = fleet.adhoc("alpha", "hermes.tasks.gateway_info", {**inv, "name": "alice"})
        g = info["gateways"][0]
        return not g["up"] and g["exit_code"] == 78 and g
    seen = s6env.wait_for(exited, 30, interval=0.5, what="alice's exit 78 in gateway.status")
    assert seen["reason"] == "bad config"

    word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", gw, "--check")
    assert (word, out["changed"]) == ("CHANGED", True), out
    assert "exited 78: bad config" in out["_stdout"]  # the warning says what a run will meet
    for _ in range(2):  # every later run fails, none reports a mere change
        word, out = fleet.adhoc("alpha", "hermes.tasks.gateway", {**gw, "timeout": 20})
        assert word == "FAILED!" and "exited 78: bad config" in out["msg"], out
        assert out["msg"].count("exited 78") == 1, out
        assert out["msg"].count("gateway-alice") == 1, out


def test_module_defaults_with_the_action_group_and_gateway_info(make_fleet, tmp_path):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    fleet.profile("alpha", "default", "stopped")
    fleet.profile("alpha", "alice", "running")
    fleet.write_inventory()
    book = fleet.ssh.dir / "defaults.yml"
    book.write_text(yaml.safe_dump([{
        "name": "module_defaults for the whole collection",
        "hosts": "all", "gather_facts": False,
        "module_defaults": {"group/hermes.tasks.all": {
            "executable": str(HERMES_TASKS), "inventory": str(fleet.inventory)}},
        "tasks": [
            {"name": "Start alice", "hermes.tasks.gateway": {"name": "alice", "wait": True,
                                                             "timeout": 20}},
            {"name": "Read the gateways", "hermes.tasks.gateway_info": {},
             "register": "info"},
            {"name": "Show", "ansible.builtin.debug": {"var": "info.gateways"}},
        ]}], sort_keys=False))
    res = fleet.run(str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(book), "-v")
    assert res.returncode == 0, res.stdout + res.stderr
    assert task_results(res, "Start alice") == {"alpha": "changed"}
    word, doc = task_docs(res, "Read the gateways")["alpha"]
    assert word == "ok" and doc["changed"] is False and doc["host"] == "alpha", doc
    by = {g["profile"]: g for g in doc["gateways"]}
    assert by["alice"]["ready"] is True and by["alice"]["up"] is True, by
    assert by["alice"]["api_server_port"] and by["alice"]["webhook_port"], by
    assert standin.live_pids(alpha.home, "alice")


def test_reconcile_module_takes_settings_and_fails_on_a_failed_row(make_fleet):
    fleet = make_fleet(["alpha"])
    alpha = fleet.hosts["alpha"]
    for name in ("default", "alice", "bob"):
        fleet.profile("alpha", name)
    alpha.host_vars = {"extra_env": {"HT_API_TOKEN": "s3cr3t-token-value"}}
    fleet.write_inventory()
    inv = {"inventory_content": fleet.inventory.read_text()}

    # settings reach hermes-tasks with their YAML types (a list here)
    word, out = fleet.adhoc("alpha", "hermes.tasks.reconcile",
                            {**inv, "settings": {"gateway_profiles": ["al*"]}, "wait": True},
                            "-vvv")
    assert (word, out["changed"]) == ("CHANGED", True), out
    assert alpha.slots() == ["gateway-alice"]
    assert standin.live_pids(alpha.home, "alice")
    rows = {r["profile"]: (r["action"], r["result"]) for r in out["results"]}
    assert rows == {"alice": ("started", "changed")}, rows  # bob, default: only counted
    assert out["stats"]["changed"] == 1 and out["stats"]["skipped"] == 2
    # the inventory text may hold secrets (extra_env): never echoed back, even with -vvv
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in json.dumps(out["invocation"])
    assert "s3cr3t-token-value" not in out["_stdout"]

    # the old option name still works, with a deprecation warning
    word, out = fleet.adhoc("alpha", "hermes.tasks.reconcile",
                            {**inv, "vars": {"gateway_profiles": ["al*"]}})
    assert (word, out["changed"]) == ("SUCCESS", False), out
    assert "vars" in out["_stdout"] and "DEPRECATION" in out["_stdout"], out["_stdout"]
    assert out["commands"][0][-2:] == ["--host", "alpha"]

    # host "" lets hermes-tasks choose (here: the only entry); secret-ish --var values masked
    word, out = fleet.adhoc("alpha", "hermes.tasks.reconcile",
                            {**inv, "host": "", "settings": {"gateway_profiles": ["al*"],
                                                             "extra_env": {"HT_X": "visible-or-not"}}})
    assert word == "CHANGED" and "--host" not in out["commands"][0], out  # run scripts changed
    assert "extra_env=********" in out["commands"][0] and "visible-or-not" not in out["_stdout"]

    # No s6 tools where the inventory says: the task fails, and so does the module.
    broken = alpha.sandbox.root / "no-s6"
    broken.mkdir()
    word, out = fleet.adhoc("alpha", "hermes.tasks.reconcile",
                            {**inv, "settings": {"s6_bin_dir": str(broken)}})
    assert word == "FAILED!" and out["msg"], out
    assert "Traceback" not in json.dumps(out)
    assert out["msg"].count("preflight") == 1, out["msg"]


def test_the_role_knows_every_setting_hermes_tasks_knows():
    sys.path.insert(0, str(REPO))
    from hermes_tasks import inventory

    role = REPO / "ansible_collections" / "hermes" / "tasks" / "roles" / "gateways"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert sorted(defaults["gateways_setting_names"]) == sorted(inventory.KNOWN)
    assert options["gateways_setting_names"]["default"] == defaults["gateways_setting_names"]
    assert sorted(options) == sorted(defaults)  # every knob documented, every documented knob set
    for key, value in defaults.items():
        assert options[key].get("default") == value, key


def test_shipped_example_inventory_is_one_both_tools_read():
    example = REPO / "ansible" / "inventory.example.yml"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8"}
    listed = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(example), "--list"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    hosts = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert len(hosts) >= 3
    sys.path.insert(0, str(REPO))
    from hermes_tasks import inventory

    placed = {}
    for name in hosts:
        cfg = inventory.load(str(example), (), host=name)
        assert cfg.host_id == name
        placed[name] = list(cfg.gateway_profiles)
    assert [] in placed.values()  # the example shows a host that runs no gateway
    assert shutil.which("ansible-playbook", path=str(VENV_BIN))


def test_sdist_carries_the_collection_and_the_wheel_only_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "-q", "--sdist", "--wheel", "-o", str(tmp_path),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    import tarfile
    import zipfile

    [sdist] = tmp_path.glob("hermes_tasks-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for needed in ("ansible/site.yml", "ansible/inventory.example.yml",
                   "ansible_collections/hermes/tasks/galaxy.yml",
                   "ansible_collections/hermes/tasks/plugins/modules/reconcile.py",
                   "tests/test_ansible_ssh.py", "tests/sshenv.py", "hermes_tasks/cli.py"):
        assert needed in names, needed
    [wheel] = tmp_path.glob("hermes_tasks-*.whl")
    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"hermes_tasks", next(t for t in tops if t.endswith(".dist-info"))}


def test_fleet_bench_section_and_the_main_bench_keep_each_other(tmp_path):
    import importlib.util

    loaded = {}
    for name in ("fleet", "bench"):
        spec = importlib.util.spec_from_file_location(f"hermes_bench_{name}", REPO / "bench" / f"{name}.py")
        loaded[name] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = loaded[name]
        spec.loader.exec_module(loaded[name])
    fleet, bench = loaded["fleet"], loaded["bench"]
    report = tmp_path / "RESULTS.md"
    report.write_text("# bench\n\n| N | ms |\n| 1 | 5 |\n\n## Targets\n\nall pass\n")
    fleet.replace_section(report, f"{fleet.SECTION}\n\nfirst\n")
    fleet.replace_section(report, f"{fleet.SECTION}\n\nsecond\n")
    text = report.read_text()
    assert text.startswith("# bench\n\n| N | ms |\n| 1 | 5 |\n\n## Targets\n\nall pass\n")
    assert text.count(fleet.SECTION) == 1 and "second" in text and "first" not in text
    # bench.py rewrites everything above and keeps the Fleet section at the end
    assert bench.kept_sections(report) == f"\n{fleet.SECTION}\n\nsecond\n"


def test_reconcile_refuses_a_scandir_whose_supervisor_it_could_not_tell(sandbox, supervisor):
    """s6_bin_dir without the s6 tools while s6-svscan runs: the engine's preflight, exit 1,
    one line, nothing written (check mode too); without a supervisor --check still plans."""
    s6env.make_profile(sandbox.home, "default", {"desired_state": "running"})
    empty = sandbox.root / "no-s6"
    empty.mkdir()
    def reconcile(*flags):  # the last --var wins: after the sandbox's own
        return s6env.run_tasks(sandbox, None, argv=[
            "python", "-m", "hermes_tasks", "reconcile", *flags, *s6env.inventory_args(sandbox),
            "--var", f"s6_bin_dir={empty}"])

    for flags in (["--check"], []):
        res = reconcile(*flags)
        assert res.returncode == 1, res.stdout + res.stderr
        [line] = res.stderr.splitlines()
        assert line.startswith("hermes-tasks: error: preflight: s6_bin_dir") and \
            "with-contenv" in line and "s6-svscanctl" in line, line
        assert os.listdir(sandbox.scandir) == [".s6-svscan"], flags
    supervisor.stop()
    res = reconcile("--check")
    assert res.returncode == 0 and "gateway-default" in res.stdout, res.stderr
