#!/usr/bin/python
# MIT License (see the hermes-tasks repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gateway
short_description: Start, stop or restart one profile's hermes gateway
description:
  - Runs C(hermes-tasks gateway.start), C(gateway.stop) or C(gateway.restart) with C(--json)
    on the managed host; the gateway's C(desired_state) is recorded in its
    C(gateway_state.json) as hermes-tasks does.
  - The module is C(changed) exactly when the task's own report row is C(changed) (a gateway
    already up and desired C(running) is not started again; C(restarted) always changes).
  - C(gateway.*) tasks have no check flag of their own, so in check mode the module reads
    C(hermes-tasks gateway.status --json) and reports what the task would do, by the same rule
    the task uses, changing nothing.
  - In diff mode the gateway's status before and after (registered, up, wanted up, desired
    state) is shown.
version_added: 0.1.0
author:
  - hermes-tasks developers (@hermes-tasks)
options:
  profile:
    description:
      - The profile whose gateway to act on; C(default) is the root profile.
    type: str
    default: default
  state:
    description:
      - C(started) brings the gateway up (registering a missing slot) and records C(running);
        C(stopped) brings it down and records C(stopped); C(restarted) restarts it (bringing it
        up if it was down) and records C(running).
    type: str
    choices: [started, stopped, restarted]
    default: started
  wait:
    description:
      - Wait until the gateway is ready (C(started), C(restarted)) or down (C(stopped)). On a
        host where another host owns the profile the gateway waits as a standby and the
        task reports it.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait with O(wait=true).
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
seealso:
  - module: hermes.tasks.reconcile
  - module: hermes.tasks.profile
"""

EXAMPLES = r"""
- name: Start alice's gateway and wait until it is ready
  hermes.tasks.gateway:
    profile: alice
    state: started
    wait: true

- name: Stop the default gateway
  hermes.tasks.gateway:
    state: stopped

- name: Restart bob's gateway after a configuration change
  hermes.tasks.gateway:
    profile: bob
    state: restarted
    inventory: /etc/hermes-tasks/inventory.yml
"""

RETURN = r"""
results:
  description: The task's report row (in check mode, the predicted row).
  returned: always
  type: list
  elements: dict
  sample:
    - slot: gateway-alice
      profile: alice
      prior_state: stopped
      action: started
      result: changed
      message: ""
stats:
  description: Counts of rows by result.
  returned: always
  type: dict
status:
  description: The gateway's C(gateway.status) entry before the change (check or diff mode).
  returned: in check mode or diff mode
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
    fail,
)

TASKS = {"started": "gateway.start", "stopped": "gateway.stop", "restarted": "gateway.restart"}
ACTIONS = {"started": "started", "stopped": "stopped", "restarted": "restarted"}
SHOWN = ("registered", "up", "wanted_up", "desired_state")


def status(tool, profile):
    gateways = tool.run("gateway.status", "-p", profile).get("gateways") or [{}]
    return gateways[0]


def would_change(state, st):
    """What the task would report, by control.act's own rule: is the gateway already there?"""
    if state == "restarted":
        return True
    if state == "started":
        return not (st.get("registered") and st.get("up") and st.get("wanted_up")
                    and st.get("normally_up") and st.get("desired_state") == "running")
    if not st.get("registered"):
        return True  # the task records `stopped` and reports it changed
    return bool(st.get("up") or st.get("wanted_up") or st.get("normally_up")
                or st.get("desired_state") != "stopped")


def predicted(state, st):
    after = dict((k, st.get(k)) for k in SHOWN)
    if state == "stopped":
        after.update(up=False, wanted_up=False, desired_state="stopped")
    else:
        after.update(registered=True, up=True, wanted_up=True, desired_state="running")
    return after


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            profile=dict(type="str", default="default"),
            state=dict(type="str", default="started", choices=list(TASKS)),
            wait=dict(type="bool", default=False),
            timeout=dict(type="float", default=60),
        ),
        supports_check_mode=True,
        mutually_exclusive=EXCLUSIVE,
    )
    p = module.params
    tool = HermesTasks(module)
    result = dict(commands=tool.commands)
    try:
        before = status(tool, p["profile"]) if module.check_mode or module._diff else None
        if module.check_mode:
            change = would_change(p["state"], before)
            rows = [dict(slot=before.get("slot"), profile=p["profile"],
                         prior_state=before.get("desired_state"), action=ACTIONS[p["state"]],
                         result="changed" if change else "ok",
                         message="check mode: predicted from gateway.status")]
            after = predicted(p["state"], before) if change else None
            stats = dict(ok=int(not change), changed=int(change), skipped=0, failed=0)
        else:
            args = ["-p", p["profile"]]
            if p["wait"]:
                args += ["--wait", "--timeout", f"{p['timeout']:g}"]
            doc = tool.run(TASKS[p["state"]], *args)
            rows, stats = doc.get("results", []), doc.get("stats", {})
            after = status(tool, p["profile"]) if module._diff else None
    except TaskFailed as exc:
        fail(module, exc, commands=tool.commands)
    result.update(changed=changed(rows), results=rows, stats=stats)
    if before is not None:
        result["status"] = before
    if module._diff and before is not None:
        shown = dict((k, before.get(k)) for k in SHOWN)
        result["diff"] = dict(before=shown, after=dict((k, (after or shown).get(k)) for k in SHOWN),
                              before_header=f"gateway-{p['profile']}",
                              after_header=f"gateway-{p['profile']}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
