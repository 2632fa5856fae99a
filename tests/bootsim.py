"""A boot of the production image, simulated under a real s6 tree (reference/s6.md §13, §14).

What s6-overlay v3 does when the container starts, step by step, against a sandbox
(tests/s6env.py) standing in for ``/``:

1. **The container environment.** ``/init`` saves the container's variables, one file each, in
   ``/run/s6/container_environment``, **except PATH**, which stage 0 deletes there. Here: the
   ``ENV`` instructions of the repo's own ``Dockerfile`` (paths mapped into the sandbox,
   ``${PATH}`` expanded against the base image's PATH), plus ``HERMES_TASKS_INVENTORY`` naming
   the sandbox inventory (the shipped ``inventory/hosts.yml`` with its paths mapped and the
   image's ``hermes`` account mapped to the sandbox's service user), plus whatever the test
   passes (``docker run -e``).
   **PATH**: stage 2 and the whole supervision tree get ``S6_GLOBAL_PATH`` (default
   ``/command:/usr/bin:/bin``, with ``/command``, ``/usr/bin`` and ``/bin`` added when missing,
   as ``/init`` does), mapped. ``with-contenv`` cannot restore the image's PATH. The gateway is
   found the way the image finds it: ``hermes`` by name, here a ``<root>/opt/hermes-tasks/
   venv/bin/hermes`` link to the stand-in gateway.
2. **Stage 1.** ``s6-svscan`` starts on the (empty) scandir before anything else.
3. **Stage 2, cont-init.** The image's OWN scripts, the very files in ``docker/cont-init.d``,
   are installed into ``<root>/etc/cont-init.d`` (mode 0755, as the Dockerfile's
   ``COPY --chmod=0755`` does) with only container paths rewritten by text replacement, in one
   pass (see :data:`PATH_MAP`): ``/command/`` → the sandbox command dir (real s6 tools and the
   ``with-contenv`` shim), ``/opt/data`` → the sandbox volume, ``/run/service`` → the sandbox
   scandir, ``/opt/hermes-tasks/`` → ``<root>/opt/hermes-tasks/``, where a small generated
   ``venv/bin/hermes-tasks`` runs this checkout's package. The image's service account
   (``10000:10000``) maps to the sandbox's service user. Anything else that still names a
   container path makes the install fail, so the simulation can never touch the real ``/``.
   They run one at a time, in byte order, each with a minimal environment (``env -i PATH=…``;
   ``with-contenv`` brings the container environment back), as root (or as the container's
   user when it runs unprivileged), and every exit code is recorded.
4. **S6_BEHAVIOUR_IF_STAGE2_FAILS**, read from the container environment directory like
   s6-overlay's ``cont-init`` does: 0 (or not a number) nothing; 1 the warning
   ``cont-init: warning: some scripts exited nonzero``; 2 or more the same warning, then s6-rc
   fails, services-up never runs and the container stops (``s6-svscanctl -t``, wait for
   s6-svscan, ``…/rc.init: fatal: stopping the container.``).
5. **services-up**: ``s6-svscanctl -a`` on the scandir, then wait until every slot (and its
   logger) has a ``supervise/status``.

Teardown is ``s6-svscanctl -t`` and a wait on the recorded PID (plus, through s6env, a SIGKILL
by PID of anything left inside the sandbox); a restart wipes the scandir as a fresh ``/run``
would be. Nothing here signals a process by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import s6env
import yaml
from s6env import FAKE_GATEWAY, REPO_ROOT, S6_BIN, Sandbox, ServiceUser

DOCKERFILE = REPO_ROOT / "Dockerfile"
SHIPPED_INVENTORY = REPO_ROOT / "inventory" / "hosts.yml"
CONT_INIT_SRC = REPO_ROOT / "docker" / "cont-init.d"
MAIN_WRAPPER_SRC = REPO_ROOT / "docker" / "main-wrapper.sh"
REGISTRAR = "hermes-tasks-registrar"
IMAGE_SERVICE_IDS = "10000:10000"  # the image's `hermes` user and group (Dockerfile, inventory)
IMAGE_SERVICE_USER = "hermes"
# PATH of the python:*-slim base image, which the Dockerfile's ENV PATH="…:${PATH}" extends.
BASE_IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPT_TIMEOUT = 120.0  # a bound for the test; the image itself sets no deadline (MAXTIME=0)
STATUS_TIMEOUT = 10.0
WARNING = "cont-init: warning: some scripts exited nonzero"
RC_INIT = "/run/s6/basedir/scripts/rc.init"
FATAL = f"{RC_INIT}: fatal: stopping the container."

# Container paths that may appear in the image's cont-init scripts, and their sandbox
# counterparts (filled in per sandbox by :func:`path_map`).
PATH_KEYS = ("/opt/hermes-tasks/", "/opt/data", "/run/service", "/command/")
# A container path left over after the rewrite (outside comments): refuse to install.
UNMAPPED = re.compile(r"(?<![\w./-])/(?:command|opt|run|etc|init|package)(?=[/\s\"'$;|&)]|$)")


def path_map(sb: Sandbox) -> dict[str, str]:
    """Container path → sandbox path, for scripts and for the ENV values of the Dockerfile."""
    return {
        "/opt/hermes-tasks/": f"{sb.root}/opt/hermes-tasks/",
        "/opt/data": str(sb.home),
        "/run/service": str(sb.scandir),
        "/command/": f"{sb.cmd_dir}/",
    }


def rewrite(text: str, mapping: Mapping[str, str]) -> str:
    """Replace every container path in one pass (a replacement is never rewritten again)."""
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def map_path(value: str, mapping: Mapping[str, str]) -> str:
    """One path that starts with a container path (``/command``, ``/command/x``) mapped.

    Anchored at the start, so an already mapped (sandbox) path is left as it is.
    """
    text = value + "/"
    for key in sorted(mapping, key=len, reverse=True):
        prefix = key.rstrip("/") + "/"
        if text.startswith(prefix):
            return (mapping[key].rstrip("/") + "/" + text[len(prefix):])[:-1]
    return value


def map_path_list(value: str, mapping: Mapping[str, str]) -> str:
    """A colon-separated PATH, each element mapped."""
    return ":".join(map_path(p, mapping) for p in value.split(":"))


def s6_global_path(env: Mapping[str, str], mapping: Mapping[str, str]) -> str:
    """The PATH s6-overlay's /init gives stage 2 and the supervision tree, mapped.

    ``S6_GLOBAL_PATH`` when set and not empty, else ``/bin``; then ``/bin``, ``/usr/bin`` and
    ``/command`` are put in front, each only when missing.
    """
    elems = [map_path(p, mapping) for p in (env.get("S6_GLOBAL_PATH") or "/bin").split(":")]
    for required in ("/bin", "/usr/bin", "/command"):
        mapped = map_path(required, mapping)
        if mapped not in elems:
            elems.insert(0, mapped)
    return ":".join(elems)


def _code_lines(text: str) -> list[str]:
    """Script lines without comments (the shebang is kept: it is code)."""
    out = []
    for n, line in enumerate(text.splitlines()):
        if n == 0 and line.startswith("#!"):
            out.append(line[2:])
        else:
            out.append(line.split("#", 1)[0] if not line.lstrip().startswith("#") else "")
    return out


# --------------------------------------------------------------------------- the Dockerfile


def dockerfile_instructions(text: str | None = None) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comment lines dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        # a comment line, also one inside a continued instruction, and blank lines between
        if line.startswith("#") or (not current and not line):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def image_env() -> dict[str, str]:
    """The variables the image's ``ENV`` instructions set (``${VAR}`` expanded), in order."""
    env: dict[str, str] = {"PATH": BASE_IMAGE_PATH}
    for ins in dockerfile_instructions():
        if not ins.upper().startswith("ENV "):
            continue
        for word in shlex.split(ins[4:]):
            key, sep, value = word.partition("=")
            if not sep:
                raise ValueError(f"Dockerfile: unsupported ENV form: {ins!r}")
            env[key] = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                              lambda m: env.get(m.group(1) or m.group(2), ""), value)
    return env


