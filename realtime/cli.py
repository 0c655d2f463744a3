"""python -m realtime: emotion records from a video file, a folder, or webcam + microphone.

    python -m realtime --source examples/talking.mp4 --out results.jsonl
    python -m realtime --source videos/ --out results/          # one record file per video
    python -m realtime --source videos/ --out results/ --engine ray --workers 8   # on Ray (docs/SCALING.md)
    python -m realtime --source webcam [--microphone NAME] --out live.jsonl

Exit codes: 0 done, 1 internal failure (a bug: a traceback), 2 bad input or usage
(nothing run), 3 a folder run that finished with some files failed (the summary lists
them), 130 interrupted (every finished window is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from models.errors import UsageError, UserError
from realtime import interrupts, logs
from realtime.cluster import add_engine_options, cluster_options
from realtime.outputs import output_file_problem
from realtime.service import (
    DURATION_MAX,
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    Components,
    Parser,
    add_model_options,
    check_model_options,
    load_components,
    prog_name,
    seconds_option,
    version_string,
)
from realtime.sources.live import camera_index

logger = logging.getLogger("realtime")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=prog_name("python -m realtime"), description=__doc__.split("\n")[0], epilog=EXIT_CODES)
    p.add_argument("--version", action="version", version=version_string())
    p.add_argument("--source", required=True,
                   help="a media file, a folder of media files, 'webcam' or a camera index")
    p.add_argument("--out", help="records: .jsonl or .csv (a folder when --source is a folder: one <name>.jsonl "
                                 "per file, <name>.<ext>.jsonl where two files share a name). Without it the "
                                 "records are not kept (a warning says so; the summary goes to stdout, or to "
                                 "--summary)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true",
                      help="replace existing output files (--out, --summary, --plot)")
    mode.add_argument("--append", action="store_true",
                      help="append records to an existing --out file (a line torn by a killed run is ended "
                           "first); --summary and --plot describe this run and are replaced")
    add_model_options(p)
    p.add_argument("--pace", choices=("asap", "realtime"), default="asap",
                   help="files: asap (deterministic, as fast as the machine goes; default) or realtime "
                        "(replay at media speed like a live camera)")
    p.add_argument("--microphone", help="live: input device name or index (default: the system's)")
    p.add_argument("--no-microphone", action="store_true", help="live: video only")
    p.add_argument("--duration", type=float,
                   help=f"live: stop after this many seconds (up to {DURATION_MAX:g}; default: until Ctrl-C)")
    p.add_argument("--gui", action="store_true",
                   help="open the desktop window instead (python -m gui; options it does not take are named "
                        "in one warning)")
    p.add_argument("--summary", help="also write the run's summary as JSON to this file (a list for a folder, "
                                     "with the files that failed); never an input or another output")
    p.add_argument("--plot", help="also draw the run (emotions, valence, channels over time) to this .png; "
                                  "a folder when --source is a folder (one <name>.png per file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    add_engine_options(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log model loading and timings, and let third-party libraries' own output through")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not args.source.strip():  # an unset shell variable: Path("") is the working folder
        raise UsageError("--source is empty: give a media file, a folder, 'webcam' or a camera index")
    check_model_options(args)
    cluster_options(args)
    if args.engine == "ray":
        folder = camera_index(args.source) is None and Path(args.source).is_dir()
        if not folder:
            raise UsageError("--engine ray runs folders: give --source FOLDER")
        for flag, given in (("--plot", args.plot), ("--append", args.append), ("--pace realtime",
                                                                                 args.pace == "realtime")):
            if given:
                raise UsageError(f"{flag} is not available with --engine ray")
    elif args.workers != 1:
        raise UsageError(f"--workers {args.workers}: a run on this machine has one worker; several need "
                         "--engine ray (with a folder as --source)")
    if args.quiet and not (args.out or args.summary or args.plot):  # the summary line was all it kept
        raise UsageError("--quiet without --out, --summary or --plot keeps nothing of the run: give one of them")
    if args.duration is not None:
        seconds_option("--duration", args.duration, 0.1, DURATION_MAX)
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


def _output_mode(args: argparse.Namespace) -> str:
    from realtime.sinks import output_mode

    return output_mode(args.overwrite, args.append)


NO_FACE_FRAMES = 10
"""Frames a file run must have analysed, none with a face, before it says it found no face
(an audio file's cover picture is one frame)."""


def run_file(path: Path, out: Path | None, args: argparse.Namespace, comps: Components, sinks: Sequence = ()):
    """One media file through the pipeline; returns its Summary. ``sinks``: more places
    than ``out`` for its records (``realtime.Recognizer`` keeps them in a list)."""
    from realtime.sinks import Summary

    summary = Summary(source=str(path), keep_records=bool(args.plot))
    with logs.warnings_to(summary.said_warning):  # the summary keeps what the run warned of
        _run_file(path, out, args, comps, summary, sinks)
    if summary.face_frames >= NO_FACE_FRAMES and not summary.interrupted and not summary.coverage_sum["face"]:
        # a second of frames analysed and a face in none (not a worker that failed, nor one picture)
        summary.warnings.append("no face found in its video: MediaPipe's face detector finds faces near the "
                                "camera, as a webcam sees them, not small faces in a wide shot")
    return summary


def _run_file(path: Path, out: Path | None, args: argparse.Namespace, comps: Components, summary,
              more_sinks: Sequence) -> None:
    from realtime.run import RunOptions, build_run
    from realtime.sinks import make_sink
    from realtime.sources.file import FileFeed, FileOptions

    feed = FileFeed(path, FileOptions(pace=args.pace, video_fps=args.face_fps))
    info = feed.info
    sinks = [make_sink(out, _output_mode(args), source=str(path))] if out is not None else []
    sinks += more_sinks
    bar = _progress(args, info.duration)

    def on_estimate(est) -> None:
        if bar is not None:
            bar.n = round(min(est.t_end, bar.total or est.t_end), 1)
            bar.set_postfix_str(f"sentiment {est.sentiment:+.2f}")
            bar.refresh()

    options = RunOptions(live=args.pace == "realtime", hop=args.hop)
    try:
        with build_run(comps, feed, options, on_estimate=on_estimate) as run:
            run.run(sinks, summary)
    finally:
        for sink in sinks:
            sink.close()
        if bar is not None:
            bar.close()
    if feed.decode_errors:  # the reader warned of the first; a file cut short it warned of itself
        summary.warnings.append(f"{feed.decode_errors} decode error{'s' if feed.decode_errors != 1 else ''}")


def run_live(args: argparse.Namespace, comps: Components):
    from realtime.sinks import Summary
    from realtime.sources.live import source_name

    out = Path(args.out) if args.out else None
    name = source_name(args.source)
    summary = Summary(source=name, keep_records=bool(args.plot))
    with logs.warnings_to(summary.said_warning):  # the summary keeps what the run warned of
        _run_live(args, comps, summary, out, name)
    return summary


def _run_live(args: argparse.Namespace, comps: Components, summary, out: Path | None, name: str) -> None:
    from realtime.run import RunOptions, build_run
    from realtime.sinks import make_sink
    from realtime.sources.live import LiveFeed, open_devices

    sinks = [make_sink(out, _output_mode(args), source=name)] if out is not None else []
    camera, mic = open_devices(camera_index(args.source), None if args.no_microphone else (args.microphone or ""))
    if _STOP_ASKED.is_set():  # an interrupted sounddevice import reads as a missing microphone
        if camera is not None:
            camera.close()
        raise KeyboardInterrupt
    if camera is None and mic is None:
        raise UsageError(f"camera {args.source} could not be opened, and --no-microphone leaves nothing to run"
                         if args.no_microphone else "no camera and no microphone could be opened")
    feed = LiveFeed(camera, mic, args.duration, video_fps=args.face_fps, name=summary.source)
    try:
        with build_run(comps, feed, RunOptions(live=True, hop=args.hop)) as run:
            run.run(sinks, summary)
    finally:
        for sink in sinks:
            sink.close()


def _progress(args: argparse.Namespace, duration: float | None):
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=round(duration, 1) if duration else None, unit="s", desc="media", leave=False,
                bar_format="{desc} {n:.1f}/{total} s |{bar}| {elapsed} ({rate_fmt}) {postfix}")


