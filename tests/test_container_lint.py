"""Lint gate for the container image: Dockerfile, cont-init scripts and shipped templates.

No Docker engine is needed: hadolint lints the Dockerfile (with .hadolint.yaml, failure
threshold "warning"), shellcheck lints every shell script under docker/, and the rest are
structural checks on the text of what the image ships (SPEC §9, §10; conventions.md §6).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import bootsim
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"
DOCKER_DIR = REPO / "docker"
CONT_INIT = DOCKER_DIR / "cont-init.d"
TEMPLATES = REPO / "templates"

CONTENV_SHEBANG = "#!/command/with-contenv sh"
S6_OVERLAY_VERSION = "3.2.3.0"
EXPECTED_CONT_INIT = ("01-hermes-volume", "02-reconcile-profiles")
VENV_BIN = "/opt/hermes-tasks/venv/bin"


def _tool(name: str) -> str:
    """The linter binary: next to this interpreter (the pip wheels), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found next to {sys.executable} or on PATH; "
            f"install the test extras (pip install -e '.[test]')"
        )
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)


def _files_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    if first.startswith(b"#!") and re.search(rb"\b(sh|bash|dash)\s*$", first):
        return True
    return b"# shellcheck shell=" in head


def _shipped_scripts() -> list[Path]:
    """Every file the image or the tool ships as a script: docker/** and templates/**."""
    return _files_under(DOCKER_DIR) + _files_under(TEMPLATES)


def _dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------- linters


def test_hadolint_dockerfile_clean() -> None:
    assert HADOLINT_CONFIG.is_file(), ".hadolint.yaml is missing"
    proc = _run(
        [
            _tool("hadolint"),
            "--no-color",
            "--config",
            str(HADOLINT_CONFIG),
            "--failure-threshold",
            "warning",
            str(DOCKERFILE),
        ]
    )
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_hadolint_config_gives_a_reason_for_every_exception() -> None:
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    assert any(re.match(r"^failure-threshold:\s*warning\s*$", ln) for ln in lines)
    for i, line in enumerate(lines):
        m = re.match(r"^\s*-\s*((?:DL|SC)\d+)\b", line)
        if not m:
            continue
        # The reason is an inline comment, or the comment block right above the entry,
        # which names the rule it justifies.
        block: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j])
            j -= 1
        reason = line.split("#", 1)[1] if "#" in line else "\n".join(block)
        assert reason.strip() and ("#" in line or m.group(1) in reason), (
            f".hadolint.yaml ignores {m.group(1)} without a reason comment"
        )


def test_inline_hadolint_ignores_have_reasons() -> None:
    lines = _dockerfile_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^#\s*hadolint ignore=(.+)$", line.strip())
        if not m:
            continue
        above = lines[i - 1].strip() if i else ""
        assert above.startswith("#") and "hadolint" not in above, (
            f"Dockerfile:{i + 1}: inline ignore {m.group(1)} needs a reason comment above it"
        )
        for rule in m.group(1).split(","):
            assert rule.strip() in "\n".join(lines[max(0, i - 6) : i]), (
                f"Dockerfile:{i + 1}: the reason above the ignore does not mention {rule}"
            )


def test_docker_dir_has_shell_scripts() -> None:
    scripts = [p for p in _files_under(DOCKER_DIR) if _is_shell_script(p)]
    names = {p.name for p in scripts}
    assert set(EXPECTED_CONT_INIT) <= names, f"shell scripts under docker/: {sorted(names)}"


