"""The floor: only the file operations a boot-time reconcile cannot avoid (issue 7).

Usage: python bench/floor.py HERMES_HOME SCANDIR

Lists the profiles (a directory with SOUL.md; ``gateway_state.json`` says whether it
starts), then for each slot: mkdir a dot-staging dir, write run/finish/type (+down),
notification-fd, mkdir data, write data/check and data/own, mkdir log, write log/run,
pre-seed supervise/ + supervise/control + event/ (and under log/), rename into place. No
templates, no checks, no locking, no boot log. The slot has the same shape and modes as the
one hermes-tasks publishes (SPEC §5).
"""

import json
import os
import sys

IS_ROOT = os.geteuid() == 0
GID = 10000  # service_gid: group of the shared skeleton when run as root
RUN = ("#!/usr/bin/with-contenv sh\n# shellcheck shell=sh\n# {slot}\nexec 2>&1\n"
       'if [ -z "${{HERMES_HOME:-}}" ]; then\n  HERMES_HOME={home}\nfi\nexport HERMES_HOME\n'
       'HOME=$HERMES_HOME\nexport HOME\ncd "$HERMES_HOME" || exit 111\n'
       "export HERMES_S6_SUPERVISED_CHILD=1\nexport HERMES_SUPERVISED_CHILD=1\n"
       "exec hermes{p} gateway run --replace\n")
LOG_RUN = ("#!/usr/bin/with-contenv sh\n# shellcheck shell=sh\nexec 2>&1\n"
           'if [ -z "${{HERMES_HOME:-}}" ]; then\n  HERMES_HOME={home}\nfi\n'
           'log_dir="$HERMES_HOME/logs/gateways/"{name}\nmkdir -p "$log_dir" || exit 111\n'
           'exec /usr/bin/s6-log 1 n10 s1000000 T "$log_dir"\n')
# Readiness check (SPEC §5): the real one's size, so the floor writes as many bytes.
CHECK = ("#!/bin/sh\n# shellcheck shell=sh\n# {slot}/data/check\n" + "#" * 71 + "\n") * 16
OWN = b'#!/bin/sh\n# shellcheck shell=sh\n# the ownership wrapper, in short\nexec "$@"\n'
FINISH = (b'#!/bin/sh\n# shellcheck shell=sh\ncase "${1:-}" in\n  78) exit 125 ;;\n'
          b"  0) exit 125 ;;\n  *) exit 0 ;;\nesac\n")


def write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)


def node(path: str, mode: int, make, shared: bool = True) -> None:
    make(path, mode)
    if IS_ROOT and shared:
        os.chown(path, 0, GID)
    if mode & 0o7000:
        os.chmod(path, mode)  # mkdir drops setgid


def skeleton(base: str) -> None:
    node(base + "/supervise", 0o710, os.mkdir)
    node(base + "/supervise/control", 0o620, os.mkfifo)
    node(base + "/event", 0o700, os.mkdir, shared=False)  # root's alone (SPEC §5)


def autostart(profile_dir: str) -> bool:
    try:
        with open(profile_dir + "/gateway_state.json", "rb") as fh:
            return json.load(fh).get("desired_state") == "running"
    except (OSError, ValueError):
        return False


def main(home: str, scandir: str) -> None:
    os.umask(0)
    profiles = [("default", home)]
    try:
        names = sorted(os.listdir(home + "/profiles"))
    except FileNotFoundError:
        names = []
    profiles += [(n, f"{home}/profiles/{n}") for n in names
                 if os.path.isfile(f"{home}/profiles/{n}/SOUL.md")]
    for name, pdir in profiles:
        slot = "gateway-" + name
        tmp = f"{scandir}/.{slot}.tmp"
        os.mkdir(tmp, 0o755)
        p = "" if name == "default" else " -p " + name
        write(tmp + "/run", RUN.format(slot=slot, home=home, p=p).encode(), 0o750)
        if IS_ROOT:
            os.chown(tmp + "/run", 0, GID)  # it holds extra_env: the service group's to read
        write(tmp + "/finish", FINISH, 0o755)
        write(tmp + "/type", b"longrun\n", 0o644)
        write(tmp + "/notification-fd", b"3\n", 0o644)
        os.mkdir(tmp + "/data", 0o755)
        write(tmp + "/data/check", CHECK.format(slot=slot).encode(), 0o755)
        write(tmp + "/data/own", OWN, 0o755)
        if not autostart(pdir):
            write(tmp + "/down", b"", 0o644)
        os.mkdir(tmp + "/log", 0o755)
        write(tmp + "/log/run", LOG_RUN.format(home=home, name=name).encode(), 0o755)
        skeleton(tmp)
        skeleton(tmp + "/log")
        os.rename(tmp, f"{scandir}/{slot}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
