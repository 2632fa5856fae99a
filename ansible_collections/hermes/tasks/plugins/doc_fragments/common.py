"""The options every hermes.tasks module shares (``extends_documentation_fragment: hermes.tasks.common``)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  inventory:
    description:
      - Path on the managed host of the hermes-tasks inventory (a file, or a directory holding
        C(hosts.yml)), passed as C(--inventory).
      - When omitted, hermes-tasks uses C($HERMES_TASKS_INVENTORY) or its shipped container
        inventory.
    type: path
  inventory_content:
    description:
      - The text of a hermes-tasks inventory, written to a private temporary file on the
        managed host for this one call, for example the one-host settings file
        built by the C(hermes.tasks.gateways) role from the host's resolved variables. Check
        mode then sees the same settings a run would use, even before they are saved anywhere.
      - Never pass the controller's raw inventory text, which lacks Ansible's resolved variables
        (C(group_vars), C(host_vars), C(-e), dynamic inventories).
      - Mutually exclusive with O(inventory).
    type: str
  settings:
    description:
      - Settings that override the inventory, each passed as C(--var key=value) with the
        value written as YAML (so numbers, booleans, lists and mappings keep their type).
      - Values are part of the task's invocation; keep secrets in the inventory, or set
        C(no_log) on the task. In the returned RV(commands) the values of C(extra_env),
        C(profile_vars) and secret-looking keys are masked.
      - The alias C(vars) is deprecated (it shares its name with the task keyword, so a
        mis-indented C(vars:) silently did nothing) and will be removed in 1.0.0.
    type: dict
    default: {}
    aliases: [vars]
  host:
    description:
      - The inventory entry hermes-tasks uses on this host, passed as C(--host).
      - Defaults to the play's C(inventory_hostname), so one fleet inventory serves every
        host. An empty string passes no C(--host) and lets hermes-tasks choose
        (C($HERMES_TASKS_HOST), C(localhost), or the only entry).
    type: str
  executable:
    description:
      - The C(hermes-tasks) console script on the managed host (a name on C(PATH) or a path).
    type: str
    default: hermes-tasks
"""
