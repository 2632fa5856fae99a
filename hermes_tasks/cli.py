"""The ``hermes-tasks`` console script: the ``invoke.Program`` (the boot call is :mod:`boot`)."""

from __future__ import annotations

import os
import sys

from . import workdir


def main(fast_exit: bool = True) -> None:
    """Run the command line; ``fast_exit=False`` leaves by ``SystemExit`` (for callers in-process)."""
    origin = workdir.leave()  # a root process never runs from the volume (SPEC §10)
    if sys.argv[1:2] == ["exec"]:  # before Invoke, which would join the command's words
        from . import account

        code = account.main(sys.argv[2:], origin)
        if not fast_exit:
            raise SystemExit(code)
        _leave(code)
    from . import fastpath

    call = fastpath.parse(sys.argv[1:], os.environ)
    if call is not None:
        code = fastpath.run(call, origin)
        if not fast_exit:
            raise SystemExit(code)
        _leave(code)
    from .program import make

    try:
        make(origin).run()
        code = 0
    except SystemExit as exc:  # Invoke leaves through sys.exit
        if not fast_exit:
            raise
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)  # what sys.exit would have printed
    except BrokenPipeError:  # Invoke's own output (help, lists) into a closed pipe
        from . import errors

        errors.quiet_stdout()
        if not fast_exit:
            raise SystemExit(0) from None
        code = 0
    if not fast_exit:
        return
    # The interpreter's teardown after Invoke costs ~50 ms of CPU (hundreds on a loaded
    # machine): `gateway.start --wait` must return right after the gateway said running.
    _leave(code)


def _leave(code: int) -> None:
    """Flush and exit without the interpreter's teardown (no atexit handler of ours needs it)."""
    from . import errors

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # stdout closed early (`| head -1`): quiet, exit 0 (SPEC §8)
        errors.quiet_stdout()
    except OSError:
        pass
    os._exit(code)
