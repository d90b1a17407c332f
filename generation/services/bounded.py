"""Bounded waits: a call that must return within a deadline, whatever the callee does.

A Python thread cannot be killed, so a provider call, a storage write or a broker publish that
hangs would hang the job (or the request) that made it. `call_bounded` runs the callee on a
daemon thread of its own and waits for it, for the deadline or an interruption (a cancel, a
lost lease, a shutdown), whichever comes first. A callee that overruns is abandoned: its thread
finishes (or hangs) on its own and its result is dropped, so nothing it returns is recorded or
charged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How often a bounded wait looks at its interruption event; short enough that a cancel is
# honoured within a fraction of a second, long enough to cost nothing.
_POLL_SECONDS = 0.1


_abandoned_lock = threading.Lock()
_abandoned_running = 0


def abandoned_calls_running() -> int:
    """Calls this process abandoned whose threads are still running (a hung call may still
    crash the process: a job is not "alone" in a process while any is left)."""
    with _abandoned_lock:
        return _abandoned_running


class StepTimeout(Exception):
    """The callee did not return within its deadline and was abandoned."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not finish within {seconds:.1f} s")
        self.what = what
        self.seconds = seconds


class StepInterrupted(Exception):
    """The wait was interrupted (cancel, lost lease, shutdown) and the callee abandoned."""


def call_bounded(fn: Callable[[], T], *, timeout: float, what: str, interrupt: threading.Event | None = None) -> T:
    """Return `fn()`; raise StepTimeout after `timeout` s, StepInterrupted when `interrupt` is set.

    Exceptions raised by `fn` are raised here, unchanged.
    """
    outcome: dict[str, object] = {}
    done = threading.Event()
    abandoned = threading.Event()

    def run() -> None:
        global _abandoned_running
        try:
            outcome["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread as is
            outcome["error"] = error
        finally:
            with _abandoned_lock:
                done.set()
                if abandoned.is_set():
                    _abandoned_running -= 1

    def abandon(error: Exception) -> Exception:
        global _abandoned_running
        with _abandoned_lock:
            if not done.is_set():
                abandoned.set()
                _abandoned_running += 1
        return error

    threading.Thread(target=run, name=f"bounded-{what}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if interrupt is not None and interrupt.is_set():
            raise abandon(StepInterrupted(what))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise abandon(StepTimeout(what, timeout))
        done.wait(min(remaining, _POLL_SECONDS))
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
