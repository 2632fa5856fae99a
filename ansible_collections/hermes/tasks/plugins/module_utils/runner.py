"""Running the ``hermes-tasks`` console script from a module and reading its ``--json`` report.

Shared by the ``hermes.tasks`` modules. Only the standard library and ansible's own
module_utils: it runs on the managed host, where ``hermes_tasks`` is a separate program.
"""

from __future__ import annotations

import json
import os
import tempfile

# Options every module takes (documented in each module's DOCUMENTATION).
COMMON_ARGS = dict(
    inventory=dict(type="path"),
    inventory_content=dict(type="str", no_log=True),
    # `settings`, not `vars`: a mis-indented task keyword `vars:` must not silently do nothing.
    settings=dict(type="dict", default={}, aliases=["vars"],
                  deprecated_aliases=[dict(name="vars", version="1.0.0",
                                           collection_name="hermes.tasks")]),
    host=dict(type="str"),
    executable=dict(type="str", default="hermes-tasks"),
)

EXCLUSIVE = [("inventory", "inventory_content")]

WARNING_PREFIX = "hermes-tasks: warning: "
ERROR_PREFIX = "hermes-tasks: error: "


class TaskFailed(Exception):
    """A hermes-tasks call that failed: its message and whatever it reported."""

    def __init__(self, msg, **facts):
        super().__init__(msg)
        self.msg = msg
        self.facts = facts


