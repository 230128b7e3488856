"""Run one emulator for the robustness tests, in a process of its own.

``python serve_emulator.py PROJECT_DIR STATE_DIR`` starts an emulator on a free port as
``tests/integration/conftest.py`` does (no AWS, retries scaled down), prints its port, serves until its standard
input closes (the test's end, or the test process dying), then closes the emulator. A request that crashes
the emulator (a segfault) ends this process, which the test reports, instead of the whole pytest run.
"""

from __future__ import annotations

import faulthandler
import sys

from lambdapool.emulator import Emulator


def main() -> None:
    faulthandler.enable()  # a segfault leaves the Python stacks in the log the test quotes
    project_dir, state_dir = sys.argv[1], sys.argv[2]
    # Lambda's retries of failed asynchronous work (1 and 2 minutes) scaled down, as the integration tests do:
    # a retry still pending would hold the retry thread past the resource checks.
    emulator = Emulator(
        project_dir, port=0, state_dir=state_dir, aws="none", async_retry_delay_s=0.05, fast_cold_starts=True
    )
    emulator.start()
    try:
        emulator.serve_in_thread()
        print(emulator.port, flush=True)
        sys.stdin.read()
    finally:
        emulator.close()


if __name__ == "__main__":
    main()
