"""The ``hermes-tasks`` program: an ``invoke.Program`` over the bundled collection."""

from __future__ import annotations

from invoke import Collection, Exit, Program

from . import __version__, errors
from .commands import gateway, profile, reconcile, slot


def namespace() -> Collection:
    ns = Collection()
    ns.add_task(reconcile.reconcile)
    ns.add_collection(Collection("gateway", gateway.start, gateway.stop, gateway.restart,
                                 gateway.status, gateway.logs))
    ns.add_collection(Collection("profile", profile.create, profile.delete))
    ns.add_collection(Collection("slot", slot.render, list=slot.list_))
    return ns


class HermesProgram(Program):
    """Turns expected failures into one line on stderr and an exit code, never a traceback."""

    def execute(self):
        code = errors.guarded(super().execute)
        if code:
            raise Exit(code=code)


ns = namespace()
program = HermesProgram(namespace=ns, version=__version__, name="hermes-tasks",
                        binary="hermes-tasks", binary_names=["hermes-tasks"])
