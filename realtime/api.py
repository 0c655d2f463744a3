"""Media files from Python: ``python -m realtime --source FILE``'s run, the models loaded once.

    from realtime import Recognizer

    with Recognizer() as recognizer:                      # the bundled model; a GPU if there is one
        for record in recognizer.analyse("clip.mp4"):     # one dict per window, as --out writes them
            print(record["t_end"], record["emotion"], record["sentiment"])

The records are the command line's (docs/RECORDS.md), each naming its file in ``source``;
two analyses of a file give the same records. The options are the command line's, with its
defaults and ranges (a bad one raises ``ValueError`` with the command line's message).
Warnings go to the ``realtime`` logger (shown on stderr where nothing configured logging)
and into ``summary.warnings``. One analysis at a time per Recognizer: the models follow one
input's clock (another thread's call raises ``RuntimeError``; give each thread its own).
Leave the ``with`` block (or call ``close``) to release the models: MediaPipe's graph,
Whisper and the words' encoder hold native threads that must not be left to the
interpreter's exit.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from models import safejson
from realtime.service import FACE_FPS, check_model_options, check_run_options, component_args, load_components
from realtime.sinks import Summary, _named

logger = logging.getLogger("realtime")


class Recognizer:
    """The models of a file run, loaded once (5-10 s on a small CPU) for any number of files.

    ``checkpoint``: a checkpoint folder (default: the bundled model); ``device``: auto, cpu
    or cuda[:N]; ``hop``: seconds between windows and ``face_fps``: frames a second whose
    face is analysed (defaults for ``analyse``, which may set its own); ``window``: window
    seconds (default: the checkpoint's); the rest as the command line's --precision,
    --text-precision, --face-model, --whisper-model and --text-model.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", *, hop: float = 0.5,
                 face_fps: float = FACE_FPS, window: float | None = None, precision: str = "float32",
                 text_precision: str = "auto", face_model: str | Path | None = None,
                 whisper_model: str | Path | None = None, text_model: str | Path | None = None):
        args = component_args(device=device, checkpoint=_text(checkpoint), window=window,
                              face_model=_text(face_model), whisper_model=_text(whisper_model),
                              text_model=_text(text_model), precision=precision, text_precision=text_precision)
        check_model_options(argparse.Namespace(**vars(args), hop=hop, face_fps=face_fps))
        self._hop, self._face_fps = hop, face_fps
        self.summary: Summary | None = None
        """What the last ``analyse`` did (windows, coverage, warnings, real-time factor); None
        while one runs and after one that raised (other than by Ctrl-C)."""
        self._busy = threading.Lock()
        self._analysing: int | None = None  # the thread in ``analyse`` (its on_record calls run on it)
        self._components = load_components(args)
        _close_at_exit(self)

    @property
    def hop(self) -> float:
        return self._hop

    @property
    def face_fps(self) -> float:
        return self._face_fps

    def analyse(self, path: str | Path, on_record: Callable[[dict], None] | None = None, *,
                hop: float | None = None, face_fps: float | None = None) -> list[dict]:
        """Every window of the file at ``path``, as fast as it decodes: its records, in time
        order. ``on_record`` is called with each record as its window is done (from this
        thread), for files too long to wait for. ``hop`` and ``face_fps``: this file's (default:
        the Recognizer's). Media that cannot be read raises ``realtime.sources.file.MediaError``
        (a ``ValueError``) before any window; Ctrl-C (KeyboardInterrupt) stops the run, its
        threads end and ``summary`` says how far it got, and is raised again."""
        from realtime.cli import run_file, say_end_findings

        hop = self._hop if hop is None else hop
        face_fps = self._face_fps if face_fps is None else face_fps
        check_run_options(hop, face_fps)
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this Recognizer is analysing another file: give each thread a Recognizer of its own")
        self._analysing = threading.get_ident()
        try:
            if self._components is None:
                raise RuntimeError("this Recognizer is closed")
            self.summary = None
            path = Path(path)
            records: list[dict] = []
            args = argparse.Namespace(pace="asap", face_fps=face_fps, hop=hop, quiet=True, plot=None)
            summary = run_file(path, None, args, self._components, sinks=[_Records(str(path), records, on_record)])
            self.summary = summary
            say_end_findings(summary)  # a face never found, decode errors, windows left unscored
        finally:
            self._analysing = None
            self._busy.release()
        if summary.interrupted:
            raise KeyboardInterrupt
        return records

    def close(self) -> None:
        """Release the models now (idempotent; waits for an analysis in another thread). From
        ``on_record`` it raises RuntimeError, which ends the analysis (it would wait for
        itself); close after ``analyse`` returns or raises."""
        if self._analysing == threading.get_ident():
            raise RuntimeError("close() from on_record would wait for the analysis it is called from: close "
                               "after analyse returns (an exception raised in on_record ends the analysis)")
        with self._busy:
            if self._components is not None:
                self._components.close()
                self._components = None

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OPEN: weakref.WeakSet[Recognizer] = weakref.WeakSet()


_HOOKED: list[bool] = []


def _close_at_exit(recognizer: Recognizer) -> None:
    """A Recognizer left open (a notebook, a script without ``with``) is closed by an exit
    hook, while the interpreter still runs, with a warning: left to finalizers, MediaPipe's
    graph could hang the exit. The hook is threading's (what concurrent.futures uses): it
    runs before the thread pools shut down, one of which MediaPipe closes its graph through
    (an ``atexit`` hook came too late: 'cannot schedule new futures after shutdown')."""
    if not _HOOKED:
        getattr(threading, "_register_atexit", atexit.register)(_close_the_open)
        _HOOKED.append(True)
    _OPEN.add(recognizer)


def _close_the_open() -> None:
    for recognizer in list(_OPEN):
        if recognizer._components is not None:
            logger.warning("a Recognizer was left open: closed at exit (use 'with Recognizer() as r:' or close())")
            recognizer.close()


class _Records:
    """A sink that keeps each record (the JSONL sink's dict) and hands it on."""

    def __init__(self, source: str, records: list[dict], on_record: Callable[[dict], None] | None):
        self.source, self.records, self.on_record = source, records, on_record

    def write(self, estimate) -> None:
        record = safejson.finite(_named(estimate.record(), self.source))  # NaN as None, as JSON's null
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        pass


def _text(path: str | Path | None) -> str | None:
    return None if path is None else str(path)
