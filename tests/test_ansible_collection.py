"""The hermes.tasks collection as a publishable collection: ``ansible-test sanity`` on every
ansible-core it claims (2.16–2.19, each in its own venv from scripts/ansible-venvs.sh),
``ansible-lint``, ``antsibull-changelog lint`` and ``ansible-galaxy collection build``.

Sanity runs offline but for PyPI (scripts/ansible-sanity.sh: ``--python``, no containers,
a pip bootstrap from ensurepip). The newest core runs every sanity test; the older ones run
the tests whose verdict depends on the core version (documentation schema, argument
specs, imports, runtime metadata, YAML, compile, ignore files) and leave the code-style
linters (pylint, pep8, …) to the newest, to keep CI time down.
"""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest
import s6env

REPO = s6env.REPO_ROOT
COLLECTION = REPO / "ansible_collections" / "hermes" / "tasks"
NEWEST = "2.19"
PER_VERSION = ("validate-modules", "ansible-doc", "import", "compile", "runtime-metadata",
               "yamllint", "action-plugin-docs", "changelog", "ignores", "shebang", "shellcheck",
               "symlinks", "empty-init")


def venv(name: str):
    """The venv of ``name`` (made by scripts/ansible-venvs.sh, which the CI's setup runs)."""
    path = REPO / f".venv-{name}"
    if not (path / "bin" / "python").exists():
        res = subprocess.run(["bash", str(REPO / "scripts" / "ansible-venvs.sh"),
                              *([name.removeprefix("ansible-")] if name != "ansible-lint" else [])],
                             capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stderr[-3000:]
    return path


def env_for(path, home) -> dict[str, str]:
    return {"PATH": f"{path / 'bin'}:{os.environ['PATH']}", "HOME": str(home),
            "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
            "ANSIBLE_COLLECTIONS_PATH": str(REPO)}


@pytest.mark.parametrize("core", ["2.16", "2.17", "2.18", NEWEST])
def test_ansible_test_sanity_passes_on_each_supported_core(core):
    venv(f"ansible-{core}")
    tests = [] if core == NEWEST else [a for t in PER_VERSION for a in ("--test", t)]
    res = subprocess.run(["bash", str(REPO / "scripts" / "ansible-sanity.sh"), core, *tests],
                         capture_output=True, text=True, timeout=1500, stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    ran = [line for line in out.splitlines() if line.startswith('Running sanity test "')]
    assert any('"validate-modules"' in line for line in ran), out[-3000:]
    if core == NEWEST:
        assert any('"pylint"' in line for line in ran) and len(ran) > 20, ran
    assert "ERROR:" not in out, out[-3000:]


def test_ansible_lint_is_clean_on_the_collection_and_the_playbook(tmp_path):
    lint = venv("ansible-lint")
    env = env_for(lint, tmp_path)
    for cwd, args in ((COLLECTION, []), (REPO, ["ansible/site.yml"])):
        res = subprocess.run([str(lint / "bin" / "ansible-lint"), "--offline", "--nocolor",
                              "-f", "pep8", *args], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, (cwd, res.stdout[-4000:] + res.stderr[-4000:])
        assert "Passed: 0 failure(s), 0 warning(s)" in res.stdout + res.stderr, res.stderr[-2000:]


def test_changelog_fragments_pass_antsibull_changelog_lint(tmp_path):
    lint = venv("ansible-lint")
    res = subprocess.run([str(lint / "bin" / "antsibull-changelog"), "lint"], cwd=COLLECTION,
                         env=env_for(lint, tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_galaxy_build_carries_license_changelog_role_and_tests(tmp_path):
    core = venv(f"ansible-{NEWEST}")
    res = subprocess.run([str(core / "bin" / "ansible-galaxy"), "collection", "build",
                          "--output-path", str(tmp_path), str(COLLECTION)],
                         env=env_for(core, tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    [tarball] = tmp_path.glob("hermes-tasks-*.tar.gz")
    names = set(tarfile.open(tarball).getnames())
    for needed in ("LICENSE", "CHANGELOG.md", "changelogs/changelog.yaml", "README.md",
                   "meta/runtime.yml", "roles/gateways/meta/argument_specs.yml",
                   "roles/gateways/defaults/main.yml", "plugins/modules/gateway_info.py",
                   "tests/config.yml", "tests/sanity/ignore-2.16.txt",
                   "tests/integration/targets/gateways_fleet/runme.sh"):
        assert needed in names, needed
    assert not any(n.startswith("tests/output") or n.endswith(".plugin-cache.yaml")
                   or n in ("tests/integration/inventory",
                            "tests/integration/integration_config.yml")
                   for n in names), sorted(names)
    import json
    manifest = json.loads(tarfile.open(tarball).extractfile("MANIFEST.json").read())
    info = manifest["collection_info"]
    assert info["repository"] and info["documentation"] and info["issues"], info
    assert "tools" in info["tags"] and info["license_file"] == "LICENSE", info
