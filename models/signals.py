"""A command's Ctrl-C and SIGTERM handler, installed and put back with care (every entry
point's: ``models.train``'s here, ``realtime.interrupts`` re-exports them for the CLI and the
window)."""

from __future__ import annotations

import signal


def take_signals(handler) -> dict:
    """Make Ctrl-C and SIGTERM call ``handler``, except a signal ignored on purpose (a shell's
    background job ignores Ctrl-C; ``trap '' TERM``); returns the handlers to give back
    (``give_back``)."""
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN}


def give_back(previous: dict) -> None:
    """Put back the handlers ``take_signals`` replaced (one not installed from Python, which
    ``signal.signal`` returns as None, as the default)."""
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)
