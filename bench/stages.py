"""What each stage costs on its own, on real inputs, with the default models.

Every figure is a median over repeated calls after a warm-up call, single process, on
the device given (the DMD student also on CUDA when asked; see bench.gpu for sweeps).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.types import AUDIO_RATE, FACE_FPS, AudioChunk, VideoFrame


def _median_ms(call: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(times)


def alternated_ms(calls: dict[str, Callable[[], object]], rounds: int, repeat: int,
                  warmup: int = 1) -> dict[str, list[float]]:
    """ms per call of each of ``calls``, timed in turn round after round (so a busy
    neighbour slows them alike): each round's figure is the mean of ``repeat`` calls;
    ``warmup`` untimed calls of each first."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(repeat):
                call()
            times[name].append(1000.0 * (time.perf_counter() - started) / repeat)
    return times


def _decode(video: Path, fps: float = FACE_FPS, max_side: int = 640):
    from realtime.sources.file import FileOptions, FileSource

    frames, chunks = [], []
    for item in FileSource(video, FileOptions(video_fps=fps, max_side=max_side)):
        (frames if isinstance(item, VideoFrame) else chunks).append(item)
    return frames, chunks


def face_ms_per_frame(video: Path, frames: int = 60) -> dict:
    """MediaPipe FaceLandmarker (VIDEO mode) on real frames scaled to 640x480."""
    import cv2

    from realtime.features.face import FaceExtractor

    decoded, _ = _decode(video)
    images = [cv2.resize(f.image, (640, 480), interpolation=cv2.INTER_LINEAR) for f in decoded[:frames]]
    times, found = [], 0
    with FaceExtractor() as face:
        face(VideoFrame(t=0.0, image=images[0]))  # warm-up
        for i, image in enumerate(images):
            started = time.perf_counter()
            out = face(VideoFrame(t=0.1 * (i + 1), image=image))
            times.append(1000.0 * (time.perf_counter() - started))
            found += out.features is not None
    return {"face_ms_per_frame": round(statistics.median(times), 2), "face_frames": len(images),
            "face_found": found}


def acoustic_ms_per_second(video: Path) -> dict:
    """librosa features and the voice detector, fed as 0.1 s chunks like the pipeline does
    (one extractor, reset per pass, as a run's components are)."""
    from realtime.features.acoustic import AcousticExtractor

    _, chunks = _decode(video)
    seconds = sum(len(c.samples) for c in chunks) / chunks[0].rate

    with AcousticExtractor() as ex:

        def run() -> None:
            ex.reset()
            for chunk in chunks:
                ex.push(chunk)
            ex.flush()

        ms = _median_ms(run, repeat=3, warmup=1)
    return {"acoustic_ms_per_audio_s": round(ms / seconds, 2)}


def speech_rtf(video: Path) -> dict:
    """faster-whisper tiny.en: whole-file steps (file mode) and 0.5 s steps (live mode)."""
    from realtime.features.speech import ASROptions, StreamingTranscriber, load_whisper

    _, chunks = _decode(video)
    seconds = sum(len(c.samples) for c in chunks) / chunks[0].rate
    model = load_whisper(ASROptions())
    out = {}
    for name, options in (("file", ASROptions.for_files()), ("live", ASROptions())):
        with StreamingTranscriber(model, options) as asr:
            asr.insert_audio(AudioChunk(0.0, np.zeros(AUDIO_RATE, np.float32), AUDIO_RATE))
            asr.process_iter()  # warm-up
        with StreamingTranscriber(model, options) as asr:
            started = time.perf_counter()
            words = 0
            for chunk in chunks:
                asr.insert_audio(chunk)
                if asr.ready():
                    words += len(asr.process_iter())
            words += len(asr.finish())
        out[f"speech_rtf_{name}"] = round((time.perf_counter() - started) / seconds, 3)
        out[f"speech_words_{name}"] = words
    return out


def text_ms_per_window(words_per_window: int = 12) -> dict:
    """Token embeddings of one window's new words, per encoder (its memory of recent word
    lists emptied before each call, so every call runs the model)."""
    from realtime.features.text import ENCODERS, TextEmbedder, TextOptions

    words = ("this is terrible I hate it it is awful and I feel miserable " * 3).split()[:words_per_window]
    out = {}
    for encoder in ENCODERS:
        text = TextEmbedder(TextOptions(encoder=encoder))

        def call(text=text):
            text.clear_cache()
            text.embed_many([words])

        out[f"text_ms_per_window_{encoder}"] = round(_median_ms(call, repeat=30), 2)
    return out


def dmd_forward(device: str = "cpu", threads: int | None = None, rounds: int = 7) -> dict:
    """The bundled DMD student alone (no text embedding): ms at batch 1, windows/s at batch 64,
    for the forward serving uses (models.fast.FastDMD: ONNX Runtime for one CPU window), the
    same forward kept in torch, and the eager training forward, timed in alternation (rounds
    of each in turn), medians over the rounds."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.fast import FastDMD
    from realtime.engine import DEFAULT_CHECKPOINT
    from realtime.featureset import FeatureSpec

    if threads is not None:
        torch.set_num_threads(threads)
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    net = checkpoint.build(device)
    fast = FastDMD(net)  # as the engine builds it: ONNX Runtime for one CPU window
    fast_torch = FastDMD(net, runtime="torch")
    dev = torch.device(device)

    def batch(n: int):
        g = torch.Generator().manual_seed(0)
        inputs = {m: torch.randn(n, spec.steps[m], spec.dims[m], generator=g).to(dev) for m in ("L", "A", "V")}
        masks = {m: torch.ones(n, spec.steps[m]).to(dev) for m in ("L", "A", "V")}
        return inputs, masks

    def timed(n: int, repeat: int) -> dict[str, list[float]]:
        inputs, masks = batch(n)
        calls = {"serving": lambda: fast(inputs, masks).sentiment.cpu(),
                 "serving_torch": lambda: fast_torch(inputs, masks).sentiment.cpu(),
                 "eager": lambda: net(inputs, masks).sentiment.cpu()}
        times: dict[str, list[float]] = {name: [] for name in calls}
        with torch.inference_mode():
            for _ in range(rounds):
                for name, call in calls.items():
                    times[name].append(_median_ms(call, repeat=repeat, warmup=1))
        return times

    one, b64 = timed(1, 30), timed(64, 2)
    out = {}
    for name, key in (("serving", "dmd"), ("serving_torch", "dmd_torch"), ("eager", "dmd_eager")):
        out[f"{key}_ms_batch1_{device}"] = round(statistics.median(one[name]), 2)
        out[f"{key}_ms_batch1_{device}_range"] = [round(min(one[name]), 2), round(max(one[name]), 2)]
        out[f"{key}_windows_per_s_batch64_{device}"] = round(64000.0 / statistics.median(b64[name]))
    out["torch_threads"] = torch.get_num_threads()
    return out


def run(video: Path) -> dict:
    results = {}
    for step in (lambda: dmd_forward("cpu"), lambda: face_ms_per_frame(video), lambda: acoustic_ms_per_second(video),
                 lambda: text_ms_per_window(), lambda: speech_rtf(video)):
        results.update(step())
    return results
