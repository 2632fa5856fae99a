"""The ``hermes-tasks`` console script: the ``invoke.Program`` (the boot call is :mod:`boot`)."""

from __future__ import annotations


def main() -> None:
    """Run the command line."""
    from . import workdir

    workdir.leave()  # a root process never runs from the volume (SPEC §10)
    from .program import program

    program.run()