def say_end_findings(summary) -> None:
    """Log the warnings of a run nobody has said yet (its end findings: decode errors, no face
    found, windows left unscored), and mark them said."""
    with logs.kept_by_no_run():  # this run's own: no other run's summary keeps them
        for warning in summary.unsaid:
            logger.warning("%s: %s", summary.source, warning)
            summary.said_warning(warning)


def _report(summary, args, done: list, locks=None, plot: Path | None = None) -> None:
    """Warnings and the summary line; the plot (``plot``: this run's picture path); with
    --summary, the summaries so far as JSON (one object for a file or camera, a list for a
    folder), replaced whole (a temporary file renamed)."""
    say_end_findings(summary)
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
    done.append(summary.as_dict())
    if args.plot and plot is not None:
        from realtime.plot import draw_run

        draw_run(summary.records, plot, title=summary.source)
        if locks is not None:
            locks.keep(plot)
    _write_summary(args, done, locks)


def _summary_of_what_was_done(args, done: list, locks) -> None:
    """A folder run that stops early still writes its summary's last word (into a pipe, its
    only one); a failure to write it is said, and the error that stopped the run stays the one
    raised."""
    from realtime.outputs import OutputError

    try:
        _write_summary(args, done, locks, end=True)
    except (OutputError, OSError) as exc:
        logger.warning("%s", exc)


