"""The ``hermes-tasks`` console script: the ``invoke.Program`` (the boot call is :mod:`boot`)."""

from __future__ import annotations


def main() -> None:
    """Run the command line."""
    from .program import program

    program.run()
