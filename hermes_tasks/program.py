"""The ``hermes-tasks`` program: an ``invoke.Program`` over the bundled collection."""

from __future__ import annotations

from invoke import Collection, Exit, ParseError, Program

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
    """Turns expected failures into one line on stderr and an exit code, never a traceback.

    The one output envelope: with ``--json``, every failure of a task as a whole (a usage
    error, an unknown flag, a missing scandir, root's refusal) is also exactly one JSON
    object on stdout with ``error`` and ``code``; a task that printed its rows prints
    nothing more.
    """

    def execute(self):
        code = errors.guarded(super().execute, json=self._json())
        if code:
            raise Exit(code=code)

    def parse_tasks(self):
        try:
            super().parse_tasks()
        except ParseError as exc:  # Invoke prints it to stderr and exits 1
            from . import suggest

            # a mistyped task or flag: one line with a suggestion
            names = [*self.collection.task_names, *(a for v in self.collection.task_names.values()
                                                    for a in v)]
            message = suggest.message(exc, exc.context, names, self.initial_context.flags)
            if self._json():
                errors.emit_error(message, 1)
            raise ParseError(message) from None

    def _json(self) -> bool:
        return "--json" in (getattr(self, "argv", None) or [])[1:]


def make(origin: str | None = None) -> HermesProgram:
    """The program; ``origin``: where the command was typed, when the process left it
    (:func:`workdir.leave`), handed to every task in its context's config."""
    tasks = namespace()
    tasks.configure({"hermes_origin": origin})
    return HermesProgram(namespace=tasks, version=__version__, name="hermes-tasks",
                         binary="hermes-tasks", binary_names=["hermes-tasks"])


ns = namespace()  # for `invoke` in a checkout (tasks.py)