def _write_summary(args, done: list, locks=None, end: bool = False) -> None:
    """--summary: ``done`` so far (``end``: the run's last call). A folder run rewrites its
    list after each file, unless --summary is a pipe or a device (/dev/stdout | jq), where
    each rewrite would be another document: there it is written once, at the end."""
    if not args.summary:
        return
    from models import safejson
    from realtime.outputs import is_special, write_atomic

    folder = camera_index(args.source) is None and Path(args.source).is_dir()
    if not folder and (end or not done):  # one input's summary: written by its report, once
        return
    if folder and not end and is_special(Path(args.summary)):
        return
    text = safejson.dumps(done if folder else done[-1], indent=1) + "\n"
    if locks is not None:
        locks.replace(Path(args.summary), text)
    else:
        write_atomic(Path(args.summary), text)


def _plan_outputs(args: argparse.Namespace, files: list[Path], out_dir: Path | None, locks) -> tuple[dict, dict]:
    """Every path the run will write, checked together and locked before any model loads:
    (records path per input, plot path per input); for a camera the key is None.

    Never an input, never two outputs on one file, never a file another run is writing;
    existing files only with --overwrite (or --append for records).
    """
    from realtime.outputs import check_distinct, output_names
    from realtime.sinks import check_output

    mode = _output_mode(args)
    keys = files or [None]
    if out_dir is not None:
        names = output_names(files)
        outs = {f: out_dir / f"{names[f]}.jsonl" for f in files}
    else:
        names = {f: f.stem for f in files}
        outs = {k: Path(args.out) if args.out else None for k in keys}
    plots: dict = {k: None for k in keys}
    if args.plot:
        plot = Path(args.plot)
        plots = {f: plot / f"{names[f]}.png" for f in files} if out_dir is not None else {k: plot for k in keys}
    labelled = [("--out", p) for p in outs.values() if p is not None]
    labelled += [("--plot", p) for p in plots.values() if p is not None]
    if args.summary:
        labelled.append(("--summary", Path(args.summary)))
    check_distinct(files, labelled)
    for label, path in labelled:
        if label == "--out":
            check_output(path, mode)
        elif problem := output_file_problem(label, path, mode != "refuse"):
            raise UsageError(problem)
    for label, path in labelled:
        locks.acquire(path, label)
    return outs, plots