def healthcheck_argv() -> list[str]:
    """The command of the image's ``HEALTHCHECK`` (exec form), as the Dockerfile says it."""
    for ins in dockerfile_instructions():
        if ins.upper().startswith("HEALTHCHECK "):
            return json.loads(ins.split(" CMD ", 1)[1])
    raise ValueError("Dockerfile: no HEALTHCHECK")


def dockerfile_stage2_behaviour() -> int:
    """The S6_BEHAVIOUR_IF_STAGE2_FAILS value the image sets (s6-overlay's default is 0)."""
    return int(image_env().get("S6_BEHAVIOUR_IF_STAGE2_FAILS", "0"))


# --------------------------------------------------------------------------- processes





def proc_uid(pid: int) -> int:
    """Real uid of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Uid line for pid {pid}")


class BootSupervisor(s6env.Supervisor):
    """Stage 1: s6-svscan on the sandbox scandir, as root or as the container's user."""

    def __init__(self, sandbox: Sandbox, user: ServiceUser | None, path: str):
        super().__init__(sandbox, env={"PATH": path})
        self.user = user

    def start(self, timeout: float = 5.0) -> BootSupervisor:
        argv = [str(S6_BIN / "s6-svscan"), str(self.scandir)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=self.env, cwd=self.sandbox.root, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                **s6env.user_kwargs(self.user),
            )
        # Registered with s6env so its fixtures and atexit hook stop it whatever happens.
        s6env._LIVE_SUPERVISORS[self.proc.pid] = self
        s6env._SVSCAN_PIDS.add(self.proc.pid)
        try:
            s6env.wait_for(self._listening, timeout, what=f"s6-svscan listening on {self.control}")
        except BaseException:
            self.stop()
            raise
        return self


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class ScriptRun:
    name: str
    returncode: int
    stdout: str
    stderr: str


