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
  - In check mode it passes the task's own C(--check), which changes nothing and reports what
    a run would do.
  - A gateway this host does not run (the profile is not placed here by C(gateway_profiles))
    fails the task with that reason; so does a gateway the tool saw exit 78 (a configuration
    error its C(finish) will not restart). When the module finds it so before starting, it
    starts it and waits to see, even without O(wait); when it finds it so just after a start,
    the task fails.
  - In diff mode the gateway's status before and after (registered, up, wanted up, desired
    state) is shown; in check mode, what the task would do.
version_added: 0.1.0
author:
  - hermes-tasks developers (@hermes-tasks)
requirements:
  - hermes-tasks (its C(hermes-tasks) console script) on the managed host
  - s6 supervising the gateway slots on the managed host
options:
  name:
    description:
      - The profile whose gateway to act on; C(default) is the root profile.
    type: str
    default: default
    aliases: [profile]
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
      - Seconds to wait with O(wait=true) (or for a gateway last seen exiting 78).
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
  - module: hermes.tasks.gateway_info
  - module: hermes.tasks.reconcile
  - module: hermes.tasks.profile
"""

EXAMPLES = r"""
- name: Start alice's gateway and wait until it is ready
  hermes.tasks.gateway:
    name: alice
    state: started
    wait: true

- name: Stop the default gateway
  hermes.tasks.gateway:
    state: stopped

- name: Restart bob's gateway after a configuration change
  hermes.tasks.gateway:
    name: bob
    state: restarted
    inventory: /etc/hermes-tasks/inventory.yml
"""

RETURN = r"""
name:
  description: The profile acted on.
  returned: always
  type: str
  sample: alice
state:
  description: The state asked for.
  returned: always
  type: str
  sample: started
status:
  description:
    - The gateway's C(hermes-tasks gateway.status --json) entry after the task (in check mode,
      before it, as nothing changed). Keys beyond these may be present, depending on the
      hermes-tasks version.
  returned: when the tool could report it
  type: dict
  contains:
    registered:
      description: Whether the gateway's slot exists in the scandir.
      type: bool
    up:
      description: Whether s6 reports the gateway process up.
      type: bool
    ready:
      description: Whether the gateway says it is running as the supervised process.
      type: bool
    pid:
      description: The gateway's process id while up.
      type: int
    desired_state:
      description: The desired state recorded in the profile's C(gateway_state.json).
      type: str
    exit_code:
      description: Its last exit code while down.
      type: int
    reason:
      description: The reason the gateway recorded for its last exit.
      type: str
  sample: {profile: alice, slot: gateway-alice, registered: true, up: true, ready: true,
           pid: 4242, desired_state: running, exit_code: null, reason: null}
results:
  description: The task's report row.
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
      description: The desired state recorded before the task.
      type: str
    action:
      description: What the task did (or in check mode would do).
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
      prior_state: stopped
      action: started
      result: changed
      message: "published; recorded running"
stats:
  description: Counts of rows by result.
  returned: always
  type: dict
  sample: {ok: 0, changed: 1, skipped: 0, failed: 0}
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
SHOWN = ("registered", "up", "wanted_up", "desired_state")
# The exit code a gateway's `finish` does not restart: its configuration is wrong.
EX_CONFIG = 78


def status(tool, name):
    """The gateway's status entry, or None when the tool cannot say (its error comes later,
    from the task itself)."""
    try:
        gateways = tool.run("gateway.status", "-p", name).get("gateways")
    except TaskFailed:
        return None
    return gateways[0] if isinstance(gateways, list) and gateways and \
        isinstance(gateways[0], dict) else None


def config_exit(st):
    """Why a gateway wanted running stays down after exiting 78, or None."""
    if not st or st.get("up") or st.get("wanted_up") or st.get("exit_code") != EX_CONFIG:
        return None
    if st.get("desired_state") not in (None, "running"):
        return None
    # the tool's own wording for such a row (hermes_tasks/supervision.py failure())
    return f"exited {EX_CONFIG}" + (f": {st['reason']}" if st.get("reason") else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            name=dict(type="str", default="default", aliases=["profile"]),
            state=dict(type="str", default="started", choices=list(TASKS)),
            wait=dict(type="bool", default=False),
            timeout=dict(type="float", default=60),
        ),
        supports_check_mode=True,
        mutually_exclusive=EXCLUSIVE,
    )
    p = module.params
    name, state = p["name"], p["state"]
    tool = HermesTasks(module)
    result = dict(name=name, state=state, commands=tool.commands)
    starting = state != "stopped"
    before = status(tool, name) if starting or module._diff or module.check_mode else None
    seen_exit = config_exit(before) if starting else None
    args = ["-p", name]
    if module.check_mode:
        args.append("--check")
        if seen_exit:
            module.warn(f"gateway-{name} {seen_exit}; a run starts it again and waits to see")
    elif p["wait"] or seen_exit:
        args += ["--wait", "--timeout", f"{p['timeout']:g}"]
    try:
        doc = tool.run(TASKS[state], *args)
    except TaskFailed as exc:
        fail(module, exc, name=name, state=state, commands=tool.commands)
    rows, stats = doc.get("results") or [], doc.get("stats") or {}
    result.update(changed=changed(rows), results=rows, stats=stats)
    after = before if module.check_mode else status(tool, name)
    if after is not None:
        result["status"] = after
    if starting and not module.check_mode and not p["wait"]:
        why = config_exit(after)
        if why:
            module.fail_json(msg=f"gateway-{name}: {why}", **result)
    if module._diff:
        if module.check_mode:
            result["diff"] = [{"prepared": f"{r.get('slot') or 'gateway-' + name}: "
                                           f"{r.get('message') or r.get('action')}\n"}
                              for r in rows if r.get("result") == "changed"]
        elif before is not None and after is not None:
            result["diff"] = dict(before=dict((k, before.get(k)) for k in SHOWN),
                                  after=dict((k, after.get(k)) for k in SHOWN),
                                  before_header=f"gateway-{name}", after_header=f"gateway-{name}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
