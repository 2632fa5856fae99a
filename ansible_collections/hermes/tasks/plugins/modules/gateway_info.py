#!/usr/bin/python
# MIT License (see the hermes-tasks repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gateway_info
short_description: Read the status of a host's hermes gateways
description:
  - Runs C(hermes-tasks gateway.status --json) on the managed host and returns its
    C(gateways) list, one entry per gateway slot registered for a profile placed on the
    host (or the one named), with readiness, ports, the last exit and its reason, and the
    host that owns the profile on a shared volume.
  - Changes nothing; runs the same in check mode.
version_added: 0.2.0
author:
  - hermes-tasks developers (@hermes-tasks)
requirements:
  - hermes-tasks (its C(hermes-tasks) console script) on the managed host
options:
  name:
    description:
      - Only this profile's gateway (it must be placed on the host). Every registered
        gateway when omitted.
    type: str
    aliases: [profile]
extends_documentation_fragment:
  - hermes.tasks.common
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: hermes.tasks.gateway
"""

EXAMPLES = r"""
- name: Read every gateway of the host
  hermes.tasks.gateway_info:
  register: hermes

- name: Fail unless alice's gateway is ready
  hermes.tasks.gateway_info:
    name: alice
  register: alice
  failed_when: not alice.gateways[0].ready
"""

RETURN = r"""
host:
  description: The inventory entry (host) the status was read for.
  returned: always
  type: str
  sample: hermes-a
gateways:
  description:
    - C(hermes-tasks gateway.status --json)'s entries. Keys beyond these may be present,
      depending on the hermes-tasks version.
  returned: always
  type: list
  elements: dict
  contains:
    profile:
      description: The profile.
      type: str
    slot:
      description: The gateway slot's name.
      type: str
    registered:
      description: Whether the slot exists in the scandir.
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
    standby:
      description: Up here, waiting while another host owns the profile.
      type: bool
    owner:
      description: The host holding the profile's ownership record (C(host_id), C(pid), C(since)), or null.
      type: dict
    api_server_port:
      description: The API server port the gateway binds (null when unknown).
      type: int
    webhook_port:
      description: The webhook port the gateway binds (null when unknown).
      type: int
  sample:
    - profile: alice
      slot: gateway-alice
      registered: true
      up: true
      ready: true
      pid: 4242
      desired_state: running
      exit_code: null
      reason: null
      standby: false
      owner: {host_id: hermes-a, pid: 4242, since: "2026-01-01T00:00:00Z"}
      api_server_port: 8651
      webhook_port: 8751
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
    fail,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS, name=dict(type="str", aliases=["profile"])),
        supports_check_mode=True,
        mutually_exclusive=EXCLUSIVE,
    )
    tool = HermesTasks(module)
    args = ["-p", module.params["name"]] if module.params["name"] else []
    try:
        doc = tool.run("gateway.status", *args)
    except TaskFailed as exc:
        fail(module, exc, commands=tool.commands)
    gateways = doc.get("gateways")
    gateways = [g for g in gateways if isinstance(g, dict)] if isinstance(gateways, list) else []
    module.exit_json(changed=False, gateways=gateways, commands=tool.commands,
                     host=doc.get("host") or module.params["host"] or "")


if __name__ == "__main__":
    main()
