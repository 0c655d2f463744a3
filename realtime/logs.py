"""Logging for the entry points, and quiet third-party native libraries.

MediaPipe, TensorFlow Lite and glog write straight to file descriptor 2 from C++
(``W0000 ... inference_feedback_manager.cc``, ``WARNING: Logging before InitGoogle()``,
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``): Python's logging never
sees them. They come when a graph is built and on its first frames, so the code that
does that runs inside ``native_stderr_filtered()``: fd 2 goes to a temporary file for
the duration, then every line that is not known third-party chatter is written back to
the real stderr (nothing of ours is lost, only held back until the block ends).

``configure(verbose)`` is called once by each entry point: normal runs show our warnings
only; verbose runs show our INFO messages and leave native output alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

# third-party lines written to fd 2 by native code (glog/absl, TFLite, MediaPipe)
NATIVE_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]"  # absl/glog: W0000 00:00:17.. 1234 file.cc:12] ...
    r"|WARNING: Logging before InitGoogle\(\)"
    r"|INFO: Created TensorFlow Lite"
    r"|INFO: Initialized TensorFlow Lite"
    r"|WARNING: All log messages before absl::InitializeLog\(\))"
)

_verbose = False
_lock = threading.RLock()
_depth = 0


def configure(verbose: bool = False, fmt: str | None = None) -> None:
    """Set up logging for a command-line entry point (library code never calls this)."""
    global _verbose
    _verbose = verbose
    if fmt is None:
        fmt = "%(levelname)s %(name)s: %(message)s" if verbose else "%(levelname)s: %(message)s"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)
    if not verbose:
        # libraries that log through Python at INFO/WARNING about things a user cannot act on
        for name in ("faster_whisper", "transformers", "sentence_transformers", "numba", "PIL"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # OpenCV writes a dozen lines of its own (V4L2, FFMPEG, obsensor) when no camera
        # opens; our one warning says it. Read when cv2 is imported, so set it first.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
        if "cv2" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["cv2"].setLogLevel(0)


def is_verbose() -> bool:
    return _verbose


_owners: dict[int, tuple[_Teller, ...]] = {}
"""Thread ident -> the ``warnings_to`` blocks whose work that thread does (its own, and those
of the thread that started it through ``carried``). A thread not listed (a device's callback
thread) tells every block."""


@contextlib.contextmanager
def _claimed(blocks: tuple[_Teller, ...]) -> Iterator[None]:
    """This thread's warnings go to ``blocks`` alone (none: to no block) meanwhile; then it
    is claimed as before (or by none)."""
    ident = threading.get_ident()
    outer = _owners.get(ident)
    try:  # an interrupt anywhere in here leaves nothing claimed behind
        _owners[ident] = blocks
        yield
    finally:
        if outer is None:
            _owners.pop(ident, None)
        else:
            _owners[ident] = outer


def carried(target: Callable[..., None]) -> Callable[..., None]:
    """``target``, to run in a thread of its own, telling its warnings to the ``warnings_to``
    blocks of the thread calling this (that starts it), and to no other: two runs in two
    threads each keep their own warnings, and a thread of a run that outlives its block (a
    worker that did not stop in time) tells none of the next run's."""
    blocks = _owners.get(threading.get_ident())
    if not blocks:  # started outside any block: unclaimed, as the thread starting it
        return target

    def run(*args, **kwargs) -> None:
        with _claimed(blocks):
            target(*args, **kwargs)

    return run


class _Teller(logging.Handler):
    def __init__(self, tell: Callable[[str], None], prefixes: tuple[str, ...]):
        super().__init__(logging.WARNING)
        self.tell, self.prefixes = tell, prefixes

    def emit(self, record: logging.LogRecord) -> None:
        if not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes):
            return
        blocks = _owners.get(record.thread) if record.thread is not None else None
        if blocks is not None and self not in blocks:  # another run's thread
            return
        try:
            self.tell(record.getMessage())
        except Exception:  # a malformed call, or a listener that failed: a warning never raises
            self.handleError(record)


_resort_lock = threading.Lock()
_resort_users = 0  # warnings_to blocks that keep logging.lastResort on the root


