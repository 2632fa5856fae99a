"""The ``hermes-tasks`` console script: the ``invoke.Program`` (the boot call is :mod:`boot`)."""

from __future__ import annotations

from . import workdir


def main() -> None:
    """Run the command line."""
    workdir.leave()  # a root process never runs from the volume (SPEC §10)
    from .program import program

    program.run()
