"""Ctrl-C and SIGTERM as KeyboardInterrupt, held off while a record is delivered.

A stop signal's handler (``realtime.cli``) raises KeyboardInterrupt in the main thread
between any two of its bytecodes. Landing between a record's write and its count, it left
the summary one window short of the file. ``held()`` keeps the interrupt for the end of
such a step; ``interrupt()`` is what the handler raises through. ``take_signals`` and
``give_back`` (``models.signals``, shared with training) install a command's handler and put
back what was there (the CLI's, the window's).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from models.signals import give_back, take_signals

__all__ = ["give_back", "held", "interrupt", "take_signals"]

_held = 0
_pending = False


@contextlib.contextmanager
def held() -> Iterator[None]:
    """In the main thread, a stop signal that comes during the block interrupts at its end
    (when the block ends normally); elsewhere, nothing changes (signals reach the main
    thread only). Blocks may nest."""
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        pending = _pending and not _held
        if not _held:  # a block that raised ends with its own exception; the stop was recorded by its asker
            _pending = False
    if pending:
        raise KeyboardInterrupt


def interrupt() -> None:
    """KeyboardInterrupt now, or at the end of the ``held()`` block under way."""
    global _pending
    if _held:
        _pending = True
        return
    raise KeyboardInterrupt
