#!/usr/bin/python
# MIT License (see the hermes-tasks repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: reconcile
short_description: Bring every hermes gateway slot on a host in line with its profiles
description:
  - Runs C(hermes-tasks reconcile --json) on the managed host. Each gateway slot of a
    profile placed on the host (C(gateway_profiles)) is published, updated, registered down
    or removed as the profiles on disk and their recorded desired state say.
  - The module is C(changed) exactly when some row of the task's own report is C(changed);
    a C(failed) row fails the module with that row's message.
  - In check mode it runs C(hermes-tasks reconcile --check), which changes nothing and reports
    what a run would do. In diff mode each changed slot file's unified diff is shown.
version_added: 0.1.0
author:
  - hermes-tasks developers (@hermes-tasks)
options:
  save_inventory:
    description:
      - Also keep O(inventory_content) at this path on the managed host (mode 0600, written
        atomically, only when it differs), for the host's boot-time reconcile
        (C(HERMES_TASKS_INVENTORY)). Counts as a change; in check mode nothing is written.
        The inventory's text is never shown in the diff (it may hold secrets).
      - Requires O(inventory_content).
    type: path
  wait:
    description:
      - After reconciling, wait until every gateway the run left started is ready (a
        standby of a profile running on another host counts as settled), with
        C(hermes-tasks gateway.start --wait).
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each gateway with O(wait=true).
    type: float
    default: 60
extends_documentation_fragment:
  - hermes.tasks.common
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - The managed host needs hermes-tasks installed; the module itself needs only Python.
  - Run it as the user that owns the scandir (root in the container).
seealso:
  - module: hermes.tasks.gateway
  - module: hermes.tasks.profile
"""

EXAMPLES = r"""
- name: Reconcile with the host's own inventory
  hermes.tasks.reconcile:

- name: Reconcile every host from the controller's fleet inventory, and keep a copy
  hermes.tasks.reconcile:
    inventory_content: "{{ lookup('ansible.builtin.file', inventory_file) }}"
    save_inventory: /etc/hermes-tasks/inventory.yml
    wait: true

- name: Place only alice on this host for this run
  hermes.tasks.reconcile:
    vars:
      gateway_profiles: [alice]
"""

RETURN = r"""
results:
  description: One row per slot (or skipped profile), as C(hermes-tasks reconcile --json) reports it.
  returned: always
  type: list
  elements: dict
  sample:
    - slot: gateway-alice
      profile: alice
      prior_state: running
      action: started
      result: changed
      message: ""
stats:
  description: Counts of rows by result.
  returned: always
  type: dict
  sample: {ok: 1, changed: 1, skipped: 0, failed: 0}
inventory_saved:
  description: Whether O(save_inventory) was (in check mode, would be) written.
  returned: when save_inventory is set
  type: bool
waited:
  description: With O(wait=true), the C(gateway.start --wait) row of each started gateway.
  returned: when wait is true and not in check mode
  type: list
  elements: dict
commands:
  description: Every hermes-tasks command line the module ran.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hermes.tasks.plugins.module_utils.runner import (
    COMMON_ARGS,
    EXCLUSIVE,
    HermesTasks,
    TaskFailed,
    changed,
    diff_of,
    fail,
    save_inventory,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS, wait=dict(type="bool", default=False),
                           timeout=dict(type="float", default=60),
                           save_inventory=dict(type="path")),
        supports_check_mode=True,
        mutually_exclusive=EXCLUSIVE,
        required_by={"save_inventory": "inventory_content"},
    )
    tool = HermesTasks(module)
    saved = None
    if module.params["save_inventory"]:
        try:
            saved = save_inventory(module, module.params["save_inventory"],
                                   module.params["inventory_content"])
        except OSError as exc:
            module.fail_json(msg=f"cannot save the inventory: {exc}")
    args = (["--check"] if module.check_mode else []) + (["--diff"] if module._diff else [])
    try:
        doc = tool.run("reconcile", *args)
    except TaskFailed as exc:
        fail(module, exc, commands=tool.commands)
    rows = doc.get("results", [])
    # The registrar's row (kept aside in the report) is a change of this host too.
    aside = [doc["registrar"]] if isinstance(doc.get("registrar"), dict) else []
    result = dict(changed=changed(rows + aside) or bool(saved), results=rows,
                  stats=doc.get("stats", {}), commands=tool.commands)
    if saved is not None:
        result["inventory_saved"] = saved
    if module._diff:
        result["diff"] = diff_of(rows)
        if saved:
            result["diff"].insert(0, {"prepared": f"inventory {module.params['save_inventory']}: "
                                                  "updated (content not shown)"})
    if module.params["wait"] and not module.check_mode:
        waited = []
        for row in rows:
            if row.get("action") != "started" or not row.get("profile"):
                continue
            try:
                got = tool.run("gateway.start", "-p", row["profile"], "--wait",
                               "--timeout", f"{module.params['timeout']:g}")
            except TaskFailed as exc:
                fail(module, exc, results=rows, stats=result["stats"], waited=waited,
                     changed=result["changed"], commands=tool.commands)
            waited += got.get("results", [])
        result["waited"] = waited
        result["changed"] = result["changed"] or changed(waited)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
