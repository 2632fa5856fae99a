"""Action plugin of hermes.tasks.gateway_info: fills in ``host`` (see plugin_utils/hostdefault)."""

from __future__ import annotations

from ansible_collections.hermes.tasks.plugins.plugin_utils.hostdefault import ActionModule

__all__ = ["ActionModule"]
