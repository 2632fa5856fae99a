"""``hermes-tasks-boot``: the container's boot call, ``reconcile`` without Invoke.

/etc/cont-init.d/02-reconcile-profiles runs this at every boot. It takes no arguments (the
image's settings come from the inventory and the environment, SPEC §3), so it needs no
argument parser at all: importing Invoke costs ~100 ms and ~8 MiB, most of a one-profile
boot (bench/RESULTS.md). Everything else, ``reconcile`` with flags included, is
``hermes-tasks``.
"""

from __future__ import annotations

import gc
import os
import sys

USAGE = ("hermes-tasks-boot takes no arguments (it is `hermes-tasks reconcile` with the "
         "image's settings); use `hermes-tasks reconcile ...` for flags")


def main() -> None:
    """Reconcile with the inventory's settings; exit with reconcile's code (0, 1 or 2)."""
    # A short-lived process whose objects are mostly acyclic: the collector only costs time.
    gc.disable()
    from . import errors, workdir

    origin = workdir.leave()  # a root process never runs from the volume (SPEC §10)
    if sys.argv[1:]:
        sys.stderr.write(f"hermes-tasks: error: {USAGE}\n")
        os._exit(1)
    code = 0

    def body():
        nonlocal code
        from . import actions, container, inventory, report

        cfg = inventory.load(origin=origin)
        if not container.prepare_boot(cfg, report.warn):  # the container's command decides (SPEC §15)
            return
        try:
            code = actions.reconcile(cfg, check=False, diff=False, json=False)
        except (errors.TaskError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - the boot never ends in a traceback
            from .volfile import why

            raise errors.TaskError(f"reconcile failed unexpectedly: {why(exc)}: "
                                   f"{str(exc)[:200]}") from None

    failed = errors.guarded(body)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        errors.quiet_stdout()
    # Everything is written and flushed: skip the interpreter's teardown of ~1000 profiles'
    # objects (~10 ms). No atexit handler of ours needs to run.
    os._exit(failed or code)


if __name__ == "__main__":
    main()
