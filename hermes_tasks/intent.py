"""What a task asks for, independent of how it is carried out (the engine's input)."""

from __future__ import annotations

from . import records

RECONCILE, START, STOP, RESTART, CREATE, DELETE = (
    "reconcile", "start", "stop", "restart", "create", "delete")
# The word a gateway task's rows carry (reconcile's rows say started/registered/...).
WORDS = {START: "started", STOP: "stopped", RESTART: "restarted"}


@records.record(frozen=True)
class Intent:
    """One task's request.

    ``names`` are the profiles it is about (None: every profile, as reconcile).
    ``all`` is ``gateway.stop/restart --all`` (every registered gateway slot).
    ``start`` is ``profile.create --start``; ``purge`` is ``profile.delete --purge``.
    """

    task: str
    names: frozenset[str] | None = None
    all: bool = False
    start: bool = False
    purge: bool = False
    wait: bool = False
    timeout: float = 60.0

    @property
    def gateway(self) -> bool:
        """A ``gateway.*`` task: acts on what runs, and is explicit about it."""
        return self.task in WORDS

    @property
    def desired(self) -> str | None:
        """The ``desired_state`` this task records, or None (reconcile, delete)."""
        if self.task in (START, RESTART) or (self.task == CREATE and self.start):
            return "running"
        if self.task == STOP:
            return "stopped"
        return None
