"""Cleanup for the harness: a LIFO stack of undo actions, and the signals that unwind it.

Everything the harness creates (mounts, loop devices, zram devices, child processes,
directories) is pushed here as it is made. A target's resources are undone when that
target's round is done; the whole stack is unwound again in the top-level `finally`, so
Ctrl-C, SIGTERM, SIGHUP or an exception anywhere still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Callable, Iterator


class Skip(Exception):
    """A target (or a layer of it) cannot be measured here; str() is the reason."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived; unwinds to the top level, which cleans up."""


class Janitor:
    """LIFO stack of undo actions.

    An entry leaves the stack only after its action has run (successfully or with an
    ordinary error, which is reported); if a signal interrupts an action, the entry stays and
    the final unwind() retries it.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, undo: Callable[[], None]) -> None:
        self._stack.append((what, undo))

    def unwind(self, depth: int = 0) -> None:
        while len(self._stack) > depth:
            what, undo = self._stack[-1]
            try:
                undo()
            except Exception as e:  # keep going: every other resource still needs undoing
                print(f"  cleanup: {what}: {e}", file=sys.stderr)
            self._stack.pop()

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Undo everything pushed inside the with-block when it ends."""
        depth = len(self._stack)
        try:
            yield
        finally:
            self.unwind(depth)


_interrupted = False


def _on_signal(signum: int, _frame: object) -> None:
    global _interrupted
    if _interrupted:  # already unwinding: let the cleanup finish
        print(f"\n{signal.Signals(signum).name} again: still cleaning up, please wait", file=sys.stderr)
        return
    _interrupted = True
    print(f"\ninterrupted by {signal.Signals(signum).name}: cleaning up", flush=True)
    raise Interrupted(signal.Signals(signum).name)


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def catch_signals() -> None:
    """From now on SIGINT/SIGTERM/SIGHUP raise Interrupted (once), so cleanup runs."""
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)


def release_signals() -> None:
    """Back to the default actions: nothing is left to clean up."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
