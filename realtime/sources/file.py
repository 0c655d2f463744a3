"""Decode a media file with PyAV into timestamped video frames and mono audio chunks.

Any container PyAV reads works: mp4, mkv, webm, mov, avi, and audio-only files (wav,
flac, m4a, mp3, ogg). Two clock modes: ``asap`` uses media timestamps only and runs as
fast as the consumer takes (deterministic: tests, evaluation, batch); ``realtime``
replays at wall-clock pace like a camera would deliver.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError
from realtime.types import AUDIO_RATE, FACE_FPS, AudioChunk, VideoFrame

logger = logging.getLogger(__name__)

MEDIA_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".wav", ".flac", ".m4a", ".mp3", ".ogg",
                  ".opus", ".aac", ".mpg", ".mpeg", ".ts", ".3gp"}


class MediaError(UserError, ValueError):
    """A file that cannot be used as media; the message is one line naming it."""


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    has_video: bool
    has_audio: bool
    duration: float | None
    width: int = 0
    height: int = 0
    fps: float | None = None
    """The video's average frame rate, where the container says."""
    audio_streams: int = 0
    """Audio streams in the file; the first is read."""


@dataclass(frozen=True)
class FileOptions:
    """How a file is read."""

    pace: str = "asap"
    """'asap' (media time only, deterministic) or 'realtime' (wall-clock pace)."""
    video_fps: float = FACE_FPS
    """Frames per second passed on for face analysis (every other frame is skipped)."""
    max_side: int = 640
    """Frames larger than this on their longer side are scaled down before analysis."""
    audio_chunk: float = 0.1
    """Seconds of audio per chunk."""


def probe(path: str | Path) -> MediaInfo:
    """Open a file and say what it holds; MediaError when it is not usable media."""
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"'{path}': no such file")
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder")
    if path.stat().st_size == 0:
        raise MediaError(f"'{path}' is empty")
    try:
        with av.open(str(path), timeout=10) as container:
            video = next(iter(_moving(container)), None)
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                raise MediaError(f"'{path}' has no audio or video stream")
            duration = container.duration / 1e6 if container.duration else None
            info = MediaInfo(
                path=path, has_video=video is not None, has_audio=audio is not None, duration=duration,
                width=video.codec_context.width if video else 0,
                height=video.codec_context.height if video else 0,
                fps=float(video.average_rate) if video is not None and video.average_rate else None,
                audio_streams=len(container.streams.audio),
            )
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many error types for non-media input
        kind = "is truncated or not a media file" if path.suffix.lower() in (".mp4", ".mov", ".m4a", ".m4v") \
            else "is not a media file"
        raise MediaError(f"'{path}' {kind} PyAV can read ({type(exc).__name__})") from None
    if info.has_video and (info.width <= 0 or info.height <= 0):
        raise MediaError(f"'{path}': video stream has no frame size")
    return info


ATTACHED_PIC = 0x400
"""FFmpeg's AV_DISPOSITION_ATTACHED_PIC, as a number: not every PyAV the project allows names it."""


def _moving(container) -> list:
    """The container's video streams that move: an audio file's cover picture (a stream of
    one attached picture) is no video of a face."""
    return [s for s in container.streams.video if not int(getattr(s, "disposition", 0)) & ATTACHED_PIC]


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes keep swscale happy; at least 2 pixels
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _declared_end(container, streams: list, origin: float) -> float | None:
    """Where the streams read should end, by the container's word (seconds from ``origin``):
    their own declared ends; else, when they are its only audio and video, the container's
    length; else None (another track, longer or shorter, would make that length no measure)."""
    ends = [float((s.start_time or 0) + s.duration) * float(s.time_base) - origin
            for s in streams if s.duration is not None and s.time_base is not None]
    if ends:
        return max(ends)
    if container.duration and len(_moving(container)) + len(container.streams.audio) == len(streams):
        return (container.start_time or 0) / 1e6 + container.duration / 1e6 - origin
    return None