def _share_last_resort(delta: int) -> None:
    """One block more (1) or fewer (-1) needs Python's last resort on the root: it is there
    while any does (two runs in two threads: the first to end had taken it from the other)."""
    global _resort_users
    with _resort_lock:
        _resort_users += delta
        if delta > 0 and _resort_users == 1:
            logging.getLogger().addHandler(logging.lastResort)
        elif delta < 0 and _resort_users == 0:
            logging.getLogger().removeHandler(logging.lastResort)


def _unconfigured(prefixes: tuple[str, ...]) -> bool:
    """Whether nothing configured logging for our loggers (our own blocks' handlers aside)."""
    return not any(h for name in ("", *prefixes) for h in logging.getLogger(name).handlers
                   if not isinstance(h, _Teller) and h is not logging.lastResort)


@contextlib.contextmanager
def warnings_to(tell: Callable[[str], None], prefixes: tuple[str, ...] = ("realtime", "models")) -> Iterator[None]:
    """``tell(message)`` for every warning our code logs meanwhile in this thread and the
    threads it starts through ``carried`` (loggers under ``prefixes``), and for those of
    threads no block claims, besides logging it as usual. Where nothing configured logging (a
    script using ``realtime.Recognizer``), Python shows warnings through its last resort,
    which a handler on the root would silence: that one is kept showing them."""
    teller = _Teller(tell, prefixes)
    root = logging.getLogger()
    resort = False
    with _claimed((*_owners.get(threading.get_ident(), ()), teller)):
        try:  # an interrupt anywhere in here leaves nothing added behind
            root.addHandler(teller)
            if logging.lastResort is not None and _unconfigured(prefixes):
                _share_last_resort(1)
                resort = True
            yield
        finally:
            root.removeHandler(teller)
            if resort:
                _share_last_resort(-1)


@contextlib.contextmanager
def kept_by_no_run() -> Iterator[None]:
    """Warnings this thread logs meanwhile are said as usual, and kept by no ``warnings_to``
    block: its caller keeps them itself (a run's end findings, said after its block had
    ended, reached the summary of a run in another thread)."""
    with _claimed(()):
        yield


ONCE = {"once_per_command": True}
"""``extra=`` of a warning true of every run of a command (a folder run's files): within
``said_once`` it is shown once."""


@contextlib.contextmanager
def said_once() -> Iterator[None]:
    """Within the block, a warning logged with ``extra=ONCE`` that was already said word for
    word is not said again where logging shows it (a folder run's '--hop ... never
    analysed', true of every file); the runs' ``warnings_to`` blocks still hear it, so each
    file's summary keeps it."""
    filters = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Teller):
            continue
        seen: set[str] = set()

        def first_time(record: logging.LogRecord, seen: set[str] = seen) -> bool:
            if not getattr(record, "once_per_command", False):
                return True
            try:
                message = record.getMessage()
            except Exception:  # a malformed call: the handler reports it, as without the filter
                return True
            if message in seen:
                return False
            seen.add(message)
            return True

        handler.addFilter(first_time)
        filters.append((handler, first_time))
    try:
        yield
    finally:
        for handler, first_time in filters:
            handler.removeFilter(first_time)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Hold fd 2 while native libraries start; give back every line that is not their chatter.

    A no-op in verbose runs. Re-entrant; threads that enter at the same time share one
    capture (the outermost block restores fd 2).
    """
    global _depth
    if _verbose:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _start_capture()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _end_capture()


_saved_fd: int | None = None
_capture: tempfile.TemporaryFile | None = None  # type: ignore[valid-type]


def _start_capture() -> None:
    global _saved_fd, _capture
    try:
        sys.stderr.flush()
        _capture = tempfile.TemporaryFile()
        _saved_fd = os.dup(2)
        os.dup2(_capture.fileno(), 2)
    except OSError:  # no fd 2 (pythonw, some services): nothing to filter
        _saved_fd, _capture = None, None


def _end_capture() -> None:
    global _saved_fd, _capture
    if _saved_fd is None or _capture is None:
        return
    try:
        sys.stderr.flush()
        os.dup2(_saved_fd, 2)
    finally:
        os.close(_saved_fd)
        _saved_fd = None
    _capture.seek(0)
    kept = [line for line in _capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            if not NATIVE_NOISE.match(line)]
    _capture.close()
    _capture = None
    if kept:
        os.write(2, "".join(kept).encode())
