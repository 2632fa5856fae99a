#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian machine (minbase included): every
# program a test calls, from apt (as root), and a project venv in .venv with the test extras
# and ansible-core.
set -euo pipefail
cd "$(dirname "$0")/.."

# package:program, one per program the tests, the demo or the set-up itself call: s6 and
# execline (the supervisor), shellcheck (the scripts' linter), sshd/ssh/ssh-keygen (the
# Ansible tests' "hosts"), ip (the ports test's network namespace), unshare/mount (network
# and PID namespaces, tmpfs volumes), useradd (the tests' service user), python3 + venv.
need=()
for pkg_cmd in s6:s6-svscan execline:execlineb shellcheck:shellcheck \
    openssh-server:/usr/sbin/sshd openssh-client:ssh openssh-client:ssh-keygen \
    iproute2:/usr/sbin/ip util-linux:unshare mount:mount passwd:useradd python3:python3; do
  cmd="${pkg_cmd#*:}" pkg="${pkg_cmd%%:*}"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    case " ${need[*]-} " in *" $pkg "*) ;; *) need+=("$pkg") ;; esac
  fi
done
# Debian's python3 makes venvs only with python3-venv (ensurepip).
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
elif ! command -v python3 >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: please install as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]} with apt-get" >&2
  # No service may start from a package's postinst (openssh-server would listen on every
  # address): a policy-rc.d that refuses, unless the machine already has one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# ansible-core for the collection's tests and the fleet playbook (SPEC §12): an engine the
# tests drive, not a dependency of hermes-tasks itself.
.venv/bin/python -m pip install -q 'ansible-core>=2.16,<2.20'
# The hermes.tasks collection's own checks: ansible-core 2.16–2.19 for ansible-test sanity
# (one venv each) and ansible-lint + antsibull-changelog (tests/test_ansible_collection.py).
bash scripts/ansible-venvs.sh
