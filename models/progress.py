"""Progress bars of a training run: one per stage (epochs, with the stage's time left) and one
per epoch (batches, with the epoch's time left), on a terminal only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import TextIO, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

T = TypeVar("T")


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error, where the bars go) is a terminal: bars
    are for people watching; in logs and captured output they are noise."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress(contextlib.AbstractContextManager):
    """The bars of one stage (``role``: teacher or student); does nothing when not ``enabled``.

    The stage bar counts epochs up to ``epochs`` (starting after ``done``, for a resumed
    stage); its time left assumes every epoch runs, so early stopping may end the stage
    sooner. While the bars show, log records are written above them instead of through them.
    """

    def __init__(self, role: str, epochs: int, done: int, enabled: bool):
        self.role = role
        self.enabled = enabled
        self._stack = contextlib.ExitStack()
        self._stage = None
        if enabled:
            self._stack.enter_context(logging_redirect_tqdm())
            self._stage = self._stack.enter_context(
                tqdm(total=epochs, initial=done, desc=role, unit="epoch", leave=False, dynamic_ncols=True,
                     bar_format="{desc}: epoch {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining} left]{postfix}"))

    def epoch(self, items: Iterable[T], total: int, epoch: int) -> tqdm:
        """``items`` (the epoch's batches) as a bar under the stage's (``set_postfix`` on it
        shows the running loss); without bars, a disabled one that only passes them on."""
        return tqdm(items, total=total, desc=f"{self.role} epoch {epoch}", unit="batch", leave=False,
                    dynamic_ncols=True, disable=not self.enabled,
                    bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining} left, "
                               "{rate_fmt}]{postfix}")

    def epoch_done(self, best_score: float) -> None:
        """One more epoch of the stage, and its best validation score so far."""
        if self._stage is not None:
            self._stage.set_postfix_str(f"best valid {best_score:.4f}", refresh=False)
            self._stage.update(1)

    def __exit__(self, *exc) -> None:
        self._stack.close()
