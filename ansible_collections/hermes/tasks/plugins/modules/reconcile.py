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
  - The registrar slot hermes-tasks keeps beside the gateways counts as any slot does.
  - Profiles not placed on the host are left out of RV(results) (they are counted in
    RV(stats)), so a fleet of many profiles does not print one row per profile per host.
version_added: 0.1.0
author:
  - hermes-tasks developers (@hermes-tasks)
requirements:
  - hermes-tasks (its C(hermes-tasks) console script) on the managed host
  - s6 supervising the gateway slots on the managed host
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
      - Wait until every gateway is ready or down, as desired (C(hermes-tasks reconcile
        --wait)); a gateway that fails to become ready fails the task with its reason.
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

- name: Reconcile with settings built from this host's variables, and keep them there
  hermes.tasks.reconcile:
    inventory_content: "{{ {'all': {'hosts': {inventory_hostname: this_host}}} | to_nice_yaml }}"
    save_inventory: /etc/hermes-tasks/inventory.yml
    wait: true
  vars:
    this_host:
      gateway_profiles: [alice]

- name: Place only alice on this host for this run
  hermes.tasks.reconcile:
    settings:
      gateway_profiles: [alice]
"""

RETURN = r"""
results:
  description:
    - One row per slot, as C(hermes-tasks reconcile --json) reports it; profiles not placed
      on this host are left out (see RV(stats)).
  returned: always
  type: list
  elements: dict
  contains:
    slot:
      description: The gateway slot's name.
      type: str
    profile:
      description: The profile.
      type: str
    prior_state:
      description: The desired state recorded before the run.
      type: str
    action:
      description: What the run did (or in check mode would do) to the slot.
      type: str
    result:
      description: One of C(ok), C(changed), C(skipped), C(failed).
      type: str
    message:
      description: What happened, in a few words.
      type: str
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
registrar:
  description: The registrar slot's row (the root-side helper slot hermes-tasks keeps).
  returned: when hermes-tasks reports one
  type: dict
  sample: {slot: hermes-tasks-registrar, action: started, result: changed, message: published}
inventory_saved:
  description: Whether O(save_inventory) was (in check mode, would be) written.
  returned: when save_inventory is set
  type: bool
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
    registrar_row,
    save_inventory,
)


def shown(rows):
    """The rows worth a line: not the profiles another host runs (still in `stats`)."""
    return [r for r in rows if not (r.get("action") == "skipped" and r.get("result") == "skipped"
                                    and not r.get("slot"))]


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
    if module.params["wait"] and not module.check_mode:
        args += ["--wait", "--timeout", f"{module.params['timeout']:g}"]
    try:
        doc = tool.run("reconcile", *args)
    except TaskFailed as exc:
        if "results" in exc.facts:
            exc.facts["results"] = shown(exc.facts["results"])
        fail(module, exc, commands=tool.commands,
             changed=bool(exc.facts.get("changed") or saved))
    rows = doc.get("results") or []
    aside = registrar_row(doc)
    result = dict(changed=changed(rows, aside) or bool(saved), results=shown(rows),
                  stats=doc.get("stats", {}), commands=tool.commands)
    if aside:
        # without its diff: the registrar's files hold a copy of the settings
        result["registrar"] = dict((k, v) for k, v in aside[0].items() if k != "diff")
    if saved is not None:
        result["inventory_saved"] = saved
    if module._diff:
        # The registrar's own files hold a copy of the settings: say what changed, not them.
        result["diff"] = diff_of(rows) + [
            {"prepared": f"{r.get('slot') or 'registrar'}: {r.get('message') or r.get('action')}\n"}
            for r in aside if r.get("result") == "changed"]
        if saved:
            result["diff"].insert(0, {"prepared": f"inventory {module.params['save_inventory']}: "
                                                  "updated (content not shown)\n"})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
