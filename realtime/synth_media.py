"""Make real test media with nothing downloaded: espeak-ng speech over real face photographs.

Used by the bundled example, the default model's corpus, tests and benchmarks. Needs
Debian's espeak-ng; faces come from scikit-image's astronaut photograph (NASA, public
domain) or any RGB image given.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from realtime.types import AUDIO_RATE as RATE


def speak(text: str, voice: str = "en-us", speed: int = 150, pitch: int = 50) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--", text],
                         capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    y = data.astype(np.float32) / 32768.0
    if rate != RATE:
        import librosa

        y = librosa.resample(y, orig_sr=rate, target_sr=RATE)
    return y.astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, rate: int = RATE) -> None:
    """Mono 16-bit PCM WAV from float samples in [-1, 1]."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def astronaut_face() -> tuple[np.ndarray, tuple[float, float, float]]:
    """skimage's astronaut photograph and (centre x, centre y, half height) of its face."""
    from skimage import data

    return data.astronaut(), (250.0, 150.0, 128.0)


def moving_face(image: np.ndarray, centre: tuple[float, float, float], n: int, fps: float,
                size: tuple[int, int], seed: int = 0) -> Iterator[np.ndarray]:
    """A face photograph panned and zoomed slightly frame to frame, as (H, W, 3) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    width, height = size
    cx0, cy0, half_h0 = centre
    aspect = width / height
    for i in range(n):
        t = i / fps
        zoom = 1.0 + 0.04 * np.sin(0.7 * t + phase[0])
        cx = cx0 + 0.05 * half_h0 * np.sin(0.9 * t + phase[1])
        cy = cy0 + 0.04 * half_h0 * np.sin(1.3 * t + phase[2])
        half_h = half_h0 / zoom
        half_w = half_h * aspect
        top, left = int(max(0, cy - half_h)), int(max(0, cx - half_w))
        crop = image[top : int(cy + half_h), left : int(cx + half_w)]
        frame = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA)
        yield np.ascontiguousarray(frame)


def write_av(path: str | Path, audio: np.ndarray | None, frames: Iterable[np.ndarray] | None, fps: int = 25,
             size: tuple[int, int] = (480, 360), crf: int = 28) -> None:
    """Write H.264 video and/or AAC audio (16 kHz mono) with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        vstream = astream = None
        if frames is not None:
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(crf), "preset": "veryfast"}
        if audio is not None:
            astream = container.add_stream("aac", rate=RATE)
            astream.layout = "mono"
        if vstream is not None:
            for image in frames:
                for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            step = 1024
            for start in range(0, len(audio), step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, start : start + step]),
                                                   format="flt", layout="mono")
                frame.sample_rate = RATE
                frame.pts = start
                frame.time_base = Fraction(1, RATE)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)


def talking_clip(path: str | Path, text: str, face: tuple[np.ndarray, tuple[float, float, float]],
                 voice: str = "en-us", speed: int = 150, pitch: int = 50, fps: int = 10,
                 size: tuple[int, int] = (320, 240), pad: float = 0.3, seed: int = 0) -> float:
    """One clip of a face speaking ``text``; returns its duration in seconds."""
    speech = speak(text, voice, speed, pitch) * 0.8
    silence = np.zeros(int(pad * RATE), np.float32)
    audio = np.concatenate([silence, speech, silence])
    n = int(np.ceil(len(audio) / RATE * fps))
    write_av(path, audio, moving_face(face[0], face[1], n, fps, size, seed), fps=fps, size=size)
    return len(audio) / RATE


def talking_video(out: str | Path, sentences: list[tuple[str, int]], voice: str = "en-us", fps: int = 25,
                  size: tuple[int, int] = (480, 360), gap: float = 0.8, minutes: float | None = None) -> dict:
    """A real face speaking ``sentences`` (text, sign) with ``gap`` s of silence around each;
    with ``minutes``, the sentences repeat until the video is that long. Returns the
    description written beside it as ``<out>.json`` (each sentence's time span)."""
    import json

    out = Path(out)
    spoken = {}
    parts, spans, t = [np.zeros(int(gap * RATE), np.float32)], [], gap
    i = 0
    while True:
        text, sign = sentences[i % len(sentences)]
        if minutes is None and i >= len(sentences):
            break
        if minutes is not None and t >= minutes * 60:
            break
        if text not in spoken:
            spoken[text] = speak(text, voice)
        speech = spoken[text]
        spans.append({"text": text, "sign": sign, "start": round(t, 3), "end": round(t + len(speech) / RATE, 3)})
        parts += [speech * 0.8, np.zeros(int(gap * RATE), np.float32)]
        t += len(speech) / RATE + gap
        i += 1
    audio = np.concatenate(parts)
    n_frames = int(np.ceil(len(audio) / RATE * fps))
    out.parent.mkdir(parents=True, exist_ok=True)
    image, centre = astronaut_face()
    write_av(out, audio, moving_face(image, centre, n_frames, fps, size), fps=fps, size=size)
    meta = {"video": out.name, "duration": round(len(audio) / RATE, 3), "sentences": spans,
            "face": "skimage.data.astronaut (NASA, public domain)", "voice": f"espeak-ng {voice}"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
