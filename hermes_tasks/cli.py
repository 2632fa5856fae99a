"""The ``hermes-tasks`` console script: the ``invoke.Program``, or its fast path at boot."""

from __future__ import annotations

import gc
import os
import sys

from . import errors, fastpath, workdir


def main(fast_exit: bool = True) -> None:
    """Run the command line; ``fast_exit=False`` leaves by ``SystemExit`` (for callers in-process)."""
    # A short-lived process whose objects are mostly acyclic: the collector only costs time
    # (~10-20 ms at 1000 profiles, bench/RESULTS.md).
    gc.disable()
    workdir.leave()  # a root process never runs from the volume (SPEC §10)
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
    if not fast_exit:
        sys.stdout.flush()
        sys.exit(failed or code)
    # Everything is written, closed and (below) flushed: skip the interpreter's teardown of
    # ~1000 profiles' objects (~10 ms at boot). No atexit handler of ours needs to run.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # stdout closed early (`| head`): the run's outcome is still its code
        pass
    os._exit(failed or code)