class FolderWorker:
    """What one Ray worker of a folder run holds: the run's options and its models, loaded
    once (``load_components``) and closed explicitly."""

    def __init__(self, args: argparse.Namespace, has_gpu: bool = False):
        self.args = args
        self.comps = load_components(args)  # device auto: the GPU Ray gave this worker, if any

    def close(self) -> None:
        self.comps.close()


def analyse_file(index: int, path: str, worker: FolderWorker):
    """One file of a folder run on a Ray worker: ``run_file``, as the local loop runs it,
    into a temporary file; the records come back as the Outcome's payload (JSON: the
    records' text and the summary) for the driver to write."""
    import json
    import tempfile

    from realtime.cluster import Outcome, worker_label

    said: list[str] = []
    with tempfile.TemporaryDirectory(prefix="realtime-") as tmp:
        out = Path(tmp) / "records.jsonl"
        try:
            with logs.warnings_to(said.append):  # what it warned of before failing goes back too
                summary = run_file(Path(path), out, worker.args, worker.comps)
        except Exception as exc:  # one bad file must not end the job
            warned = json.dumps({"warnings": said}).encode() if said else None
            return Outcome(index, warned, f"{type(exc).__name__}: {exc}", worker_label())
        records = out.read_text(encoding="utf-8") if out.exists() else ""
    payload = {"records": records, "summary": summary.as_dict(), "warnings": summary.warnings}
    return Outcome(index, json.dumps(payload).encode(), None, worker_label())


def say_worker_warnings(path: Path, warnings: list[str]) -> None:
    """What a Ray worker warned of for ``path``: said on the worker, whose log stays there,
    so said here too, each naming the file."""
    for warning in warnings:
        logger.warning("%s", warning) if f"'{path}'" in warning else logger.warning("%s: %s", path, warning)


