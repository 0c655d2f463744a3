"""A command's Ctrl-C and SIGTERM handler, installed and put back with care (every entry
point's: ``models.train``'s here, ``realtime.interrupts`` re-exports them for the CLI and the
window); and a command's exit, ``exit_quickly``."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from typing import NoReturn


def take_signals(handler) -> dict:
    """Make Ctrl-C and SIGTERM call ``handler``, except a signal ignored on purpose (a shell's
    background job ignores Ctrl-C; ``trap '' TERM``); returns the handlers to give back
    (``give_back``)."""
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN}


def interrupt_on_signals() -> dict:
    """Make Ctrl-C and SIGTERM (a scheduler's) raise KeyboardInterrupt, as Ctrl-C alone does
    by default: a command then ends with its 'interrupted' line and exit 130, not 143 and
    nothing said. Called from another thread it changes nothing (signals are the main
    thread's). Returns the handlers to give back (``give_back``)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return take_signals(_raise_interrupt)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def give_back(previous: dict) -> None:
    """Put back the handlers ``take_signals`` replaced (one not installed from Python, which
    ``signal.signal`` returns as None, as the default)."""
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def exit_quickly(code: int) -> NoReturn:
    """``sys.exit(code)`` without the interpreter's last garbage collections over every object
    the models made: 1.5-1.9 CPU seconds on 2 cores after the work was done (an exit that
    took 5-15 s on a loaded machine). Entry points call it once they have closed their native
    resources themselves (never left to finalizers at exit); what is left is freed with the
    process. Objects frozen are out of ``gc.get_objects()``: ``gc.unfreeze()`` to see them."""
    gc.freeze()
    sys.exit(code)
