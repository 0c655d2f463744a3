"""A camera and a microphone that replay a recorded clip at wall-clock pace.

For machines without the hardware (tests, CI, benchmarks): real decoded pixels and
samples go through the same live code path as a webcam's and a microphone's. Each can be
told to stall after some seconds, as a device that stops delivering would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.sources.file import FileOptions, FileSource
from realtime.types import FACE_FPS, AudioChunk, VideoFrame


class ReplayCamera:
    """Serves a clip's frames at their media times; None after the end or the stall."""

    def __init__(self, path: str | Path, fps: float = FACE_FPS, stall_after: float | None = None, loop: bool = False):
        source = FileSource(path, FileOptions(video_fps=fps))
        self._frames = [item for item in source if isinstance(item, VideoFrame)]
        if not self._frames:
            raise ValueError(f"'{path}' has no video frames to replay")
        self._stall_after = stall_after
        self._loop = loop
        self._start: float | None = None
        self._i = 0

    def read(self) -> np.ndarray | None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        elapsed = now - self._start
        if self._stall_after is not None and elapsed >= self._stall_after:
            time.sleep(0.02)
            return None
        if self._i >= len(self._frames):
            if not self._loop:
                time.sleep(0.02)
                return None
            self._start, self._i, elapsed = now, 0, 0.0
        frame = self._frames[self._i]
        delay = frame.t - self._frames[0].t - elapsed
        if delay > 0:
            time.sleep(delay)
        self._i += 1
        return frame.image

    def close(self) -> None:
        self._frames = []


class ReplayMicrophone:
    """Calls back with a clip's audio in 50 ms blocks at wall-clock pace."""

    def __init__(self, path: str | Path, block: float = 0.05, stall_after: float | None = None):
        chunks = [item for item in FileSource(path) if isinstance(item, AudioChunk)]
        if not chunks:
            raise ValueError(f"'{path}' has no audio to replay")
        self._audio = np.concatenate([c.samples for c in chunks])
        self._block = int(block * chunks[0].rate)
        self._rate = chunks[0].rate
        self._stall_after = stall_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, callback: Callable[[np.ndarray], None]) -> None:
        def run() -> None:
            start = time.monotonic()
            for pos in range(0, len(self._audio), self._block):
                due = start + (pos + self._block) / self._rate
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if self._stall_after is not None and pos / self._rate >= self._stall_after:
                    return
                callback(self._audio[pos : pos + self._block])

        self._thread = threading.Thread(target=run, name="replay-microphone", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