def run_folder_on_ray(args: argparse.Namespace, files: list[Path], out_dir: Path, locks) -> int:
    """A folder run on Ray: each file's records are written whole (a temporary name, then
    renamed) when its result arrives; a file whose records exist is done and skipped (a
    re-run resumes; --overwrite redoes them); a file that fails is named and skipped."""
    import json
    import os
    from functools import partial

    from realtime.cluster import progress, run_on_ray
    from realtime.outputs import check_distinct, output_names, write_atomic

    names = output_names(files)
    outs = {f: out_dir / f"{names[f]}.jsonl" for f in files}
    labelled = [("--out", p) for p in outs.values()]
    if args.summary:
        labelled.append(("--summary", Path(args.summary)))
    check_distinct(files, labelled)
    if args.summary and (problem := output_file_problem("--summary", Path(args.summary), args.overwrite)):
        raise UsageError(problem)
    locks.acquire(out_dir / ".ray-run.lock", "--out")  # one run per folder at a time
    if args.summary:
        locks.acquire(Path(args.summary), "--summary")
    for stale in out_dir.glob(".*.jsonl.tmp-*"):  # left by a driver killed mid-write
        stale.unlink(missing_ok=True)
    todo = [(i, str(f)) for i, f in enumerate(files) if args.overwrite or not outs[f].exists()]
    logger.info("%d files, %d done before, %d to run on Ray", len(files), len(files) - len(todo), len(todo))
    # the workers compute with this machine's thread count, so their records equal a local run here
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))}
    done: list[dict] = []
    failed: list[tuple[Path, str]] = []
    outcomes = run_on_ray(todo, partial(FolderWorker, args), analyse_file, cluster_options(args), env=env) \
        if todo else iter(())
    for outcome in progress(outcomes, len(todo), args.quiet, "files"):
        path = files[outcome.index]
        if outcome.error:
            say_worker_warnings(path, json.loads(outcome.payload)["warnings"] if outcome.payload else [])
            failed.append((path, outcome.error))
            logger.error("%s: %s; skipped", path, outcome.error)
            done.append({"source": str(path), "failed": outcome.error})
            continue
        result = json.loads(outcome.payload)
        write_atomic(outs[path], result["records"])
        say_worker_warnings(path, result["warnings"])
        done.append(result["summary"])
    _write_summary(args, done, locks, end=True)
    if not args.quiet:
        print(f"{out_dir}: {len(todo) - len(failed)} files analysed on Ray, {len(files) - len(todo)} done before, "
              f"{len(failed)} failed", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(files)} files failed: "
              + "; ".join(f"{p.name} ({why})" for p, why in failed), file=sys.stderr)
        return EXIT_BAD_INPUT if len(failed) == len(files) else EXIT_SOME_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None, components: Components | None = None) -> int:
    """The command line; ``components``: models already loaded (tests, embedding callers),
    used instead of loading them and left open for their owner to close."""
    argv = list(argv if argv is not None else sys.argv[1:])
    args = build_parser().parse_args(argv)
    if args.gui:  # python -m realtime hands --gui to the window before this parser sees it
        print("error: --gui is for the command line (python -m realtime --gui, or python -m gui)", file=sys.stderr)
        return EXIT_BAD_INPUT
    # SIGTERM ends the run like Ctrl-C: finished windows are on disk, the file stays valid
    _STOP_ASKED.clear()
    previous = interrupts.take_signals(_ask_to_stop)
    unraisable = sys.unraisablehook
    sys.unraisablehook = functools.partial(_unraisable_unless_the_stop, unraisable)
    try:
        return _run(args, components)
    except Exception:
        if not _STOP_ASKED.is_set():
            raise
        # the interrupt broke what it landed in: a native module importing under it ends
        # with "ImportError: initialization failed", not with the KeyboardInterrupt
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # a run under way ends with its own summary; this is set-up or a stop between files
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sys.unraisablehook = unraisable
        interrupts.give_back(previous)


_STOP_ASKED = threading.Event()
"""Set by Ctrl-C and SIGTERM (``_ask_to_stop``) for the rest of the command: whatever the
interrupt broke or a fallback swallowed on its way, the run ends as interrupted (exit 130)."""


def _ask_to_stop(signum, frame) -> None:
    """The first signal stops the run (KeyboardInterrupt); a later one does not cut short the
    clean-up it started (finished windows written, models closed), which is bounded."""
    if _STOP_ASKED.is_set():
        return
    _STOP_ASKED.set()
    interrupts.interrupt()  # KeyboardInterrupt, once a record being delivered is written and counted


