"""Test environment: Qt offscreen, no hub access, small shared fixtures."""

import os

# Qt aborts the whole process with no display unless told to render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing may download: a hub name must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import pickle  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def synthetic_pickle(tmp_path_factory) -> Path:
    """A small synthetic MMSA-format pickle, written once per test session."""
    from models.synthetic import SyntheticSpec, make_synthetic

    path = tmp_path_factory.mktemp("data") / "synthetic.pkl"
    with path.open("wb") as fh:
        pickle.dump(make_synthetic(SyntheticSpec(train=320, valid=96, test=128, seed=3)), fh)
    return path


EXAMPLE = ROOT / "examples" / "talking.mp4"
TALKING_FACES = SHARED / "data" / "talking_faces"


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Real media of every awkward kind, generated once: espeak-ng speech, a real face."""
    import wave

    import numpy as np

    from realtime.synth_media import RATE, astronaut_face, moving_face, speak, write_av

    folder = tmp_path_factory.mktemp("media")
    speech = speak("I really love this, it makes me very happy.", "en-us")
    audio = np.concatenate([np.zeros(4000, np.float32), speech * 0.8, np.zeros(4000, np.float32)])
    image, centre = astronaut_face()
    n = int(len(audio) / RATE * 10)
    out = {}
    out["video_no_audio"] = folder / "video_no_audio.mp4"
    write_av(out["video_no_audio"], None, moving_face(image, centre, n, 10, (320, 240)), fps=10, size=(320, 240))
    out["audio_only_m4a"] = folder / "audio_only.m4a"
    write_av(out["audio_only_m4a"], audio, None)
    out["audio_only_wav"] = folder / "audio_only.wav"
    with wave.open(str(out["audio_only_wav"]), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    out["no_face"] = folder / "no_face.mp4"
    blank = (np.full((240, 320, 3), 90, np.uint8) for _ in range(n))
    write_av(out["no_face"], audio, blank, fps=10, size=(320, 240))
    out["silence"] = folder / "silence.mp4"
    write_av(out["silence"], np.zeros_like(audio), moving_face(image, centre, n, 10, (320, 240)), fps=10,
             size=(320, 240))
    out["not_media"] = folder / "notes.mp4"
    out["not_media"].write_text("this is not a video\n" * 50)
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["truncated"] = folder / "truncated.mp4"
    data = EXAMPLE.read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 2])
    # an mp4 cut in half loses its index (moov at the end): nothing can be read. A
    # Matroska file cut in half still decodes its first half.
    whole = folder / "whole.mkv"
    write_av(whole, audio, moving_face(image, centre, n, 10, (320, 240)), fps=10, size=(320, 240))
    out["truncated_mkv"] = folder / "truncated.mkv"
    out["truncated_mkv"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return out


def cli(*args, module: str = "realtime", timeout: float = 300):
    """Run ``python -m <module>`` from the repository root and capture its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def components():
    """The default models on the CPU, loaded once per test session."""
    from realtime.cli import component_args, load_components

    return load_components(component_args(device="cpu"))


def run_live(components, camera, mic, duration: float):
    """A live-mode run of a camera and a microphone (either may be None) for ``duration`` s:
    (estimates, summary, pipeline threads still alive after it)."""
    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.sinks import Summary
    from realtime.sources.live import make_live_feed

    estimates = []

    class Collect:
        def write(self, est):
            estimates.append(est)

        def close(self):
            pass

    summary = Summary(source="replay")
    components.acoustic.reset()
    components.face.new_stream()
    transcriber = StreamingTranscriber(components.whisper, ASROptions())
    with Pipeline(PipelineOptions(live=True), components.engine, components.face, components.acoustic,
                  transcriber) as pipeline:
        pipeline.run(make_live_feed(camera, mic, duration), has_video=camera is not None,
                     has_audio=mic is not None, sinks=[Collect()], summary=summary)
        threads = list(pipeline._threads)
    return estimates, summary, threads


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """python -m realtime on the example video, once per session: (records path, process)."""
    from realtime.engine import DEFAULT_CHECKPOINT

    assert (DEFAULT_CHECKPOINT / "checkpoint.json").is_file(), "the bundled default model is missing"
    out = tmp_path_factory.mktemp("run") / "a.jsonl"
    proc = cli("--source", EXAMPLE, "--out", out, "--summary", out.with_suffix(".summary.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
