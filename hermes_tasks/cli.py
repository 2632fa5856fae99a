"""The ``hermes-tasks`` console script: the ``invoke.Program``, or its fast path at boot."""

from __future__ import annotations

import gc
import os
import sys

from . import errors, fastpath


def main() -> None:
    # A short-lived process whose objects are mostly acyclic: the collector only costs time
    # (~10-20 ms at 1000 profiles, bench/RESULTS.md).
    gc.disable()
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
