"""Robustness tests: Hypothesis fuzzing of the emulator's HTTP surface over a real socket, and resource leaks
under faults. The emulator runs in a child process, so that a crash fails a test instead of the whole run."""