@pytest.mark.parametrize(
    "script",
    [p for p in _files_under(DOCKER_DIR) if _is_shell_script(p)],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shellcheck_clean(script: Path) -> None:
    proc = _run([_tool("shellcheck"), "-s", "sh", "-f", "gcc", str(script)])
    assert proc.returncode == 0, f"shellcheck findings:\n{proc.stdout}{proc.stderr}"
    parse = _run(["sh", "-n", str(script)])
    assert parse.returncode == 0, f"sh -n {script}: {parse.stderr}"


# ---------------------------------------------------------------------- shipped file bytes


@pytest.mark.parametrize(
    "path", _shipped_scripts(), ids=lambda p: str(p.relative_to(REPO))
)
def test_shipped_file_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf"), f"{path}: UTF-8 BOM"
    assert b"\r" not in data, f"{path}: CR / CRLF line endings"
    if data:
        assert data.endswith(b"\n"), f"{path}: no newline at end of file"
    data.decode("utf-8")  # must be valid UTF-8


def test_cont_init_scripts_present_and_only_those() -> None:
    present = sorted(p.name for p in CONT_INIT.iterdir() if not p.name.startswith("."))
    assert present == sorted(EXPECTED_CONT_INIT)


@pytest.mark.parametrize("name", EXPECTED_CONT_INIT)
def test_cont_init_script_mode_and_header(name: str) -> None:
    path = CONT_INIT / name
    mode = stat.S_IMODE(path.stat().st_mode)
    # git records 100755 only when the file is executable on disk; the Dockerfile also
    # installs with --chmod=0755, but the repo must agree so a checkout runs as-is.
    assert mode == 0o755, f"{path}: mode {oct(mode)}, expected 0o755"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == CONTENV_SHEBANG
    assert lines[1] == "# shellcheck shell=sh"
    assert "set -eu" in (ln.strip() for ln in lines)


def test_cont_init_scripts_never_hand_over_the_scandir() -> None:
    """SPEC §9/§10: the scandir and s6-svscan's control FIFO stay root's."""
    for name in EXPECTED_CONT_INIT:
        for n, line in enumerate((CONT_INIT / name).read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"\bch(own|mod|grp)\b.*(/run/service|\.s6-svscan)", code), (
                f"{name}:{n}: {line.strip()}"
            )
            assert not re.search(r"\bch(own|mod)\b.*\s-[A-Za-z]*R", code), (
                f"{name}:{n}: recursive chown/chmod: {line.strip()}"
            )


def test_volume_script_is_narrow() -> None:
    code = "\n".join(
        ln.split("#", 1)[0] for ln in (CONT_INIT / "01-hermes-volume").read_text().splitlines()
    )
    chowns = re.findall(r"\bchown\b[^\n]*", code)
    assert chowns and all(re.search(r"\bchown -h\b", c) for c in chowns), chowns
    assert '"$(id -u)" != 0' in code, "must do nothing when running unprivileged"
    assert "-L " in code, "must refuse a symlinked volume"
    assert "${HERMES_HOME:-/opt/data}" in code


def test_reconcile_script_execs_the_tool() -> None:
    code = [
        ln.strip()
        for ln in (CONT_INIT / "02-reconcile-profiles").read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert code[-1] == f"exec {VENV_BIN}/hermes-tasks-boot", code


# ------------------------------------------------------------------ Dockerfile structure


def test_dockerfile_pins_s6_overlay_and_verifies_every_tarball() -> None:
    text = _dockerfile_text()
    assert re.search(rf"^ARG S6_OVERLAY_VERSION={re.escape(S6_OVERLAY_VERSION)}$", text, re.M)
    shas = dict(re.findall(r"^ARG (S6_OVERLAY_\w+_SHA256)=(\S*)$", text, re.M))
    assert set(shas) == {
        "S6_OVERLAY_NOARCH_SHA256",
        "S6_OVERLAY_X86_64_SHA256",
        "S6_OVERLAY_AARCH64_SHA256",
        "S6_OVERLAY_SYMLINKS_SHA256",
    }, shas
    for name, value in shas.items():
        assert re.fullmatch(r"[0-9a-f]{64}", value), f"{name} is not a SHA-256: {value!r}"
    assert len(set(shas.values())) == 4
    assert len(re.findall(r"\bsha256sum -c\b", text)) == 3
    for tarball in ("s6-overlay-noarch", "s6-overlay-${s6_arch}", "s6-overlay-symlinks-noarch"):
        assert f"{tarball}.tar.xz" in text
    assert len(re.findall(r"curl -fsSL --retry 3\b", text)) == 3
    assert len(re.findall(r"\btar -C / -Jxpf\b", text)) == 3
    assert "amd64) s6_arch=x86_64" in text and "arm64) s6_arch=aarch64" in text
    assert "Unsupported TARGETARCH" in text and "exit 1" in text


def test_dockerfile_runtime_contract() -> None:
    text = _dockerfile_text()
    instructions = bootsim.dockerfile_instructions(text)
    froms = [i for i in instructions if i.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim-\w+$", text, re.M)
    assert re.search(r"pip wheel\b.*--no-deps\b.* \. -w /dist", text)
    # the messaging extra brings aiohttp: without it no API server, no messaging platform
    assert '"hermes-agent[messaging]==0.19.0"' in text
    assert 'python -c "import aiohttp"' in text
    assert "python -m venv /opt/hermes-tasks/venv" in text
    assert any(
        i.startswith("ENV ") and f'PATH="{VENV_BIN}:${{PATH}}"' in i for i in instructions
    )
    assert any(i.startswith("ENV ") and "HERMES_HOME=/opt/data" in i for i in instructions)
    user_setup = next(i for i in instructions if "useradd" in i)
    assert "groupadd -g 10000 hermes" in user_setup
    assert re.search(r"\buseradd -u 10000 -g 10000\b.*-d /opt/data .*\bhermes\b", user_setup)
    mkdir_at = next(n for n, i in enumerate(instructions) if "mkdir -p /opt/data" in i)
    volume_at = instructions.index("VOLUME /opt/data")
    assert mkdir_at < volume_at
    # the image takes a command as hermes-agent's does (SPEC §15): /init runs the wrapper
    assert 'ENTRYPOINT ["/init", "/opt/hermes-tasks/main-wrapper.sh"]' in instructions
    assert ("COPY --chmod=0755 docker/main-wrapper.sh /opt/hermes-tasks/main-wrapper.sh"
            in instructions)
    assert "CMD []" in instructions
    assert "COPY --chmod=0755 docker/cont-init.d/ /etc/cont-init.d/" in instructions
    users = [i for i in instructions if i.startswith("USER ")]
    assert users and users[-1] == "USER root", users
    assert instructions[-1] == "USER root"


def test_dockerfile_s6_behaviour_is_a_deliberate_choice() -> None:
    text = _dockerfile_text()
    m = re.search(r"\bS6_BEHAVIOUR_IF_STAGE2_FAILS=(\d)\b", text)
    assert m and m.group(1) in "012"
    assert re.search(r"\bS6_CMD_WAIT_FOR_SERVICES_MAXTIME=\d+\b", text)
    # The choice is explained in a comment above it.
    comment = "\n".join(ln for ln in text.splitlines() if ln.lstrip().startswith("#"))
    assert f"S6_BEHAVIOUR_IF_STAGE2_FAILS={m.group(1)}:" in comment


def test_dockerfile_never_gives_the_scandir_away() -> None:
    for n, line in enumerate(_dockerfile_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        code = line
        assert not re.search(r"\bch(own|mod|grp)\b.*(/run/service|\.s6-svscan)", code), (
            f"Dockerfile:{n}: {line.strip()}"
        )
        assert not re.search(r"\bchown\b.*\s-[A-Za-z]*R", code), f"Dockerfile:{n}: {line.strip()}"
