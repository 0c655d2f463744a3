"""Where a run is built: loaded models, an input and options -> a pipeline ready to run.

The command line (file and live), the window, the bench's soak and the tests all build
their runs here, so every run starts the same way: a new face stream (timestamps start
again), the acoustic extractor reset, a transcriber of its own with the live or the file
options, and the pipeline's options from ``RunOptions``. The input is a feed
(``realtime.sources.file.FileFeed``, ``realtime.sources.live.LiveFeed``, or any object
with the same four members) that sees the run only through its ``Inlet``.

    with build_run(components, FileFeed(path), RunOptions(hop=0.5)) as run:
        summary = run.run(sinks=[JsonlSink(out, "refuse")])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from realtime import logs

if TYPE_CHECKING:
    from realtime.pipeline import Inlet, Pipeline
    from realtime.service import Components
    from realtime.sinks import Sink, Summary
    from realtime.types import Estimate, FaceFrame, VideoFrame, Word

logger = logging.getLogger(__name__)


class Feed(Protocol):
    """A run's input. ``__call__`` runs in a thread of its own and pushes items through the
    inlet until its media ends, the run stops, or its devices fail."""

    name: str
    """What the summary calls the input."""
    has_video: bool
    """A face worker starts only for an input with video."""
    has_audio: bool
    """Acoustic and speech workers start only for an input with audio."""

    def __call__(self, inlet: Inlet) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    """How a run goes (the models are ``Components``; the input a ``Feed``)."""

    live: bool = False
    """Close windows on the run clock, drop the oldest frames under load, and let Whisper
    step often and greedily: a camera, or a file played at media speed (``--pace realtime``).
    Otherwise a window closes once every stream has passed it, nothing is dropped, and
    Whisper reads 25 s at a time with beam 5, segment by segment: two runs of a file give the
    same records."""
    hop: float = 0.5
    """Seconds between windows."""
    batch: int = 16
    """Windows per model call, at most."""
    close_grace: float = 0.05
    """Live: seconds past a window's end before it closes (frames still on their way)."""


@dataclass(frozen=True)
class RunStatus:
    """A run as whoever watches it sees it (the window's health strip, the soak): a copy,
    taken from any thread."""

    paused: bool
    failed: dict[str, str]
    """Stream ('face', 'audio', 'text', 'source') -> the warning that gave it up."""
    dropped: dict[str, int]
    """Worker queue ('face', 'audio', 'text') -> items dropped so far (live runs drop the oldest)."""
    queued: dict[str, int]
    """Worker queue -> items waiting in it now."""
    bounds: dict[str, int]
    """Worker queue -> how many items it holds at most."""
    speech_lags: tuple[float, ...]
    """Live: seconds from each of the latest words' end to its arrival at the windows."""
    threads: tuple[str, ...]
    """The run's threads still alive (none once it has ended)."""


class Run:
    """A pipeline wired to its feed, from ``build_run``: call ``run`` once, inside ``with``
    (leaving it stops every thread, idempotently). What watches a run reads ``status()``
    and may ``pause``, ``resume`` or ``stop`` it, from any thread."""

    def __init__(self, pipeline: Pipeline, feed: Feed):
        self.pipeline = pipeline
        """The run's internals, for tests; what watches a run uses ``status``."""
        self.feed = feed

    def run(self, sinks: Sequence[Sink] = (), summary: Summary | None = None) -> Summary:
        """Run until the feed ends or a stop; every estimate goes to ``sinks`` (not closed
        here) and into ``summary`` (default: a new one named after the feed), returned."""
        from realtime.sinks import Summary

        summary = summary if summary is not None else Summary(source=self.feed.name)
        return self.pipeline.run(self.feed, has_video=self.feed.has_video, has_audio=self.feed.has_audio,
                                 sinks=list(sinks), summary=summary)

    def stop(self) -> None:
        """Ask the run to end (from any thread): input stops, finished windows are kept."""
        self.pipeline.stop()

    def pause(self) -> None:
        """Freeze the run clock (from any thread; also before ``run``): no window closes
        on time, and the clock resumes where it stopped."""
        self.pipeline.state.pause()

    def resume(self) -> None:
        self.pipeline.state.resume()

    def status(self) -> RunStatus:
        """What the run shows now (from any thread)."""
        return self.pipeline.status()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.pipeline.shutdown()


def _warn_of_the_media(info, spec) -> None:
    """What a file's streams lack, for every front end (``info``: a file feed's MediaInfo)."""
    if info is None:
        return
    if not info.has_video:
        logger.warning("'%s' has no video stream; running audio + text only", info.path)
    if not info.has_audio:
        logger.warning("'%s' has no audio stream; running face only", info.path)
    steps = spec.face_steps / spec.window
    if info.fps is not None and info.fps < 0.9 * steps:  # its own rate (--face-fps under it is the user's choice)
        logger.warning("'%s' has %.3g frames a second, fewer than the model's %g face steps a second: the steps "
                       "between its frames are masked, so its windows read a face coverage of about %.1f where "
                       "the face never leaves", info.path, info.fps, steps, info.fps / steps)


def build_run(components: Components, feed: Feed, options: RunOptions = RunOptions(),
              on_estimate: Callable[[Estimate], None] | None = None,
              on_face: Callable[[VideoFrame, FaceFrame], None] | None = None,
              on_transcript: Callable[[list[Word], list[Word]], None] | None = None) -> Run:
    """Ready ``components`` for a new input and wire ``feed`` to a pipeline; see ``Run``.

    ``on_estimate`` runs in the thread that calls ``Run.run``; ``on_face`` (each analysed
    frame with its face) and ``on_transcript`` (new committed words, the current uncommitted
    ones) run in worker threads and must only hand data over.
    """
    from realtime.features.acoustic import FILE_BLOCK, LIVE_BLOCK
    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.pipeline import Pipeline, PipelineOptions

    window = components.engine.spec.window
    if options.hop > window + 1e-9:  # each run's summary and window say it (a folder run's terminal once)
        logger.warning("--hop %g s is longer than the %g s window: %g s between windows is never analysed",
                       options.hop, window, options.hop - window, extra=logs.ONCE)
    _warn_of_the_media(getattr(feed, "info", None), components.engine.spec)
    components.face.new_stream()  # the input's clock starts at 0 again
    # the engine's own voicing, if another's was loaded; live, voice frames 0.1 s at a time
    components.acoustic.reset(components.engine.spec.voicing, block=LIVE_BLOCK if options.live else FILE_BLOCK)
    asr = ASROptions() if options.live else ASROptions.for_files()
    pipeline = Pipeline(PipelineOptions(**asdict(options)), components.engine, components.face, components.acoustic,
                        StreamingTranscriber(components.whisper, asr),
                        on_estimate=on_estimate, on_face=on_face, on_transcript=on_transcript)
    return Run(pipeline, feed)
