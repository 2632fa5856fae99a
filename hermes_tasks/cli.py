"""The ``hermes-tasks`` console script: the ``invoke.Program``, or its fast path at boot."""

from __future__ import annotations

import os
import sys

from . import errors, fastpath


def main() -> None:
    parsed = fastpath.parse(sys.argv[1:], os.environ)
    if parsed is None:
        from .program import program

        program.run()
        return
    code = 0

    def body():
        nonlocal code
        code = fastpath.runner(*parsed)()

    failed = errors.guarded(body)
    sys.stdout.flush()
    sys.exit(failed or code)