ENDED_EARLY = 1.0
"""Seconds short of its declared length (and 5 % of it) at which a file is said to end early."""
AUDIO_GAP = 0.1
"""Seconds an audio stream's timestamps may skip ahead of its samples before what follows is
stamped at its own time, leaving a gap (counted on, it would move up)."""
CODEC_PADDING = 0.1
"""Seconds of decoded audio past the stream's declared end taken for the codec's padding
(AAC decodes whole frames of 1024 samples) and left out."""


class FileSource:
    """Yields VideoFrame and AudioChunk objects in presentation order from one file."""

    def __init__(self, path: str | Path, options: FileOptions = FileOptions()):
        if options.pace not in ("asap", "realtime"):
            raise ValueError(f"unknown pace {options.pace!r}: use asap or realtime")
        self.info = info = probe(path)
        self.options = options
        self.decode_errors = 0
        self.audio_gaps = 0
        """Times the audio's timestamps skipped ahead of its samples (gaps: nothing heard there)."""
        if info.audio_streams > 1:
            logger.warning("'%s' has %d audio streams: only the first is heard (mix them, or pick the one with the "
                           "voice, e.g. with ffmpeg -map 0:a:1, to hear another)", info.path, info.audio_streams)
        self.end_time = 0.0
        self.ended_early: tuple[float, float] | None = None
        """(where the media ended, the length its container declares), seconds, when it ended
        well before that length (a file cut short); a warning says so as reading ends."""

    def __iter__(self) -> Iterator[VideoFrame | AudioChunk]:
        return self.read()

    def read(self, clock: Callable[[], float] | None = None) -> Iterator[VideoFrame | AudioChunk]:
        """The items; ``clock``: with realtime pace, the clock (seconds) they wait for, which
        may stand still (a paused run's). Default: wall time since reading began.

        At realtime pace the streams are handed over in media-time order, as a camera and a
        microphone deliver them, whatever the file's interleaving: muxers commonly store
        audio a second behind the video beside it (the example does), and read in file order
        the audio, and every word in it, would reach the run that much late."""
        if self.options.pace != "realtime":
            yield from self._decoded()
            return
        start_wall = time.monotonic()
        clock = clock or (lambda: time.monotonic() - start_wall)
        kinds = {kind for kind, has in ((VideoFrame, self.info.has_video), (AudioChunk, self.info.has_audio)) if has}
        yield from _in_time_order(self._decoded(), kinds, lambda t: self._pace(clock, t))

    def _decoded(self) -> Iterator[VideoFrame | AudioChunk]:
        """The items in the file's order, as they decode."""
        import av

        opts = self.options
        info = self.info
        container = av.open(str(info.path), timeout=10)
        try:
            video = _moving(container)[0] if info.has_video else None
            audio = container.streams.audio[0] if info.has_audio else None
            streams = [s for s in (video, audio) if s is not None]
            if video is not None:
                video.thread_type = "AUTO"
            origin = self._origin(container)
            timeline = _AudioTimeline(int(round(opts.audio_chunk * AUDIO_RATE)),
                                      _declared_end(container, [audio], origin),
                                      on_gap=self._gap) if audio is not None else None
            next_video_t = -math.inf
            size = _scaled_size(info.width, info.height, opts.max_side) if video is not None else None
            frame_step = 1.0 / float(video.average_rate) if video is not None and video.average_rate else 0.0
            video_end = _declared_end(container, [video], origin) if video is not None else None

            for packet in self._packets(container, streams):
                for frame in self._decode(packet):
                    t = (float(frame.time) if frame.time is not None else 0.0) - origin
                    if isinstance(frame, av.VideoFrame):
                        # the media lasts until the frame's end, not its start (at 1 frame a
                        # second the last frame's second would be in no window): its own
                        # duration (PyAV 14.4's Frame.duration: a packet's, which a muxer may
                        # have written wrong) up to the average step, and never past the
                        # stream's declared end where that lies beyond the frame
                        ticks, base = getattr(frame, "duration", None), frame.time_base
                        steps = [x for x in (float(ticks * base) if ticks and base else 0.0, frame_step) if x > 0]
                        step = min(steps) if steps else 0.0
                        end = t + step if video_end is None or video_end <= t else min(t + step, video_end)
                        self.end_time = max(self.end_time, end)
                        if frame.is_corrupt:  # concealed damage: its pixels are not the scene
                            self._damaged(t)
                            continue
                        if t < next_video_t:
                            continue
                        # the first frame of each 1/video_fps slot of media time
                        next_video_t = (math.floor(t * opts.video_fps + 1e-6) + 1) / opts.video_fps
                        image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                        turns = round((frame.rotation or 0) / 90) % 4
                        if turns:  # phones store portrait video sideways with a display rotation
                            image = np.rot90(image, turns)
                        # PyAV returns a strided view when rows are not aligned; MediaPipe
                        # then silently finds no face (see shared/data/talking_faces).
                        yield VideoFrame(t=t, image=np.ascontiguousarray(image))
                    else:
                        yield from timeline.take(frame, t)
            if timeline is not None:
                yield from timeline.finish()
                if timeline.heard:
                    self.end_time = max(self.end_time, timeline.end)
            if self.audio_gaps > 1:
                logger.warning("'%s': %d gaps in its audio in all; nothing is heard in them", info.path,
                               self.audio_gaps)
            if timeline is not None and not timeline.heard:
                logger.warning("'%s': its audio stream holds no audio; running without audio and text", info.path)
            declared = _declared_end(container, [s for s in (video, audio) if s is not None], origin)
            read_end = self.end_time  # where what was read ends: a frame's end, the last audio sample
            if declared and declared - read_end > max(ENDED_EARLY, 0.05 * declared):
                self.ended_early = (read_end, declared)
                logger.warning("'%s': the media ends at %.1f s of the %.1f s its container declares (a file "
                               "cut short?); keeping what was read", info.path, read_end, declared)
            if video is not None and next_video_t == -math.inf:
                logger.warning("'%s': its video stream holds no frames; running without face", info.path)
        finally:
            container.close()

    @staticmethod
    def _origin(container) -> float:
        """Media time zero: the earliest stream start (many files start a little above 0)."""
        starts = []
        for s in _moving(container)[:1] + list(container.streams.audio[:1]):
            if s.start_time is not None and s.time_base is not None:
                starts.append(float(s.start_time * s.time_base))
        return min(starts) if starts else 0.0

    def _packets(self, container, streams):
        import av

        it = container.demux(*streams)
        while True:
            try:
                packet = next(it)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                self.decode_errors += 1
                logger.warning("'%s': demuxing stopped early at %.2f s (%s); keeping what was read",
                               self.info.path, self.end_time, type(exc).__name__)
                return
            yield packet

    def _decode(self, packet):
        import av

        try:
            return packet.decode()
        except (av.error.FFmpegError, ValueError) as exc:
            self.decode_errors += 1
            if self.decode_errors == 1:
                logger.warning("'%s': skipping undecodable data near %.2f s (%s)", self.info.path, self.end_time,
                               type(exc).__name__)
            return []

    def _gap(self, heard: float, t: float) -> None:
        """The audio skips from ``heard`` to ``t`` (``_AudioTimeline``)."""
        self.audio_gaps += 1
        if self.audio_gaps == 1:
            logger.warning("'%s': its audio skips from %.2f s to %.2f s; nothing is heard in between", self.info.path,
                           heard, t)

    def _damaged(self, t: float) -> None:
        self.decode_errors += 1
        if self.decode_errors == 1:
            logger.warning("'%s': skipping damaged frames from %.2f s", self.info.path, t)

    @staticmethod
    def _pace(clock: Callable[[], float], t: float) -> None:
        """Realtime pace: wait until ``clock`` reaches media time ``t`` (in short sleeps,
        so a clock that stands still, a paused run, holds the source)."""
        while (delay := t - clock()) > 0:
            time.sleep(min(delay, 0.05))


