#!/usr/bin/env bash
# `ansible-test sanity` of the hermes.tasks collection on one ansible-core (2.16 … 2.19),
# offline except for PyPI: the venv from scripts/ansible-venvs.sh, no containers
# (--python), and a pip bootstrap that uses ensurepip + the configured index instead of the
# download ansible-test would fetch from a host that is not a package registry.
#
#   scripts/ansible-sanity.sh 2.19 [ansible-test sanity args…]
set -euo pipefail
cd "$(dirname "$0")/.."
v=${1:?usage: ansible-sanity.sh 2.NN [args…]}
shift
venv=$PWD/.venv-ansible-$v
[ -x "$venv/bin/ansible-test" ] || bash scripts/ansible-venvs.sh "$v"
# ansible-test keeps its per-test venvs under ~/.ansible/test: one HOME per core version,
# inside its (git-ignored) venv, so a second run is warm and nothing leaks into the user's.
home=$venv/home
mkdir -p "$home/.ansible/test/cache"
cat >"$home/.ansible/test/cache/get_pip_24_2.py" <<'PY'
import subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])
PY
# Older cores name their bootstrap after the pip they pin.
for n in get_pip_23_1_2.py get_pip_24_0.py get_pip_25_0_1.py get_pip_25_1_1.py; do
  cp "$home/.ansible/test/cache/get_pip_24_2.py" "$home/.ansible/test/cache/$n"
done
py=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cd ansible_collections/hermes/tasks
exec env -i PATH="$venv/bin:$PATH" HOME="$home" LC_ALL=C.UTF-8 ANSIBLE_NOCOLOR=1 \
  "$venv/bin/ansible-test" sanity --python "$py" --color no "$@"
