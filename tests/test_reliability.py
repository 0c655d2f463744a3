"""Reliability: awkward files, device and worker faults, bad checkpoints, long runs.

Every fault is injected into the real code path: real decoded media, the real models,
the real pipeline threads. Fakes stand in only for hardware this machine lacks.
"""

import json
import os
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from realtime.engine import DEFAULT_CHECKPOINT
from realtime.synth_media import RATE, astronaut_face, moving_face, speak
from realtime.types import VideoFrame
from tests.conftest import EXAMPLE, SIGNAL_EXIT_BOUND, TALKING_FACES, read_records, run_live, run_main

pytestmark = pytest.mark.slow


def _speech(seconds_of_pad: float = 0.4) -> np.ndarray:
    pad = np.zeros(int(seconds_of_pad * RATE), np.float32)
    return np.concatenate([pad, 0.8 * speak("I am really happy today.", "en-us"), pad])


def write(path, frames=None, size=(320, 240), codec="libx264", pix_fmt="yuv420p", audio=None, pts_ms=None,
          rotation=None, empty_audio=False, corrupt_every=0, preset=None):
    """A media file with PyAV, video and audio packets interleaved by time: ``frames`` (RGB
    arrays), optional frame times in ms (variable frame rate), a display rotation, audio (or
    an audio stream with none), every ``corrupt_every``-th video packet's payload
    overwritten with random bytes (the container stays intact), and an x264 ``preset``."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        packets = []
        if frames is not None:
            vstream = container.add_stream(codec, rate=10)
            vstream.width, vstream.height = size
            vstream.pix_fmt = pix_fmt
            if codec == "libx264":
                # a keyframe a second: decoding recovers after damage
                vstream.options = {"g": "10", **({"preset": preset} if preset else {})}
            if pts_ms is not None:
                vstream.time_base = Fraction(1, 1000)
            if rotation is not None:
                vstream.set_display_rotation(rotation)
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if pts_ms is not None:
                    frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
                packets += vstream.encode(frame)
            packets += vstream.encode()
            if corrupt_every:
                for k in range(corrupt_every, len(packets), corrupt_every):
                    old = packets[k]
                    payload = bytearray(bytes(old))
                    cut = len(payload) // 4
                    payload[cut:] = rng.integers(0, 256, len(payload) - cut, dtype=np.uint8).tobytes()
                    new = av.Packet(bytes(payload))
                    new.pts, new.dts, new.time_base, new.stream = old.pts, old.dts, old.time_base, old.stream
                    new.is_keyframe = old.is_keyframe
                    packets[k] = new
        if audio is not None or empty_audio:
            astream = container.add_stream("aac", rate=RATE)
            astream.layout = "mono"
            for start in range(0, len(audio) if audio is not None else 0, 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, start: start + 1024]),
                                                   format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
                packets += astream.encode(frame)
            packets += astream.encode()
        packets.sort(key=lambda p: float((p.dts if p.dts is not None else 0) * p.time_base))
        for packet in packets:
            container.mux(packet)


@pytest.fixture(scope="module")
def odd_media(tmp_path_factory):
    """Every awkward shape of file, each with what the run should find in it."""
    folder = tmp_path_factory.mktemp("odd")
    image, centre = astronaut_face()
    audio = _speech()
    seconds = len(audio) / RATE
    n = int(seconds * 10)
    faces = list(moving_face(image, centre, n, 10, (320, 240)))
    cases = {}

    write(folder / "tiny_1x1.mkv", [np.full((1, 1, 3), 128, np.uint8)] * n, size=(1, 1), codec="ffv1",
          pix_fmt="yuv444p", audio=audio)
    cases["tiny_1x1"] = {"face": False, "audio": True}

    big = list(moving_face(image, centre, 12, 10, (3840, 2160)))
    # x264's fastest preset: 7 s of CPU less to encode, and still 4K H.264 to decode
    write(folder / "big_4k.mp4", big, size=(3840, 2160), audio=audio[: int(1.2 * RATE)], preset="ultrafast")
    cases["big_4k"] = {"face": True, "audio": True}

    # stored sideways, as phones do, with a display rotation saying how to turn it upright
    sideways = [np.ascontiguousarray(np.rot90(f, -1)) for f in faces]
    write(folder / "rotated.mp4", sideways, size=(240, 320), audio=audio, rotation=90)
    cases["rotated"] = {"face": True, "audio": True}

    rng = np.random.default_rng(0)
    gaps = rng.choice([20, 40, 100, 250], size=n)  # 4 to 50 frames per second, and a few stalls
    pts = np.cumsum(gaps) - gaps[0]
    keep = pts < seconds * 1000
    write(folder / "vfr.mkv", [f for f, k in zip(faces, keep) if k], audio=audio, pts_ms=list(pts[keep]))
    cases["vfr"] = {"face": True, "audio": True}

    write(folder / "empty_audio_stream.mkv", faces, empty_audio=True)
    cases["empty_audio_stream"] = {"face": True, "audio": False, "warning": "holds no audio"}

    write(folder / "corrupt_packets.mkv", faces, audio=audio, corrupt_every=7)
    cases["corrupt_packets"] = {"face": True, "audio": True}
    return folder, cases


def test_awkward_files_run_on_what_they_have(odd_media, tmp_path, components, capsys, caplog):
    folder, cases = odd_media
    out = tmp_path / "out"
    proc = run_main(components, capsys, caplog, "--source", folder, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for name, expect in cases.items():
        records = read_records(out / f"{name}.jsonl")
        assert records, name
        face = max(r["modalities"]["face"] for r in records)
        audio = max(r["modalities"]["audio"] for r in records)
        # present: a real share of a window (the 4K clip is 1.2 s long); absent: none at all
        assert (face > 0.2) if expect["face"] else face == 0, (name, face)
        assert (audio > 0.1) if expect["audio"] else audio == 0, (name, audio)
        ends = [r["t_end"] for r in records]
        assert ends == sorted(ends) and np.allclose(np.diff(ends), 0.5), name
        if "warning" in expect:
            lines = [line for line in proc.stderr.splitlines() if name in line and expect["warning"] in line]
            assert len(lines) == 1, (name, proc.stderr)
    # the problems are reported once each, not once per packet
    corrupt = [line for line in proc.stderr.splitlines() if "corrupt_packets" in line]
    assert 1 <= len(corrupt) <= 3, corrupt


def test_rotated_video_is_turned_upright(odd_media):
    from realtime.features.face import FaceExtractor
    from realtime.sources.file import FileSource

    folder, _ = odd_media
    frames = [item for item in FileSource(folder / "rotated.mp4") if isinstance(item, VideoFrame)]
    image, centre = astronaut_face()
    upright = next(moving_face(image, centre, 1, 10, (320, 240)))
    # stored portrait (sideways), shown landscape: the frame matches the upright picture
    assert frames and frames[0].image.shape == upright.shape
    assert np.abs(frames[0].image.astype(int) - upright).mean() < 12
    with FaceExtractor() as face:
        assert sum(face(f).features is not None for f in frames[:10]) >= 8


class FailingFace:
    """The real face extractor, until it raises after ``after`` frames (a worker bug)."""

    def __init__(self, face, after: int):
        self.face, self.after, self.calls = face, after, 0

    def new_stream(self) -> None:
        self.face.new_stream()

    def __call__(self, frame):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("injected failure")
        return self.face(frame)


class FailingFeed:
    """A file's feed whose reads fail past media time ``at`` (a disk or network error)."""

    def __init__(self, path, at: float):
        from realtime.sources.file import FileFeed

        self.file, self.at = FileFeed(path), at
        self.name, self.has_video, self.has_audio = self.file.name, self.file.has_video, self.file.has_audio

    def __call__(self, inlet) -> None:
        for item in self.file.source:
            if item.t > self.at:
                raise OSError("injected read error")
            inlet.route(item)


