#!/usr/bin/python
# MIT License (see the hermes-tasks repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: profile
short_description: Create or delete a hermes profile and its gateway slot
description:
  - C(state=present) runs C(hermes-tasks profile.create NAME --json) on the managed host, which
    makes C(profiles/NAME/) with a C(SOUL.md) when missing (never overwriting one) and
    registers its gateway slot (down, or started with O(start=true)).
  - C(state=absent) runs C(hermes-tasks profile.delete NAME --json), which stops and removes the
    slot and moves the profile directory to C(.trash/profiles/) (or deletes it with
    O(purge=true)). A profile that does not exist is already absent (C(ok)).
  - The module is C(changed) exactly when a row of the task's own report is C(changed). Check
    mode passes C(--check) (nothing changes); diff mode shows the slot files' unified diff.
  - With O(start=true) on a host where the profile is not placed (C(gateway_profiles)), no
    gateway starts, and the task fails with that reason (after creating the profile, which is
    then C(changed)); in check mode too.
version_added: 0.1.0
author:
  - hermes-tasks developers (@hermes-tasks)
requirements:
  - hermes-tasks (its C(hermes-tasks) console script) on the managed host
options:
  name:
    description:
      - The profile name (C([a-z0-9][a-z0-9_-]{0,63})).
    type: str
    required: true
  state:
    description:
      - Whether the profile should exist.
    type: str
    choices: [present, absent]
    default: present
  start:
    description:
      - With C(state=present), start its gateway too (records C(desired_state=running)).
    type: bool
    default: false
  purge:
    description:
      - With C(state=absent), delete the profile directory instead of moving it to C(.trash).
    type: bool
    default: false
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
seealso:
  - module: hermes.tasks.reconcile
  - module: hermes.tasks.gateway
"""

EXAMPLES = r"""
- name: Create alice and start her gateway
  hermes.tasks.profile:
    name: alice
    start: true

- name: Delete bob, keeping his directory in .trash
  hermes.tasks.profile:
    name: bob
    state: absent
"""

RETURN = r"""
name:
  description: The profile.
  returned: always
  type: str
  sample: alice
state:
  description: The state asked for.
  returned: always
  type: str
  sample: present
results:
  description: The task's report rows (empty when an absent profile was already absent).
  returned: always
  type: list
  elements: dict
  contains:
    slot:
      description: The gateway slot's name (null when no slot is registered here).
      type: str
    profile:
      description: The profile.
      type: str
    prior_state:
      description: The desired state recorded before the task.
      type: str
    action:
      description: What the task did (or in check mode would do) to the slot.
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
      prior_state: null
      action: registered
      result: changed
      message: created profiles/alice
stats:
  description: Counts of rows by result.
  returned: always
  type: dict
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
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            start=dict(type="bool", default=False),
            purge=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        mutually_exclusive=EXCLUSIVE,
    )
    p = module.params
    tool = HermesTasks(module)
    facts = dict(name=p["name"], state=p["state"])
    check = ["--check"] if module.check_mode else []
    try:
        if p["state"] == "present":
            args = [p["name"]] + (["--start"] if p["start"] else []) + check + \
                (["--diff"] if module._diff else [])
            doc = tool.run("profile.create", *args)
        else:
            doc = tool.run("profile.delete", p["name"], *((["--purge"] if p["purge"] else []) + check))
    except TaskFailed as exc:
        # profile.delete's one-line error for a profile that is not there: already absent.
        if p["state"] == "absent" and exc.facts.get("rc") == 1 and \
                exc.msg.startswith(f"no profile '{p['name']}' under "):
            module.exit_json(changed=False, results=[], commands=tool.commands, **facts,
                             stats=dict(ok=0, changed=0, skipped=0, failed=0),
                             msg=f"profile {p['name']} is absent")
        fail(module, exc, commands=tool.commands, **facts)
    rows = doc.get("results") or []
    result = dict(changed=changed(rows), results=rows, stats=doc.get("stats", {}),
                  commands=tool.commands, **facts)
    if module._diff:
        result["diff"] = diff_of(rows)
    if p["state"] == "present" and p["start"]:
        # A start that does not happen (no slot here: not placed) is a failure, not a change.
        unstarted = [r for r in rows if r.get("action") == "skipped" or not r.get("slot")]
        if unstarted:
            module.fail_json(msg=f"profile {p['name']}: gateway not started: " +
                             (unstarted[0].get("message") or "no slot registered here"), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
