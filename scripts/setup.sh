#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian machine: s6, execline, the
# linter shellcheck and openssh-server (the Ansible tests' "hosts") from apt (as root), and
# a project venv in .venv with the test extras and ansible-core.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_cmd in s6:s6-svscan execline:execlineb shellcheck:shellcheck; do
  command -v "${pkg_cmd#*:}" >/dev/null 2>&1 || need+=("${pkg_cmd%%:*}")
done
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
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