class HermesTasks:
    """One module's view of ``hermes-tasks`` on this host: the argv and the reports.

    ``run()`` returns the parsed JSON document of a task; a failure (an error exit, a
    failed row, output that is not JSON) raises :class:`TaskFailed` with one line saying
    what went wrong, taken from the tool's own message.
    """

    def __init__(self, module):
        self.module = module
        self.commands = []  # every argv run, returned to the user as `commands`

    def executable(self):
        exe = self.module.params["executable"]
        if os.path.sep in exe:
            if not os.access(exe, os.X_OK):
                self.module.fail_json(msg=f"{exe} is not an executable file")
            return exe
        found = self.module.get_bin_path(exe)
        if not found:
            self.module.fail_json(
                msg=f"{exe} not found on PATH: install hermes-tasks on this host or set the "
                    "module's `executable` option to its console script")
        return found

    def _inventory_file(self, content):
        """``inventory_content`` as a private file in the module's temp dir (removed with it)."""
        if getattr(self, "_inventory_path", None) is None:
            fd, path = tempfile.mkstemp(prefix="hermes-tasks-inventory-", suffix=".yml",
                                        dir=self.module.tmpdir)
            with os.fdopen(fd, "w") as fh:
                fh.write(content if content.endswith("\n") else content + "\n")
            self._inventory_path = path
        return self._inventory_path

    def argv(self, task, *args):
        """The full command: task and its arguments, then the shared flags."""
        p = self.module.params
        cmd = [self.executable(), task] + list(args)
        if p.get("inventory_content") is not None:
            cmd += ["--inventory", self._inventory_file(p["inventory_content"])]
        elif p.get("inventory"):
            cmd += ["--inventory", p["inventory"]]
        for key in sorted(p.get("settings") or {}):
            # JSON is YAML flow syntax, so every value reaches hermes-tasks with its type;
            # a string goes as typed, as on the command line (hermes-tasks keeps path
            # settings' text verbatim, quotes included).
            value = p["settings"][key]
            cmd += ["--var", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        if p.get("host"):
            cmd += ["--host", p["host"]]
        return cmd

    def run(self, task, *args):
        """Run ``hermes-tasks TASK ARGS… --json``; return its JSON document."""
        cmd = self.argv(task, *(list(args) + ["--json"]))
        self.commands.append(_shown(cmd))
        rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C.UTF-8"})
        for line in err.splitlines():
            if line.startswith(WARNING_PREFIX):
                self.module.warn(line[len(WARNING_PREFIX):])
        doc = _json_object(out)
        errors = [ln[len(ERROR_PREFIX):] for ln in err.splitlines() if ln.startswith(ERROR_PREFIX)]
        if doc is None:
            msg = "; ".join(_unique(errors)) or err.strip() or out.strip() or \
                f"{task} exited {rc} without a report"
            raise TaskFailed(msg, rc=rc, stdout=out, cmd=_shown(cmd), **_other_stderr(err))
        rows = _rows(doc.get("results"))
        aside = registrar_row(doc)
        failed = [r for r in rows + aside if r.get("result") == "failed"]
        if rc != 0 or failed or doc.get("error"):
            # The JSON error, the failed rows and stderr's `error:` lines usually say the same
            # thing (the tool prints its one-line error in all three places): say it once.
            msgs = ([str(doc["error"])] if doc.get("error") else []) + \
                [_row_message(r) for r in failed] + errors
            msg = "; ".join(_unique(msgs)) or f"{task} exited {rc}"
            raise TaskFailed(msg, rc=rc, results=rows, stats=doc.get("stats", {}),
                             changed=changed(rows, aside), cmd=_shown(cmd),
                             **_other_stderr(err))
        return doc


def save_inventory(module, path, content):
    """Keep ``content`` at ``path`` (0600, written atomically) for the host's boot-time runs.

    Returns whether the file is (or, in check mode, would be) changed. The text is never
    shown: an inventory may hold secrets.
    """
    data = (content if content.endswith("\n") else content + "\n").encode()
    try:
        with open(path, "rb") as fh:
            same = fh.read() == data and os.fstat(fh.fileno()).st_mode & 0o7777 == 0o600
    except FileNotFoundError:
        same = False
    if same or module.check_mode:
        return not same
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, 0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".inventory-", dir=parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


# --var settings whose values may hold secrets (SPEC §8's words, and the env maps).
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASS", "CREDENTIAL")
ENV_SETTINGS = ("extra_env", "profile_vars")


def _shown(cmd):
    """``cmd`` as returned to the user: values of settings that may hold secrets masked."""
    out = list(cmd)
    for i in range(1, len(out)):
        if out[i - 1] == "--var" and "=" in out[i]:
            key = out[i].split("=", 1)[0]
            if key in ENV_SETTINGS or any(w in key.upper() for w in SECRET_WORDS):
                out[i] = key + "=********"
    return out


def _json_object(text):
    """The one JSON object a ``--json`` run prints on stdout, or None."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _row_label(row):
    return row.get("slot") or row.get("profile") or "?"


def _row_message(row):
    """``slot: message`` of a failed row (whose message may already name the slot)."""
    label, message = _row_label(row), str(row.get("message") or "failed")
    return message if message.startswith(label + ":") else f"{label}: {message}"


def _rows(value):
    """The report's rows, each a dict (a report from another version may differ)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def registrar_row(doc):
    """The registrar's row of a reconcile report as a list of zero or one row.

    The tool keeps it beside ``results`` (its recap may or may not count it, depending on
    the version): a registrar slot created or updated is a change on this host all the same.
    """
    row = doc.get("registrar")
    if not isinstance(row, dict):
        return []
    if any(r is row or r == row for r in _rows(doc.get("results"))):
        return []  # a version that lists it among the rows already
    return [row]


def _other_stderr(err):
    """``{"stderr": …}`` with what stderr says beyond the error and warning lines already
    in the message and the warnings, or nothing: each error is printed once."""
    rest = [ln for ln in err.splitlines()
            if ln.strip() and not ln.startswith((ERROR_PREFIX, WARNING_PREFIX))]
    return {"stderr": "\n".join(rest)} if rest else {}


def _unique(messages):
    """``messages`` without repeats, nor one contained in another kept message."""
    kept = []
    for m in messages:
        m = m.strip()
        if not m or any(m in k for k in kept):
            continue
        kept = [k for k in kept if k not in m] + [m]
    return kept


def changed(rows, aside=()):
    """Truthful `changed`: some row of the task's own report (the registrar's included)
    says it changed something."""
    return any(r.get("result") == "changed" for r in list(rows) + list(aside))


def diff_of(rows):
    """Ansible diff entries from the rows' unified diffs (``--diff`` puts one in each row)."""
    return [{"prepared": r["diff"]} for r in rows if r.get("diff")]


def fail(module, exc, **extra):
    """End the module with a TaskFailed's message and facts."""
    facts = dict(exc.facts)
    facts.update(extra)
    facts.setdefault("changed", False)
    module.fail_json(msg=exc.msg, **facts)
