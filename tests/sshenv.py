"""Real SSH "hosts" on loopback for the Ansible tests: one Debian sshd per host (root only).

Each :class:`SshHost` is an ``/usr/sbin/sshd -D -e -f <config>`` started by PID on its own
127.0.0.1 port, with throwaway host and client keys in a temp dir, key login for root only,
``UsePAM no`` and ``StrictModes no`` (the keys live under /tmp, not in a home directory).
Stopping a host SIGTERMs the listener and every session process it started, by PID.
Ansible's ControlMaster processes for the fleet are found by the fleet's own control-path
directory and stopped by PID too. Nothing is ever signalled by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import s6env

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
AllowUsers root
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
                parent_of[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found += sorted(frontier)
    return found


def _signal_all(pids, sig) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hermes-tasks-test",
                    "-f", str(path)], check=True, capture_output=True)
    return path


@dataclasses.dataclass
class SshHost:
    """One sshd listening on 127.0.0.1:``port``."""

    name: str
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> SshHost:
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t rejected {self.config}: {check.stderr.strip()}")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        s6env.wait_for(self._listening, timeout, interval=0.05,
                       what=f"sshd of {self.name} on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"sshd of {self.name} exited {self.proc.returncode}: "
                               f"{self.log.read_text(errors='replace')}")
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """SIGTERM the listener and its session processes (by PID); wait for the listener."""
        if self.proc is None:
            return
        sessions = children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _signal_all(sessions, signal.SIGTERM)
        self.proc = None


class SshFleet:
    """Several :class:`SshHost`s sharing one client key, in one temp dir.

    ``ssh_vars(host)`` are the Ansible connection variables of a host; ``env()`` the
    environment ``ansible``/``ansible-playbook`` must run with (own control-path dir,
    UTF-8 locale, this repo as the collections path).
    """

    def __init__(self, names: list[str]):
        if os.geteuid() != 0:
            raise RuntimeError("the SSH fleet logs in as root: run the tests as root")
        self.dir = Path(tempfile.mkdtemp(prefix="hermes-tasks-ssh-")).resolve()
        os.chmod(self.dir, 0o700)
        self.control_dir = self.dir / "cp"
        self.control_dir.mkdir(mode=0o700)
        self.client_key = keygen(self.dir / "client_key")
        host_key = keygen(self.dir / "host_key")
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o600)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.hosts: dict[str, SshHost] = {}
        for name in names:
            port = free_port()
            config = self.dir / f"sshd_{name}.conf"
            config.write_text(SSHD_CONFIG.format(port=port, host_key=host_key,
                                                 pid_file=self.dir / f"sshd_{name}.pid",
                                                 authorized_keys=authorized))
            self.hosts[name] = SshHost(name, port, config, self.dir / f"sshd_{name}.log")

    def start(self) -> SshFleet:
        try:
            for host in self.hosts.values():
                host.start()
        except BaseException:
            self.stop()
            raise
        return self

    def ssh_vars(self, name: str, python: str) -> dict:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.hosts[name].port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.client_key),
            "ansible_python_interpreter": python,
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null "
                                       "-o StrictHostKeyChecking=no -o LogLevel=ERROR",
        }

    def env(self, collections_path: Path) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),  # ~/.ansible (tmp, caches) stays inside the fleet dir
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=5s",
            "ANSIBLE_LOCAL_TEMP": str(self.dir / "ansible-local"),
        }

    def stop(self) -> None:
        """Stop every sshd, then the client ControlMasters of this fleet, all by PID."""
        for host in self.hosts.values():
            host.stop()
        masters = [p.pid for p in s6env.processes()
                   if p.comm == "ssh" and any(str(self.control_dir) in a for a in p.cmdline)]
        _signal_all(masters, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while masters and time.monotonic() < deadline:
            masters = [pid for pid in masters if os.path.exists(f"/proc/{pid}")]
            time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshFleet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