def run_file_pipeline(components, path, sink_path, face=None, feed_error_at=None, stop_after=None):
    import dataclasses

    from realtime.run import RunOptions, build_run
    from realtime.sinks import JsonlSink
    from realtime.sources.file import FileFeed

    if face is not None:
        components = dataclasses.replace(components, face=face)
    feed = FileFeed(path) if feed_error_at is None else FailingFeed(path, feed_error_at)
    sink = JsonlSink(sink_path, "overwrite")
    # what the window's stop button does, once it has shown a record
    on_estimate = None if stop_after is None else lambda est: run.stop() if est.t_end >= stop_after else None
    try:
        with build_run(components, feed, RunOptions(), on_estimate=on_estimate) as run:
            summary = run.run([sink])
            threads = list(run.status().threads)
    finally:
        sink.close()
    return summary, threads


def test_a_failing_worker_costs_its_modality_not_the_run(components, tmp_path):
    out = tmp_path / "r.jsonl"
    summary, threads = run_file_pipeline(components, EXAMPLE, out, face=FailingFace(components.face, after=60))
    assert not threads
    records = read_records(out)
    assert records[-1]["t_end"] >= 22.0, "the run went on to the end of the media"
    assert records[0]["modalities"]["face"] > 0.9  # before the failure (frame 60 = 6 s)
    assert all(r["modalities"]["face"] == 0 for r in records if r["t_start"] >= 6.5)
    assert all(r["modalities"]["audio"] > 0 for r in records[:-1] if r["t_start"] < 20)
    assert len(summary.warnings) == 1 and "face worker failed" in summary.warnings[0]


def test_a_source_that_fails_mid_run_keeps_what_was_read(components, tmp_path):
    out = tmp_path / "r.jsonl"
    summary, threads = run_file_pipeline(components, EXAMPLE, out, feed_error_at=10.0)
    assert not threads
    records = read_records(out)
    assert records and 9.0 <= records[-1]["t_end"] <= 11.0
    assert len(summary.warnings) == 1 and "source failed" in summary.warnings[0]