@dataclasses.dataclass
class BootResult:
    """What one simulated boot did, and the console lines s6-overlay would have printed."""

    behaviour: int
    scripts: list[ScriptRun]
    console: list[str]
    stopped: bool  # S6_BEHAVIOUR_IF_STAGE2_FAILS >= 2 took the container down
    services_up: bool  # the services-up rescan ran
    slots: list[str]  # slots in the scandir at services-up

    @property
    def failed_scripts(self) -> list[str]:
        return [s.name for s in self.scripts if s.returncode != 0]

    def script(self, name: str) -> ScriptRun:
        return next(s for s in self.scripts if s.name == name)

    def console_text(self) -> str:
        return "\n".join(self.console)


# --------------------------------------------------------------------------- the container


class Container:
    """One simulated container over a sandbox: install once, then boot, restart, exec.

    ``unprivileged=True`` is ``docker run --user``: s6-svscan and the cont-init scripts run as
    the sandbox's service user, who owns the scandir. ``env`` adds container variables
    (``docker run -e``; ``""`` unsets one). ``inventory`` overrides sandbox inventory values
    (the default points every setting into the sandbox and uses the stand-in gateway).
    """

    def __init__(self, sandbox: Sandbox, *, unprivileged: bool = False,
                 env: Mapping[str, str] | None = None,
                 inventory: Mapping[str, object] | None = None,
                 command: list[str] | None = None, overlay: str = "v3"):
        if sandbox.user is None:
            raise ValueError("the simulated image needs a sandbox with a service user")
        self.sb = sandbox
        self.user = sandbox.user
        self.boot_user: ServiceUser | None = self.user if unprivileged else None
        self.paths = path_map(sandbox)
        self.venv_bin = sandbox.root / "opt" / "hermes-tasks" / "venv" / "bin"
        self.inventory_path = sandbox.root / "etc" / "hermes-tasks" / "inventory.yml"
        self.inventory = {**self._shipped_inventory(), **(inventory or {})}
        self.env = self._container_env(env or {})
        # What /init gives stage 2 and every supervised process.
        self.path = s6_global_path(self.env, self.paths)
        self.supervisor: BootSupervisor | None = None
        self.killed_at_stop: list[int] = []
        # ``docker run IMAGE <command>``: None keeps the host's own process list (no PID
        # namespace); a list (``[]`` = no command) runs stage 2 in its own PID namespace
        # whose process tree carries the command as s6-overlay ``overlay`` ("v2"/"v3") does.
        self.command = command
        self.overlay = overlay
        if command is not None and unprivileged:
            raise ValueError("a container command needs a root boot (PID namespace)")
        self.boots: list[BootResult] = []
        self.install()

    # -- installation -------------------------------------------------------------

    def _shipped_inventory(self) -> dict:
        """The image's inventory: container paths mapped, its service account the sandbox's."""
        doc = yaml.safe_load(SHIPPED_INVENTORY.read_text())
        out = {}
        for key, value in doc["all"]["vars"].items():
            out[key] = map_path(value, self.paths) if isinstance(value, str) else value
        if out.get("service_user") == IMAGE_SERVICE_USER:
            out["service_user"] = self.user.name
        if f"{out.get('service_uid')}:{out.get('service_gid')}" == IMAGE_SERVICE_IDS:
            out["service_uid"], out["service_gid"] = self.user.uid, self.user.gid
        return out

    def _container_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The container's variables as `docker exec` sees them (PATH included)."""
        env = {k: map_path_list(v, self.paths) if k.endswith("PATH") else
               map_path(v, self.paths) for k, v in image_env().items()}
        env["HERMES_TASKS_INVENTORY"] = str(self.inventory_path)
        env.update(extra)
        return env

    @property
    def behaviour(self) -> int:
        """S6_BEHAVIOUR_IF_STAGE2_FAILS as s6-overlay's cont-init reads it (printcontenv)."""
        try:
            value = (self.sb.env_dir / "S6_BEHAVIOUR_IF_STAGE2_FAILS").read_text()
        except FileNotFoundError:
            return 0
        return int(value) if re.fullmatch(r"[0-9]+", value) else 0

    def install(self) -> None:
        """Write the container env, the inventory, the tool wrapper and the cont-init scripts."""
        sb = self.sb
        # stage 0 deletes PATH from the saved environment: with-contenv keeps the global PATH
        s6env.write_container_env(sb.env_dir, {k: v for k, v in self.env.items() if k != "PATH"})
        self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
        self.inventory_path.write_text(yaml.safe_dump(
            {"all": {"vars": self.inventory, "hosts": {"localhost": {}}}}, sort_keys=True))
        self.inventory_path.chmod(0o644)
        self._write_wrapper()
        for d in (sb.root / "etc", sb.root / "opt", sb.root / "opt" / "hermes-tasks",
                  self.venv_bin.parent, self.venv_bin, self.inventory_path.parent):
            d.chmod(0o755)
        ids = f"{self.user.uid}:{self.user.gid}"
        for src in sorted(CONT_INIT_SRC.iterdir()):
            if src.name.startswith("."):
                continue
            text = rewrite(src.read_text(), self.paths).replace(IMAGE_SERVICE_IDS, ids)
            # the image's account name, as the shipped inventory's is mapped
            text = text.replace(f"service_user={IMAGE_SERVICE_USER}\n",
                                f"service_user={self.user.name}\n")
            for n, line in enumerate(_code_lines(text), 1):
                left = UNMAPPED.search(line)
                if left:
                    raise AssertionError(
                        f"{src.name}:{n}: container path {left.group(0)!r} has no sandbox "
                        f"counterpart in bootsim.PATH_KEYS: {line.strip()!r}")
            dest = sb.cont_init_dir / src.name
            dest.write_text(text)
            dest.chmod(0o755)  # COPY --chmod=0755
        # the main program, where the Dockerfile puts it (its path is in the process list)
        self.wrapper.write_text(rewrite(MAIN_WRAPPER_SRC.read_text(), self.paths))
        self.wrapper.chmod(0o755)
        self._write_pid1()

    @property
    def wrapper(self) -> Path:
        return self.sb.root / "opt" / "hermes-tasks" / "main-wrapper.sh"

    def _write_pid1(self) -> None:
        """Stand-ins for the process tree s6-overlay builds around the container's command.

        v2: PID 1 is ``/init <wrapper> <command…>`` and runs stage 2 itself. v3: PID 1 is
        s6-svscan (no command in its argv) and ``rc.init top <wrapper> <command…>`` runs
        stage 2. Each runs the script named in ``bootsim-script`` (one cont-init script).
        """
        root = self.sb.root
        run_script = f'"$(cat {shlex.quote(str(root / "bootsim-script"))})"\n'
        (root / "init").write_text("#!/bin/sh\n# bootsim: s6-overlay v2's /init as PID 1\n"
                                   + run_script)
        (root / "rc.init").write_text("#!/bin/sh\n# bootsim: s6-overlay v3's rc.init\n"
                                      + run_script)
        argv_file = shlex.quote(str(root / "bootsim-argv"))
        (root / "s6-svscan").write_text(
            "#!/bin/sh\n# bootsim: s6-overlay v3's PID 1 (its argv holds no command)\n"
            f'while IFS= read -r a; do set -- "$@" "$a"; done < {argv_file}\n'
            f'{shlex.quote(str(root / "rc.init"))} top "$@"\n')
        for name in ("init", "rc.init", "s6-svscan"):
            (root / name).chmod(0o755)

    def _pid1_argv(self, script: Path) -> list[str]:
        root = self.sb.root
        (root / "bootsim-script").write_text(str(script))
        argv = [str(self.wrapper), *self.command]
        (root / "bootsim-argv").write_text("".join(a + "\n" for a in argv))
        pid1 = ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"]
        if self.overlay == "v2":
            return [*pid1, str(root / "init"), *argv]
        return [*pid1, str(root / "s6-svscan")]

    def _write_wrapper(self) -> None:
        """``/opt/hermes-tasks/venv/bin/hermes-tasks``: this checkout, run by the boot user."""
        python, extra_path = s6env.python_for(self.boot_user)
        pythonpath = os.pathsep.join([str(REPO_ROOT), *extra_path])
        self.venv_bin.mkdir(parents=True, exist_ok=True)
        for name, module in (("hermes-tasks", "hermes_tasks"), ("hermes-tasks-boot",
                                                              "hermes_tasks.boot")):
            wrapper = self.venv_bin / name
            wrapper.write_text(
                "#!/bin/sh\n"
                "# bootsim stand-in for the image's venv entry point: this checkout's package.\n"
                f"PYTHONPATH={shlex.quote(pythonpath)}\n"
                "PYTHONDONTWRITEBYTECODE=1\n"
                "export PYTHONPATH PYTHONDONTWRITEBYTECODE\n"
                f"exec {shlex.quote(python)} -m {module} \"$@\"\n"
            )
            wrapper.chmod(0o755)
        # hermes-agent's entry point, found by name on the global PATH like in the image
        hermes = self.venv_bin / "hermes"
        if not hermes.is_symlink():
            hermes.symlink_to(FAKE_GATEWAY)

    # -- boot -----------------------------------------------------------------------

    def boot(self) -> BootResult:
        """Stage 1, stage 2 (cont-init + the stage-2 failure policy), services-up."""
        if self.supervisor is not None and self.supervisor.alive():
            raise RuntimeError("already booted: call shutdown() or restart()")
        sb = self.sb
        if self.boot_user is not None:
            os.chown(sb.scandir, self.boot_user.uid, self.boot_user.gid)
        console: list[str] = []
        self.supervisor = BootSupervisor(sb, self.boot_user, self.path).start()

        scripts: list[ScriptRun] = []
        names = sorted((n for n in os.listdir(sb.cont_init_dir) if not n.startswith(".")),
                       key=os.fsencode)
        for name in names:
            path = sb.cont_init_dir / name
            shown = f"/etc/cont-init.d/{name}"
            console.append(f"cont-init: info: running {shown}")
            run = self._run_script(path)
            scripts.append(run)
            console += [line for line in (run.stdout + run.stderr).splitlines()]
            console.append(f"cont-init: info: {shown} exited {run.returncode}")

        behaviour = self.behaviour
        stopped = False
        if any(s.returncode != 0 for s in scripts) and behaviour > 0:
            console.append(WARNING)
            if behaviour >= 2:
                # cont-init exits 1: s6-rc fails, services-up (which depends on it) never
                # runs, and rc.init halts the container.
                console += [("s6-rc: warning: unable to start service legacy-cont-init: "
                            "command exited 1"),
                            (f"{RC_INIT}: warning: s6-rc failed to properly bring all the "
                            "services up!"), FATAL]
                self.killed_at_stop = self.supervisor.stop()
                stopped = True

        slots: list[str] = []
        if not stopped:
            slots = self.services_up()
        result = BootResult(behaviour, scripts, console, stopped, not stopped, slots)
        self.boots.append(result)
        return result

    def _run_script(self, path: Path) -> ScriptRun:
        env = {"PATH": self.path}
        argv = [str(path)] if self.command is None else self._pid1_argv(path)
        try:
            proc = subprocess.run(argv, check=False, env=env, cwd=self.sb.root,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=SCRIPT_TIMEOUT, **s6env.user_kwargs(self.boot_user))
        except PermissionError as exc:  # not executable: s6-overlay's exec fails the same way
            return ScriptRun(path.name, 126, "", str(exc))
        return ScriptRun(path.name, proc.returncode, proc.stdout, proc.stderr)

    def slot_dirs(self) -> list[Path]:
        """Visible (non-dot) slots in the scandir, with their loggers."""
        out = []
        for entry in sorted(self.sb.scandir.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            out.append(entry)
            if (entry / "log" / "run").exists():
                out.append(entry / "log")
        return out

    def services_up(self) -> list[str]:
        """``s6-svscanctl -a``, then wait for ``supervise/status`` of every slot."""
        subprocess.run([str(self.sb.cmd_dir / "s6-svscanctl"), "-a", str(self.sb.scandir)],
                       check=True, capture_output=True, text=True, timeout=15,
                       **s6env.user_kwargs(self.boot_user))
        dirs = self.slot_dirs()
        for d in dirs:
            s6env.wait_status_file(d, STATUS_TIMEOUT)
        return [d.name for d in dirs if d.name != "log"]

    # -- stop, restart ----------------------------------------------------------------

    def shutdown(self) -> list[int]:
        """``s6-svscanctl -t`` and wait for s6-svscan; return leftovers it had to SIGKILL."""
        if self.supervisor is not None:
            self.killed_at_stop = self.supervisor.stop()
        return self.killed_at_stop

    def wipe_run(self) -> None:
        """A new container start gets a fresh /run: the scandir is empty again."""
        if self.supervisor is not None and self.supervisor.alive():
            raise RuntimeError("wipe_run() while s6-svscan is running")
        for entry in list(self.sb.scandir.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def restart(self) -> BootResult:
        """``docker restart``: stop the tree, wipe /run, boot again on the same volume."""
        self.shutdown()
        self.wipe_run()
        return self.boot()

    # -- docker exec -------------------------------------------------------------------

    def exec_tasks(self, task: str, *args: str, user: ServiceUser | None = None,
                   env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """``docker exec [-u USER] <ctr> hermes-tasks TASK ARGS``: the container's env.

        Runs as root (``user=None``) or as ``user``; the settings come from the container
        environment (HERMES_HOME, and the sandbox inventory standing in for the shipped one).
        """
        # docker exec keeps the image's PATH (its venv, where `hermes` is): preflight needs it
        full_env = dict(self.env)
        full_env.update(env or {})
        return s6env.run_tasks(self.sb, task, *args, user=user, env=full_env,
                               inventory_vars=False)

    def health(self) -> subprocess.CompletedProcess:
        """What Docker's health check runs: the image's own ``HEALTHCHECK`` command, paths
        mapped, as the container's user (root) with the image's environment."""
        argv = [map_path(a, self.paths) for a in healthcheck_argv()]
        return subprocess.run(argv, check=False, env=dict(self.env), cwd=self.sb.root,
                              capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, **s6env.user_kwargs(self.boot_user))

    def run_as(self, user: ServiceUser | None, argv: list[str],
               timeout: float = 30) -> subprocess.CompletedProcess:
        """Run any command as ``user`` with a container-like PATH (not checked)."""
        return subprocess.run(argv, check=False, env={"PATH": self.path},
                              cwd=self.sb.root, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **s6env.user_kwargs(user))

    # -- observation -----------------------------------------------------------------

    def slot(self, name: str) -> Path:
        return self.sb.scandir / name

    def wait_all(self, up: list[str], down: list[str], timeout: float = 10.0) -> dict:
        """Wait until the ``up`` slots are up and report every slot's s6 status."""
        out = {}
        for name in up:
            out[name] = s6env.wait_up(self.slot(name), timeout)
        for name in down:
            s6env.wait_status_file(self.slot(name), timeout)
            out[name] = s6env.svstat(self.slot(name))
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` is a live process."""

    def gone():
        return not [p for p in pids if _alive(p)]

    s6env.wait_for(gone, timeout, what=f"processes {pids} to exit")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