def _unraisable_unless_the_stop(previous, unraisable) -> None:
    """``sys.unraisablehook`` during a command: the stop's KeyboardInterrupt raised where it
    cannot propagate (in a ctypes callback: numba's compiler, under librosa, called back into
    Python when SIGTERM came) is not printed as a traceback; ``_STOP_ASKED`` still ends the
    run. Anything else goes to the ``previous`` hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _STOP_ASKED.is_set():
        return
    previous(unraisable)


def _stop_if_asked() -> None:
    """KeyboardInterrupt if Ctrl-C or SIGTERM came and something swallowed it (a fallback
    that caught the ImportError an interrupted import became)."""
    if _STOP_ASKED.is_set():
        raise KeyboardInterrupt


def _run(args: argparse.Namespace, components: Components | None) -> int:
    logs.configure(args.verbose)
    from models import safejson
    from realtime.outputs import OutputLocks
    from realtime.sources.file import MediaError, media_files, probe

    comps = None
    locks = OutputLocks()
    try:
        _check_args(args)
        if components is not None:  # models loaded before: windows of --window (or the checkpoint's)
            components = dataclasses.replace(components, engine=components.engine.with_window(args.window))
        live = camera_index(args.source) is not None
        source = Path(args.source)
        out_dir = None
        if live:
            files: list[Path] = []
        elif source.is_dir():
            files = media_files(source)
            if not files:
                raise UsageError(f"'{source}' holds no media files")
            if args.out is None:
                raise UsageError("--out must name a folder when --source is a folder")
            out_dir = Path(args.out)
            if out_dir.suffix or out_dir.is_file():
                raise UsageError(f"--out '{out_dir}' must be a folder when --source is a folder")
        else:
            probe(source)  # a bad file is reported before any model is loaded
            files = [source]
        if args.engine == "ray":
            return run_folder_on_ray(args, files, out_dir, locks)
        # every output checked and locked before any model loads (issue 17)
        outs, plots = _plan_outputs(args, files, out_dir, locks)
        ignored = [flag for flag, given in (("--duration", args.duration is not None),
                                            ("--microphone", args.microphone is not None),
                                            ("--no-microphone", args.no_microphone)) if given and not live]
        if ignored:
            logger.warning("%s: for a camera and microphone; a file or folder runs to its end with its own audio",
                           ", ".join(ignored))
        live_models = live or args.pace == "realtime"
        if live_models and args.text_precision == "bfloat16":
            logger.warning("live runs (a device, or --pace realtime) keep their words in float32: --text-precision "
                           "bfloat16 is for files read as fast as they decode")
        started = time.perf_counter()
        comps = components or load_components(args, live=live_models)
        _stop_if_asked()
        loaded = None if components is not None else time.perf_counter() - started
        if args.out is None:  # said once the models are up: an error loading them is then the one line
            logger.warning("no --out given: the records of this run are not kept, only its summary "
                           "(pass --out FILE.jsonl to keep them)")
        if live:
            summary = run_live(args, comps)
            summary.load_seconds = loaded
            if args.out:
                locks.keep(Path(args.out))
            _report(summary, args, [], locks, plots[None])
            return EXIT_OK
        failed: list[tuple[Path, str]] = []
        done: list[dict] = []
        with logs.said_once():  # a warning true of every file is said once; each summary keeps it
            try:
                for path in files:
                    _stop_if_asked()
                    out = outs[path]
                    try:
                        summary = run_file(path, out, args, comps)
                    except MediaError as exc:
                        _stop_if_asked()  # an interrupted decoder's error is the interrupt, not a bad file
                        if out_dir is None:
                            raise
                        failed.append((path, str(exc)))
                        logger.error("%s; skipped", exc)
                        for left in (out, plots[path]):
                            if left is not None:
                                locks.discard(left)  # an input that failed leaves no empty file
                        done.append({"source": str(path), "failed": str(exc)})
                        continue
                    if out is not None and not summary.interrupted:
                        # a finished input keeps its file, even empty; an interrupted one only its records
                        locks.keep(out)
                    summary.load_seconds, loaded = loaded, None  # the first file's summary says it
                    _report(summary, args, done, locks, plots[path])
                    if summary.interrupted:
                        _write_summary(args, done, locks, end=True)
                        return EXIT_INTERRUPTED
                    if args.out is None and not args.quiet and not args.summary:  # else it goes there
                        print(safejson.dumps(summary.as_dict()))
            except (KeyboardInterrupt, UserError):  # a stop or an error between files, or in one
                _summary_of_what_was_done(args, done, locks)
                raise
        _write_summary(args, done, locks, end=True)  # with every failure, also after the last file
        if failed:
            print(f"error: {len(failed)} of {len(files)} files failed: "
                  + "; ".join(f"{p.name} ({why})" for p, why in failed), file=sys.stderr)
            return EXIT_BAD_INPUT if len(failed) == len(files) else EXIT_SOME_FAILED
        _stop_if_asked()
        return EXIT_OK
    except UserError as exc:
        if _STOP_ASKED.is_set():  # an interrupted import reads as a missing package: main says interrupted
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        locks.release()  # outputs this run created and never wrote are removed
        if comps is not None and comps is not components:
            comps.close()  # explicitly, before interpreter shutdown (see Components.close)