def test_a_file_run_stopped_early_keeps_its_complete_windows_as_the_full_run_has_them(components, example_run,
                                                                                       tmp_path):
    # a stop leaves each worker where it was: windows past the slowest stream would read the
    # streams not yet processed as missing (and cost seconds to score after the stop)
    full = {r["t_end"]: r for r in read_records(example_run[0])}
    out = tmp_path / "r.jsonl"
    summary, threads = run_file_pipeline(components, EXAMPLE, out, stop_after=8.0)
    assert not threads and summary.warnings == []
    records = read_records(out)
    assert records and records[-1]["t_end"] >= 8.0 and len(records) < len(full)
    for r in records:
        same = full[r["t_end"]]
        assert r["modalities"] == same["modalities"] and r["words"] == same["words"], r["t_end"]
        assert np.allclose(r["sentiment"], same["sentiment"], atol=1e-3)


def test_microphone_that_stalls_becomes_missing_audio(components):
    from realtime.sources.replay import ReplayCamera, ReplayMicrophone

    estimates, summary, _ = run_live(components, ReplayCamera(EXAMPLE), ReplayMicrophone(EXAMPLE, stall_after=3.0),
                                     9.0)
    assert [w for w in summary.warnings if "microphone stopped" in w] == summary.warnings and len(summary.warnings) == 1
    late = [e for e in estimates if e.t_start >= 4.0]
    assert late and all(e.modalities["audio"] == 0 for e in late)
    assert all(e.modalities["face"] > 0.5 for e in late), "the camera went on"


def test_cuda_asked_without_a_gpu_and_auto_falls_back(tmp_path, capsys, caplog):
    import torch

    from models.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type == "cpu"
    proc = run_main(None, capsys, caplog, "--source", EXAMPLE, "--device", "cuda", "--out", tmp_path / "r.jsonl")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "no CUDA GPU" in lines[-1]
    assert not (tmp_path / "r.jsonl").exists()
    # half precision is for a GPU: asked on the CPU, a one-line error before anything runs
    proc = run_main(None, capsys, caplog, "--source", EXAMPLE, "--precision", "bfloat16", "--out", tmp_path / "r.jsonl")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "CUDA device only" in lines[-1], lines[-1]
    assert not (tmp_path / "r.jsonl").exists()


def test_bad_checkpoints_give_one_line_errors(tmp_path, capsys, caplog):
    missing = tmp_path / "missing"
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "checkpoint.json").write_bytes((DEFAULT_CHECKPOINT / "checkpoint.json").read_bytes())
    weights = (DEFAULT_CHECKPOINT / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((DEFAULT_CHECKPOINT / "checkpoint.json").read_text())
    meta["feature_set"]["name"] = "mmsa-covarep-facet"
    (other / "checkpoint.json").write_text(json.dumps(meta))
    (other / "model.safetensors").write_bytes(weights)
    for path, message in ((missing, "no such checkpoint"), (truncated, "unreadable weights"),
                          (other, "mmsa-covarep-facet")):
        proc = run_main(None, capsys, caplog, "--source", EXAMPLE, "--checkpoint", path, "--out", tmp_path / "r.jsonl")
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_ctrl_c_keeps_every_finished_window_and_existing_output_is_kept(sigint_run, components, capsys, caplog):
    out, proc = sigint_run  # the example at wall-clock pace, Ctrl-C after 2 windows (tests/conftest.py)
    assert proc.exit_lag < SIGNAL_EXIT_BOUND  # Ctrl-C: gone within the bound, its models closed first
    assert proc.returncode == 130 and "Traceback" not in proc.stderr and "exit-audit:" not in proc.stderr
    records = read_records(out)  # every line is a whole JSON object
    assert 2 <= len(records) < 37
    before = out.read_bytes()
    # an existing --out is never replaced silently; --append adds to it (in this process: the
    # signal above is what needed a process of its own; a 5 s clip appends as well as the 22 s one)
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", out)
    assert proc.returncode == 2 and "exists" in proc.stderr and out.read_bytes() == before
    proc = run_main(components, capsys, caplog, "--source", TALKING_FACES / "face_5.mp4", "--out", out, "--append",
                    "--quiet")
    assert proc.returncode == 0 and out.read_bytes().startswith(before)
    assert len(read_records(out)) > len(records)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_two_minute_stream_memory_is_flat_and_nothing_leaks(components, tmp_path):
    """A generated 2-minute talking stream, faster than real time: memory flat after warm-up,
    nothing dropped, every thread gone. (30 minutes: python -m bench --only soak.)"""
    from bench.soak import soak

    threads_before = {t.ident for t in threading.enumerate()}
    result = soak(components, minutes=2.0, cache=tmp_path)
    assert result["windows"] >= 220
    # Two minutes, not one: the allocators warm up well into the first minute (CTranslate2
    # keeps buffers per encoder input size, and beam 5 in file mode widens them; mpnet's per
    # batch shape). Measured in the test process: one minute grew 80-100 MB, all of it a step
    # near the end; two minutes grew 3.7 MB.
    assert result["rss_growth_mb"] < 50, result
    # a file at full speed waits for its workers: no frame dropped, no sample late or twice
    assert not any(result["dropped"].values()), result["dropped"]
    time.sleep(0.5)
    leaked = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.name.startswith("realtime")]
    assert not leaked