REORDER_SPAN = 2.0
"""Seconds of media a realtime replay reads ahead of its slowest stream to hand the streams
over in time order: a stream that falls further behind (an audio track that ends early,
one with nothing in it) no longer holds the others back."""


def _due(item: VideoFrame | AudioChunk) -> float:
    """When a live device hands the item over: a frame at its time, a chunk of audio once its
    last sample is recorded."""
    if isinstance(item, AudioChunk):
        return item.t + len(item.samples) / item.rate
    return item.t


def _in_time_order(items: Iterator, kinds: set[type], pace: Callable[[float], None]) -> Iterator:
    """``items`` (in time order within their kind) in the order of their ``_due`` times across
    ``kinds``, each after ``pace(due)``. An item goes once every kind has reached its time,
    or once another kind is ``REORDER_SPAN`` past it."""
    waiting: list = []  # a heap of (t, arrival, item)
    latest = {kind: -math.inf for kind in kinds}
    try:
        for n, item in enumerate(items):
            due = _due(item)
            latest[type(item)] = max(latest.get(type(item), -math.inf), due)
            heapq.heappush(waiting, (due, n, item))
            ready = max(min(latest.values()), max(latest.values()) - REORDER_SPAN)
            while waiting and waiting[0][0] <= ready:
                t, _, out = heapq.heappop(waiting)
                pace(t)
                yield out
        while waiting:
            t, _, out = heapq.heappop(waiting)
            pace(t)
            yield out
    finally:
        items.close()  # a stop: the decoder's container closes now, not when collected


