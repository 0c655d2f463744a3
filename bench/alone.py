"""The file pipeline beside each of its stages run alone on the same media (issue 15).

A file run (``python -m realtime --source F``) decodes the file and feeds three workers
(face, acoustic features, speech) whose output the main thread cuts into windows and
scores (the model stage: the words' embedding and the DMD forward). Here each of those is
run alone, in this process, over every item a file run gives it: the same classes, options
and models (``load_components``), the same ``FileSource`` items. Decoding is timed on its
own; each worker's figure excludes the decoding of its items (they are decoded in the same
pass, untimed). The pipeline's own real-time factor comes from the command line in a child
process (``bench.e2e``), and the ratio to the slowest stage says how much the run loses to
running them together.
"""

from __future__ import annotations

import time
from pathlib import Path

from realtime.types import AudioChunk, VideoFrame


def _timed_pass(video: Path, take, finish=None) -> tuple[float, float]:
    """Decode ``video`` as a file run does and call ``take(item)`` on each item; returns
    (seconds spent in ``take`` and ``finish``, media seconds)."""
    from realtime.sources.file import FileOptions, FileSource

    source = FileSource(video, FileOptions())
    spent = 0.0
    for item in source:
        started = time.perf_counter()
        take(item)
        spent += time.perf_counter() - started
    if finish is not None:
        started = time.perf_counter()
        finish()
        spent += time.perf_counter() - started
    return spent, source.end_time


def word_windows(engine, words: list, media: float) -> list:
    """The windows a file run of ``media`` seconds cuts (the default hop), holding ``words``
    (each with its sentence's earlier words, as a run gives them); face and voice masked."""
    from realtime.run import RunOptions
    from realtime.windows import WindowAssembler

    assembler = WindowAssembler(engine.spec.window_spec(RunOptions().hop))
    for stream in ("face", "audio"):
        assembler.close(stream)
    assembler.push_words(words)
    assembler.close("text")
    return assembler.flush(media)


def _model_alone(engine, windows: list, media: float, batch: int = 16) -> tuple[float, int]:
    """Real-time factor of the model stage alone on ``windows`` (``word_windows``): the words'
    embedding, with the embedder's memory of earlier word lists cleared first, and the DMD
    forward, in batches of ``batch``. A lower bound of what a file run spends there: its
    batches follow the windows as they close (a 25 s speech read closes many at once), and
    the face and voice, masked here, add each record's channel readings and edges (the
    forward's arithmetic is the same). Returns it and the word lists embedded."""
    engine.text.clear_cache()
    before = engine.text.counts.computed
    started = time.perf_counter()
    for i in range(0, len(windows), batch):
        engine(windows[i: i + batch])
    return round((time.perf_counter() - started) / media, 4), engine.text.counts.computed - before


def stages_alone(video: Path, device: str = "auto", components=None) -> dict:
    """Real-time factor of decoding and of each worker alone on ``video``; the slowest named.
    ``components``: models already loaded (``realtime.service.Components``; default: loaded
    here and closed after)."""
    from contextlib import nullcontext

    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.service import component_args, load_components
    from realtime.sources.file import FileOptions, FileSource

    out: dict = {}
    started = time.perf_counter()
    source = FileSource(video, FileOptions())
    for _ in source:
        pass
    media = source.end_time
    out["decode"] = round((time.perf_counter() - started) / media, 4)
    loaded = nullcontext(components) if components is not None else load_components(component_args(device=device))
    with loaded as comps:
        comps.face.new_stream()
        frames = [0, 0]

        def face(item) -> None:
            if isinstance(item, VideoFrame):
                frames[0] += 1
                frames[1] += comps.face(item).features is not None

        spent, _ = _timed_pass(video, face)
        out["face"] = round(spent / media, 4)
        out["face_frames"], out["face_found"] = frames

        comps.acoustic.reset()

        def acoustic(item) -> None:
            if isinstance(item, AudioChunk):
                comps.acoustic.push(item)

        spent, _ = _timed_pass(video, acoustic, comps.acoustic.flush)
        out["acoustic"] = round(spent / media, 4)

        asr = StreamingTranscriber(comps.whisper, ASROptions.for_files())
        words: list = []

        def speech(item) -> None:
            if isinstance(item, AudioChunk):
                asr.insert_audio(item)
                if asr.ready():
                    words.extend(asr.process_iter())

        with asr:
            spent, _ = _timed_pass(video, speech, lambda: words.extend(asr.finish()))
        out["speech"] = round(spent / media, 4)
        out["speech_words"] = len(words)
        windows = word_windows(comps.engine, words, media)
        out["model_windows"] = len(windows)
        out["model"], out["model_lists"] = _model_alone(comps.engine, windows, media)
    stages = ("decode", "face", "acoustic", "speech", "model")
    out["media_s"] = round(media, 2)
    out["slowest"] = max(stages, key=lambda name: out[name])
    return out


def compare(video: Path, device: str = "auto") -> dict:
    """``stages_alone`` and the whole file pipeline on ``video``, with their ratio."""
    from bench.e2e import file_pipeline

    alone = stages_alone(video, device)
    pipeline = file_pipeline(video, device)
    alone["pipeline"] = pipeline["rtf"]
    alone["pipeline_over_slowest"] = round(pipeline["rtf"] / alone[alone["slowest"]], 2)
    return alone
