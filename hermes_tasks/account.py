"""The account a profile's processes run as, and ``hermes-tasks exec`` (SPEC §16).

``hermes-tasks exec -p NAME [--inventory I] [--var K=V]… [--host H] -- CMD [ARG…]`` runs
CMD as profile NAME's gateway runs: with ``profile_isolation`` as the profile's own uid and
gid (no other group), else as the service user; with ``HERMES_HOME`` the root home and the
profile's ``extra_env``, and isolated, ``HOME``/``TMPDIR``/``HERMES_KANBAN_HOME`` in the
profile as its run script sets them. It is how an operator runs ``hermes -p NAME …`` by
hand once the profile's files are no longer the service user's. Root only (a
``docker exec`` shell is root); it is handled before Invoke, which would join the
command's words into one string.

The uid is the one the volume shows: the owner of the profile's top directory (only root
sets it), accepted only when the allocation record names the same uid for the profile.
"""

from __future__ import annotations

import os
import stat
import sys

from . import fsops, inventory, uids
from .errors import TaskError, UsageError
from .profiles import DEFAULT, escape, valid_name

USAGE = ("usage: hermes-tasks exec -p NAME [--inventory PATH] [--var KEY=VALUE]... "
         "[--host HOST] -- COMMAND [ARG...]")


def parse(argv: list[str]) -> tuple[str, str | None, list[str], str | None, list[str]]:
    """(profile, inventory, vars, host, command) from the words after ``exec``."""
    if "--" not in argv:
        raise UsageError(f"exec needs the command after '--'; {USAGE}")
    cut = argv.index("--")
    opts, command = argv[:cut], argv[cut + 1:]
    profile, inv, host, var = None, None, None, []
    i = 0
    while i < len(opts):
        flag = opts[i]
        key, eq, inline = flag.partition("=")
        if key in ("-p", "--profile", "--inventory", "-i", "--var", "--host") and \
                (eq or i + 1 < len(opts)):
            value = inline if eq else opts[i + 1]
            i += 1 if eq else 2
            if key in ("-p", "--profile"):
                profile = value
            elif key in ("--inventory", "-i"):
                inv = value
            elif key == "--var":
                var.append(value)
            else:
                host = value
            continue
        raise UsageError(f"exec: unexpected {escape(flag)!s}; {USAGE}")
    if profile is None or not command:
        raise UsageError(f"exec needs -p NAME and a command; {USAGE}")
    if not valid_name(profile):
        raise UsageError(f"invalid profile name '{escape(profile)}': names match "
                         "[a-z0-9][a-z0-9_-]{0,63}")
    return profile, inv, var, host, command


def ids(cfg: inventory.Settings, name: str) -> tuple[int, int]:
    """The uid and gid profile ``name``'s gateway runs as (see the module's docstring)."""
    service = (cfg.service_uid, cfg.service_gid)
    if not cfg.profile_isolation or name == DEFAULT:
        return service
    try:
        with fsops.opened_dir(cfg.hermes_home, ("profiles", name)) as dfd:
            st = os.fstat(dfd)
    except FileNotFoundError:
        raise UsageError(f"no profile '{name}' under {escape(cfg.hermes_home)}/profiles") \
            from None
    except OSError as exc:
        raise TaskError(f"profiles/{name} is unusable ({exc.strerror}); not entered") from None
    if not stat.S_ISDIR(st.st_mode):
        raise TaskError(f"profiles/{name} is not a directory; not entered")
    recorded = uids.read_record(cfg.hermes_home, lambda m: sys.stderr.write(
        f"hermes-tasks: warning: {m}\n"), cfg.profile_uid_base).profiles.get(name)
    if recorded is None or st.st_uid != recorded:
        raise TaskError(f"profile {name} is not isolated yet (its directory is uid {st.st_uid}'s, "
                        f"its allocation {recorded if recorded is not None else 'none'}): its "
                        "gateway's start converts it; run `hermes-tasks reconcile` first")
    return recorded, recorded


def environment(cfg: inventory.Settings, name: str, base: dict[str, str]) -> dict[str, str]:
    """``base`` with what the profile's run script exports over it (SPEC §3, §16)."""
    env = dict(base)
    home = os.environ.get("HERMES_HOME") or cfg.hermes_home
    home = inventory.profile_root(home)
    env.update(cfg.profile_env(name))
    env["HERMES_HOME"] = home
    env["HOME"] = home
    if cfg.profile_isolation and name != DEFAULT:
        mine = os.path.join(home, "profiles", name)
        env.update(HOME=mine, TMPDIR=os.path.join(mine, "tmp"), HERMES_KANBAN_HOME=mine)
    return env


def run(argv: list[str], origin: str | None = None) -> None:
    """``hermes-tasks exec …``: never returns on success (the command replaces it).
    ``origin``: where the command was typed, for a relative ``--inventory``."""
    name, inv, var, host, command = parse(argv)
    cfg = inventory.load(inv, var, host=host, origin=origin)
    if os.geteuid() != 0:
        raise TaskError("exec switches to the profile's uid and needs root (e.g. "
                        "`docker exec CONTAINER hermes-tasks exec -p NAME -- hermes …`)")
    uid, gid = ids(cfg, name)
    env = environment(cfg, name, dict(os.environ))
    workdir = env["HOME"]
    os.setgroups([])  # no group but its own: never root's nor the service group
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.chdir(workdir)  # as the profile's uid: nothing of root's follows a link there
    except OSError:
        pass
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        raise TaskError(f"exec {escape(command[0])}: {exc.strerror}") from None


def main(argv: list[str], origin: str | None = None) -> int:
    from . import errors

    return errors.guarded(lambda: run(argv, origin))