class FileFeed:
    """A media file as a run's input (see ``realtime.run.build_run``): decoded items go to
    the run's inlet as fast as its workers take them (``asap``), or on the run clock
    (``realtime``), which stands still while the run is paused."""

    def __init__(self, path: str | Path, options: FileOptions = FileOptions()):
        self.source = FileSource(path, options)
        self.info = self.source.info
        self.name = str(path)
        self.has_video = self.info.has_video
        self.has_audio = self.info.has_audio

    @property
    def decode_errors(self) -> int:
        return self.source.decode_errors

    @property
    def ended_early(self) -> tuple[float, float] | None:
        return self.source.ended_early

    def __call__(self, inlet) -> None:
        realtime = self.source.options.pace == "realtime"
        handed = 0.0
        with contextlib.closing(self.source.read(inlet.clock if realtime else None)) as items:
            for item in items:
                while inlet.paused and not inlet.stopped:
                    time.sleep(0.02)  # hold the input while paused (asap pace has no clock to stop)
                if inlet.stopped:
                    # the run heard what was handed over; the decoder reads up to REORDER_SPAN
                    # (and its own buffers) ahead of that, which a stopped replay never played
                    inlet.reached(handed)
                    return
                inlet.route(item)
                handed = max(handed, _due(item))
        inlet.reached(self.source.end_time)


