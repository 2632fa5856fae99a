"""extra_env cannot break the run script or the privilege drop (issue 11.3; SPEC §3, §5, §8).

Hypothesis generates keys and values, valid and invalid alike (control characters,
newlines, ``=``, unicode, reserved names, ``LD_*``). An independent oracle says which are
valid: an invalid one must be a one-line InventoryError; a valid set must render a run
script that passes ``sh -n`` and whose exports, run in ``sh``, yield exactly the values.
Also: every reserved key is refused through the CLI before anything changes, the privilege
fact is computed before any inventory value is exported, and secret-looking values are
masked in ``--diff`` and ``slot.render`` unless ``--show-secrets``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import reliability_report
import s6env
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_tasks import inventory, redact
from hermes_tasks.errors import InventoryError
from hermes_tasks.render import Renderer

CASES = {
    "env.property.keys_values": "hypothesis: extra_env keys and values, valid and invalid "
                                "(control characters, newlines, '=', unicode, reserved names)",
    "env.reserved.cli": "every reserved extra_env key (PATH, HOME, LD_PRELOAD…) through --var "
                        "to reconcile, as root",
    "env.privilege_fact_first": "the run script decides the privilege drop before any "
                                "inventory value is exported; a colliding name fails closed",
    "secrets.masked": "secret-looking extra_env values in --diff, slot.render and the slot "
                      "files' modes, with and without --show-secrets",
}
RESERVED = ["PATH", "HOME", "HERMES_HOME", "IFS", "ENV", "BASH_ENV", "CDPATH", "SHELL",
            "HERMES_S6_SUPERVISED_CHILD", "HERMES_SUPERVISED_CHILD"]
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TRIES: dict[str, int] = {}


def key_ok(key: str) -> bool:
    """The oracle for keys, from SPEC §3 (written independently of the loader)."""
    return (KEY_RE.fullmatch(key) is not None and key not in RESERVED
            and not key.startswith("LD_") and key != "run_as_root")


def value_ok(value: object) -> bool:
    """The oracle for values: scalars; text without control characters other than tab."""
    if isinstance(value, (bool, int, float)):
        return True
    for ch in value:
        code = ord(ch)
        if (code < 0x20 and ch != "\t") or 0x7F <= code <= 0x9F or ch in "\u2028\u2029" \
                or 0xD800 <= code <= 0xDFFF:
            return False
    return True


def as_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


GOOD_KEYS = st.from_regex(r"HT_[A-Za-z0-9_]{0,10}", fullmatch=True)
BAD_CHARS = st.sampled_from(["\n", "=", "-", " ", "é", "\t", ".", "$", "\x00", "\u2028"])
KEYS = st.one_of(
    GOOD_KEYS,
    st.sampled_from(RESERVED + ["run_as_root"]),
    st.builds(lambda k: "LD_" + k[3:], GOOD_KEYS),
    st.builds(lambda k, c, pos: k[:pos] + c + k[pos:], GOOD_KEYS, BAD_CHARS,
              st.integers(0, 13)),
    st.text(max_size=8),
)
GOOD_VALUES = st.one_of(
    st.text(st.one_of(st.just("\t"), st.characters(blacklist_categories=("Cs", "Cc", "Zl",
                                                                         "Zp"))), max_size=30),
    st.integers(-10**6, 10**6), st.booleans())
VALUES = st.one_of(
    GOOD_VALUES,
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),  # control chars too
    st.sampled_from(["a\nb", "x=y", "\t", "$(id)", "'\"`", "é ✓ 🙂", "\x85", "line\r"]),
    st.integers(-10**6, 10**6), st.booleans(),
)


def load_via_yaml(tmp: Path, extra_env: dict) -> inventory.Settings:
    path = tmp / "hosts.yml"
    doc = {"all": {"vars": {"scandir": str(tmp), "extra_env": extra_env},
                   "hosts": {"localhost": {}}}}
    path.write_text(yaml.safe_dump(doc))  # escaped: allow_unicode folds U+0085 to a space
    return inventory.load(path, environ={})


def exported(script: str, keys: list[str]) -> list[str]:
    """Run the script's export lines of ``keys`` in sh; return the values sh then holds."""
    if not keys:
        return []
    lines = [line for line in script.splitlines()
             if any(line.startswith(f"export {k}=") for k in keys)]
    assert len(lines) == len(keys), lines
    show = "".join(f' "${{{k}}}"' for k in keys)
    res = subprocess.run(["sh", "-c", "\n".join(lines) + f"\nprintf '%s\\0'{show}\n"],
                         capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    return res.stdout.decode("utf-8").split("\0")[:-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.one_of(st.dictionaries(GOOD_KEYS, GOOD_VALUES, max_size=4),
                    st.dictionaries(KEYS, VALUES, max_size=4)))
def prop_keys_and_values(env):
    tmp = Path(tempfile.mkdtemp(prefix="hermes-env-"))
    try:
        valid = all(key_ok(k) and value_ok(v) for k, v in env.items())
        try:
            cfg = load_via_yaml(tmp, env)
        except InventoryError as exc:
            assert not valid, f"refused a valid extra_env {env!r}: {exc}"
            assert "\n" not in str(exc) and "extra_env" in str(exc)
            TRIES["invalid"] = TRIES.get("invalid", 0) + 1
            return
        except yaml.YAMLError:  # not representable in YAML at all: nothing to load
            assert not valid
            return
        assert valid, f"accepted an invalid extra_env {env!r}"
        assert dict(cfg.extra_env) == {k: as_text(v) for k, v in env.items()}
        run = Renderer(cfg).gateway("alice", True).files["run"].content.decode()
        res = subprocess.run(["sh", "-n"], input=run.encode(), capture_output=True, timeout=10)
        assert res.returncode == 0, res.stderr
        keys = sorted(env)
        assert exported(run, keys) == [as_text(env[k]) for k in keys]
        # the privilege fact is fixed before the first inventory value is exported
        assert run.index("readonly run_as_root") < min(
            (run.index(f"export {k}=") for k in keys), default=len(run))
        TRIES["valid"] = TRIES.get("valid", 0) + 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_extra_env_keys_and_values_valid_and_invalid():
    TRIES.clear()
    prop_keys_and_values()
    assert TRIES.get("valid", 0) >= 10 and TRIES.get("invalid", 0) >= 10, TRIES
    reliability_report.record(
        "env.property.keys_values", TRIES["valid"] + TRIES["invalid"],
        "every invalid set was one InventoryError line; every valid one rendered a run "
        "script passing sh -n whose exports gave exactly the values", **TRIES)


def test_rendered_run_scripts_with_odd_values_are_shellcheck_clean(tmp_path):
    env = {"HT_TAB": "a\tb", "HT_UNI": "é ✓ 🙂", "HT_Q": "it's \"$(id)\" `x` \\",
           "HT_EQ": "a=b=c", "HT_EMPTY": ""}
    cfg = load_via_yaml(tmp_path, env)
    run = tmp_path / "run"
    run.write_bytes(Renderer(cfg).gateway("alice", True).files["run"].content)
    res = subprocess.run(["shellcheck", "-s", "sh", str(run)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    assert exported(run.read_text(), sorted(env)) == [env[k] for k in sorted(env)]


@pytest.mark.parametrize("key", [*RESERVED, "LD_PRELOAD", "LD_LIBRARY_PATH", "run_as_root",
                                 "FOO\n", "A=B"])
def test_reserved_and_malformed_keys_are_refused_before_anything_changes(sandbox, key):
    flow = yaml.safe_dump({"extra_env": {key: "/opt/venv/bin"}}, default_flow_style=True,
                          width=10**6).strip()[len("{extra_env: "):-1]
    res = s6env.run_tasks(sandbox, "reconcile", "--var", f"extra_env={flow}")
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "extra_env" in lines[0] and "Traceback" not in res.stderr
    assert os.listdir(sandbox.scandir) == []  # nothing published, no lock, no cache
    if key in RESERVED or key.startswith("LD_"):
        reliability_report.record("env.reserved.cli", len(RESERVED) + 2,
                                  "each was one usage line, exit 1; the scandir stayed empty")


def test_the_privilege_fact_comes_first_and_a_collision_fails_closed(tmp_path):
    """Even if a value named like the script's fact got through, sh refuses to export it."""
    cfg = load_via_yaml(tmp_path, {"HT_X": "1"})
    run = Renderer(cfg).gateway("alice", True).files["run"].content.decode()
    fact, first_export = run.index("readonly run_as_root"), run.index("export HT_X=")
    assert fact < first_export
    assert run.index('if [ "$(id -u)" = 0 ]') < first_export
    assert 'if [ "$run_as_root" = yes ]' in run
    # what a colliding export would do: the shell stops before the exec
    forged = run.replace("export HT_X=1", "export run_as_root=no")
    body = forged.split("\n", 1)[1]  # without the with-contenv shebang
    res = subprocess.run(["sh", "-c", body], capture_output=True, text=True, timeout=10,
                         env={"PATH": "/usr/bin:/bin", "HERMES_HOME": str(tmp_path)})
    assert res.returncode != 0 and "read" in res.stdout + res.stderr, res
    reliability_report.record("env.privilege_fact_first", 2,
                              "run_as_root is computed (id -u) and made readonly before any "
                              "extra_env export; an export of that name stops the script")


SECRET_ENV = {"OPENAI_API_KEY": "sk-live-1234567890", "HT_TOKEN": "tok", "db_password": "pw",
              "HT_PLAIN": "visible"}


def test_secrets_are_masked_unless_asked(sandbox):
    sb = sandbox
    (sb.home / "profiles" / "alice").mkdir(parents=True)
    (sb.home / "profiles" / "alice" / "SOUL.md").write_text("soul\n")
    flow = yaml.safe_dump(SECRET_ENV, default_flow_style=True, width=10**6).strip()
    env_var = f"extra_env={flow}"
    diff = s6env.run_tasks(sb, "reconcile", "--check", "--diff", "--var", env_var)
    assert diff.returncode == 0, diff.stderr
    for secret in ("sk-live-1234567890", "tok", "pw"):
        assert f"={secret}" not in diff.stdout and f"\"{secret}\"" not in diff.stdout
    assert "export OPENAI_API_KEY=********" in diff.stdout
    assert "export HT_PLAIN=visible" in diff.stdout
    shown = s6env.run_tasks(sb, "reconcile", "--check", "--diff", "--show-secrets",
                            "--var", env_var)
    assert "export OPENAI_API_KEY=sk-live-1234567890" in shown.stdout
    jdoc = json.loads(s6env.run_tasks(sb, "reconcile", "--check", "--diff", "--json",
                                      "--var", env_var).stdout)
    assert "sk-live" not in json.dumps(jdoc)
    render = s6env.run_tasks(sb, "slot.render", "alice", "--var", env_var)
    assert render.returncode == 0 and "sk-live" not in render.stdout
    assert "export HT_TOKEN=********" in render.stdout
    assert "sk-live" in s6env.run_tasks(sb, "slot.render", "alice", "--show-secrets",
                                        "--var", env_var).stdout
    # a changed secret: both sides masked, the change still visible
    assert s6env.run_tasks(sb, "reconcile", "--var", env_var).returncode == 0
    rotated = env_var.replace("sk-live-1234567890", "sk-live-rotated")
    diff2 = s6env.run_tasks(sb, "reconcile", "--check", "--diff", "--var", rotated).stdout
    assert "sk-live" not in diff2
    assert "-export OPENAI_API_KEY=********\n+export OPENAI_API_KEY=******** (changed)" in diff2
    # the files holding them are not readable by others
    assert stat.S_IMODE(os.stat(sb.slot("alice") / "run").st_mode) == 0o750
    assert redact.looks_secret("db_password") and not redact.looks_secret("HT_PLAIN")
    reliability_report.record("secrets.masked", 6,
                              "values of KEY/TOKEN/PASSWORD names printed as ******** in "
                              "--diff (text and JSON) and slot.render, shown with "
                              "--show-secrets; a rotated one marked (changed); run is 0750")


def test_the_registrar_copy_masks_whole_values(tmp_path):
    """The registrar's data/inventory.yml holds one line per value, so a long secret is
    masked whole (a folded YAML line would leak its continuation)."""
    cfg = load_via_yaml(tmp_path, {"HT_API_KEY": "s" * 300 + " tail", "HT_PLAIN": "p"})
    spec = Renderer(cfg).registrar("/usr/bin/python3")
    copy = spec.files["data/inventory.yml"]
    assert copy.mode == 0o640
    masked = redact.text(copy.content.decode())
    assert "sss" not in masked and "tail" not in masked
    assert "HT_API_KEY: ********" in masked and "HT_PLAIN: p" in masked
    (tmp_path / "copy.yml").write_bytes(copy.content)
    assert dict(inventory.load(tmp_path / "copy.yml", environ={}).extra_env) == dict(cfg.extra_env)
