"""Run a helper module (moto's server) as a process that ends when the emulator does, however it ends.

``python -m lambdapool.emulator.work._tethered PARENT_PID MODULE [ARGS...]`` runs ``MODULE`` as ``__main__`` and
exits as soon as its parent is no longer ``PARENT_PID``: a clean stop terminates it anyway, and when the
emulator is killed outright (SIGKILL, a crash) the helper is reparented and notices within
:data:`CHECK_INTERVAL_S`. A watch thread rather than ``PR_SET_PDEATHSIG``, which fires when the *thread*
that started the child ends, not the emulator.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
from collections.abc import Sequence

CHECK_INTERVAL_S = 0.5


def _watch(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(CHECK_INTERVAL_S):
        if os.getppid() != parent_pid:
            os._exit(0)  # the emulator is gone: nobody will stop us otherwise


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    parent_pid, module, module_args = int(args[0]), args[1], args[2:]
    if os.getppid() != parent_pid:  # the emulator died before we got here
        return
    threading.Thread(target=_watch, args=(parent_pid,), name="lambdapool-tether", daemon=True).start()
    sys.argv = [module, *module_args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
