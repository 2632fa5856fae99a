"""The ``hermes-tasks`` program: an ``invoke.Program`` over the bundled collection."""

from __future__ import annotations

import sys

from invoke import Collection, Exit, Program

from . import __version__
from .commands import gateway, profile, reconcile, slot
from .errors import TaskError


def namespace() -> Collection:
    ns = Collection()
    ns.add_task(reconcile.reconcile)
    ns.add_collection(Collection("gateway", gateway.start, gateway.stop, gateway.restart,
                                 gateway.status))
    ns.add_collection(Collection("profile", profile.create, profile.delete))
    ns.add_collection(Collection("slot", slot.render, list=slot.list_))
    return ns


class HermesProgram(Program):
    """Turns expected failures into one line on stderr and an exit code, never a traceback."""

    def execute(self):
        try:
            super().execute()
        except TaskError as exc:
            sys.stderr.write(f"hermes-tasks: error: {exc}\n")
            raise Exit(code=exc.code) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            sys.stderr.write(f"hermes-tasks: error: {where}{exc.strerror or exc}\n")
            raise Exit(code=1) from None


ns = namespace()
program = HermesProgram(namespace=ns, version=__version__, name="hermes-tasks",
                        binary="hermes-tasks", binary_names=["hermes-tasks"])


def main() -> None:
    program.run()