class _AudioTimeline:
    """One audio stream's decoded frames as 16 kHz mono chunks of ``chunk`` samples, each
    stamped with its media time.

    Chunks are stamped by counting samples from the first frame's time, except where the
    stream's own times skip ahead by over ``AUDIO_GAP`` (a cut, or packets lost to damage):
    what follows then keeps its own time and the gap stays a gap. A skip is taken once the
    frame after it goes on from the new time; one frame whose time alone is off (a bad
    timestamp) is counted on. The last full chunk is held back until the next comes, so that
    the codec's padding past the stream's declared end (``declared_end``; AAC decodes whole
    frames) can be left out at the end. ``on_gap(where the samples ended, where the stream
    goes on)`` is told of each gap."""

    def __init__(self, chunk: int, declared_end: float | None, on_gap: Callable[[float, float], None]):
        import av

        self.on_gap = on_gap
        self.chunk = chunk
        self.declared_end = declared_end
        self.resampler = av.AudioResampler(format="fltp", rate=AUDIO_RATE)
        self.t0: float | None = None  # the time of the first sample not yet stamped
        self.pending = np.zeros(0, dtype=np.float32)
        self.held: AudioChunk | None = None  # the last full chunk, until the next
        self.skip: tuple | None = None  # (frame, its time) that skipped ahead, until the next frame says
        self.heard = False
        """Whether the stream gave any sample."""

    @property
    def end(self) -> float:
        """Where the samples taken so far end."""
        return (self.t0 or 0.0) + len(self.pending) / AUDIO_RATE

    def take(self, frame, t: float) -> Iterator[AudioChunk]:
        if self.t0 is None:
            self.t0 = max(0.0, t)
        if self.skip is not None:
            (skipped, at), self.skip = self.skip, None
            if abs(t - (at + skipped.samples / skipped.sample_rate)) <= AUDIO_GAP:  # the stream goes on from there
                self.on_gap(self.end, at)
                yield from self._cut()
                self.t0 = at
            yield from self._resample(skipped)
        if t - self.end > AUDIO_GAP and (self.declared_end is None or t < self.declared_end):
            self.skip = (frame, t)
            return
        yield from self._resample(frame)

    def finish(self) -> Iterator[AudioChunk]:
        if self.skip is not None:
            yield from self._resample(self.skip[0])
        try:
            for out in self.resampler.resample(None):
                self.pending = np.concatenate([self.pending, _mono(out)])
                self.heard = True
        except Exception:  # a resampler left in a bad state by corrupt input
            pass
        tail = np.concatenate([self.held.samples, self.pending]) if self.held is not None else self.pending
        t = self.held.t if self.held is not None else self.t0
        excess = (t or 0.0) + len(tail) / AUDIO_RATE - (self.declared_end or math.inf)
        if 0 < excess <= CODEC_PADDING:  # the codec's padding past the stream's end
            tail = tail[: max(0, len(tail) - round(excess * AUDIO_RATE))]
        self.held, self.pending = None, np.zeros(0, dtype=np.float32)
        for start in range(0, len(tail), self.chunk):
            yield AudioChunk(t=t + start / AUDIO_RATE, samples=tail[start:start + self.chunk].copy(), rate=AUDIO_RATE)
        self.t0 = (t or 0.0) + len(tail) / AUDIO_RATE

    def _resample(self, frame) -> Iterator[AudioChunk]:
        for out in self.resampler.resample(frame):
            self.pending = np.concatenate([self.pending, _mono(out)])
            self.heard = True
        while len(self.pending) >= self.chunk:
            if self.held is not None:
                yield self.held
            self.held = AudioChunk(t=self.t0, samples=self.pending[: self.chunk].copy(), rate=AUDIO_RATE)
            self.t0 += self.chunk / AUDIO_RATE
            self.pending = self.pending[self.chunk:]

    def _cut(self) -> Iterator[AudioChunk]:
        """Stamp everything taken so far, before a gap."""
        if self.held is not None:
            yield self.held
            self.held = None
        if len(self.pending):
            yield AudioChunk(t=self.t0, samples=self.pending, rate=AUDIO_RATE)
            self.t0 += len(self.pending) / AUDIO_RATE
            self.pending = np.zeros(0, dtype=np.float32)


def _mono(frame) -> np.ndarray:
    """Average the channels ourselves: a 'mono' layout resampler raises a stereo level by ~sqrt(2)."""
    data = frame.to_ndarray()  # (channels, samples) for planar float
    data = data.reshape(-1, frame.samples) if data.ndim == 2 else data.reshape(1, -1)
    return data.mean(axis=0).astype(np.float32)


def media_files(folder: Path) -> list[Path]:
    """Media files directly in a folder, by suffix, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
