#!/usr/bin/env bash
# The collection's own checks run on every ansible-core it claims (galaxy.yml /
# meta/runtime.yml: >=2.16): one venv per minor version, .venv-ansible-2.NN/, plus
# .venv-ansible-lint/ with ansible-lint and antsibull-changelog. Only PyPI is used; a venv
# that already has the right version is left alone (CI runs this once, tests call it too).
#
#   scripts/ansible-venvs.sh [2.16 2.17 …]     (default: every supported version)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
versions=("$@")
[ "${#versions[@]}" -gt 0 ] || versions=(2.16 2.17 2.18 2.19)

ensure() {  # ensure VENV PROBE-CMD PIP-ARGS...
  local venv=$1 probe=$2
  shift 2
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$probe" >/dev/null 2>&1; then
    return 0
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q "$@"
}

for v in "${versions[@]}"; do
  minor=${v#2.}
  ensure ".venv-ansible-$v" \
    "import ansible.release as r, sys; sys.exit(not r.__version__.startswith('$v.'))" \
    "ansible-core>=$v,<2.$((minor + 1))"
done
# ansible-lint brings its own ansible-core (the newest it supports); antsibull-changelog
# lints the changelog fragments.
ensure .venv-ansible-lint "import ansiblelint, antsibull_changelog" ansible-lint antsibull-changelog
