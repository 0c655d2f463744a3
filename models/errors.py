"""The one base class of the errors a user can fix.

Every entry point (``python -m realtime``, the GUI, ``models.train``, ``models.evaluate``,
``realtime.extract``, ``realtime.corpus``) catches :class:`UserError` in one place, prints
``error: <message>`` on one line and exits with code 2. Anything else is a bug and keeps
its traceback (exit code 1). Each subclass also derives from the built-in error it
replaced (``ValueError`` mostly), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

import argparse


class UserError(Exception):
    """Bad input or usage: a missing file, an unreadable clip, a bad option or config."""


class UsageError(UserError, ValueError):
    """A bad option or combination of options."""


class ModelNotFoundError(UserError, RuntimeError):
    """A model file (face landmarker, Whisper, the words' encoder) neither given nor installed."""


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line usage errors: ``error: ...`` and exit 2, for
    every command (argparse's own prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
