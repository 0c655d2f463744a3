"""Live devices: a webcam (OpenCV) and a microphone (sounddevice), stamped with the run clock.

Hardware is optional: a device that cannot open becomes a missing modality with one
warning; one that stops delivering mid-run is closed the same way and the run goes on.
Cameras and microphones are small interfaces so that tests can replay a recorded clip
through the same code path (realtime.sources.replay).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from realtime.types import AUDIO_RATE, FACE_FPS, AudioChunk, VideoFrame

logger = logging.getLogger(__name__)



def camera_index(source: str) -> int | None:
    """The camera a ``--source`` names ('webcam' is camera 0, '2' is camera 2); None for a path."""
    if source == "webcam":
        return 0
    return int(source) if source.isascii() and source.isdigit() else None  # not '²'


def source_name(source: str) -> str:
    """How records and summaries name an input: 'camera N' for a camera, else its path as
    the command line gives it, normalised ('./a.mp4' is 'a.mp4')."""
    index = camera_index(source)
    return str(Path(source)) if index is None else f"camera {index}"


class DeviceUnavailable(RuntimeError):
    """A camera or microphone that cannot be opened or has stopped."""


class Camera(Protocol):
    def read(self) -> np.ndarray | None:
        """The next RGB frame (H, W, 3) uint8, or None when none came."""

    def close(self) -> None: ...


class Microphone(Protocol):
    def start(self, callback: Callable[[np.ndarray], None]) -> None:
        """Begin calling ``callback`` with float32 mono 16 kHz blocks."""

    def stop(self) -> None: ...


class OpenCVCamera:
    """A webcam through cv2.VideoCapture."""

    def __init__(self, index: int, width: int = 640, height: int = 480):
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise DeviceUnavailable(f"camera {index} cannot be opened")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        return np.ascontiguousarray(self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._cap.release()


class SoundDeviceMicrophone:
    """A microphone through sounddevice (PortAudio)."""

    def __init__(self, device: str | int | None = None, block: float = 0.05):
        try:
            import sounddevice as sd

            sd.check_input_settings(device=device, channels=1, samplerate=AUDIO_RATE, dtype="float32")
        except Exception as exc:  # OSError (no PortAudio), PortAudioError, ValueError (no such device)
            raise DeviceUnavailable(f"microphone unavailable ({type(exc).__name__}: {exc})") from None
        self._sd = sd
        self._device = device
        self._block = int(block * AUDIO_RATE)
        self._stream = None

    def start(self, callback: Callable[[np.ndarray], None]) -> None:
        def on_audio(indata, frames, time_info, status) -> None:
            callback(indata[:, 0].astype(np.float32).copy())

        try:
            self._stream = self._sd.InputStream(device=self._device, channels=1, samplerate=AUDIO_RATE, dtype="float32",
                                                blocksize=self._block, callback=on_audio)
            self._stream.start()
        except Exception as exc:
            raise DeviceUnavailable(f"microphone failed to start ({type(exc).__name__}: {exc})") from None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


def open_devices(camera_index: int | None, microphone: str | None):
    """Open what can be opened; a device that fails is left out with one warning."""
    camera = mic = None
    if camera_index is not None:
        try:
            camera = OpenCVCamera(camera_index)
        except DeviceUnavailable as exc:
            logger.warning("%s; running without face", exc)
    if microphone is not None:
        try:
            device = int(microphone) if microphone.isdigit() else (microphone or None)
            mic = SoundDeviceMicrophone(device)
        except DeviceUnavailable as exc:
            logger.warning("%s; running without audio and text", exc)
    return camera, mic


class LiveFeed:
    """A camera and a microphone (either may be None) as a run's input (see
    ``realtime.run.build_run``), stamped with the run clock. The camera is read in the
    feed's thread; the microphone delivers from its own. A device that fails to start or
    stops delivering for ``stall_timeout`` seconds is given up: its modality goes missing
    with one warning and the run goes on."""

    def __init__(self, camera: Camera | None, mic: Microphone | None, duration: float | None = None,
                 video_fps: float = FACE_FPS, stall_timeout: float = 2.0, name: str = "live"):
        self.camera = camera
        self.mic = mic
        self.duration = duration
        self.video_fps = video_fps
        self.stall_timeout = stall_timeout
        self.name = name
        self.has_video = camera is not None
        self.has_audio = mic is not None

    def __call__(self, inlet) -> None:
        duration, stall_timeout = self.duration, self.stall_timeout
        cam = self.camera
        mic_lock = threading.Lock()
        mic_t = [None]  # capture time of the next microphone sample

        last_audio = [time.monotonic()]  # when the microphone last delivered

        def on_audio(samples: np.ndarray) -> None:
            last_audio[0] = time.monotonic()
            if inlet.paused:  # a paused run's clock stands still: what is heard meanwhile is let go
                with mic_lock:
                    mic_t[0] = None
                return
            now = inlet.clock()
            with mic_lock:
                # the block ends now; its first sample was len/AUDIO_RATE earlier, unless that
                # would overlap the previous block
                t = now - len(samples) / AUDIO_RATE
                if mic_t[0] is not None and abs(t - mic_t[0]) < 0.1:
                    t = mic_t[0]
                mic_t[0] = t + len(samples) / AUDIO_RATE
            inlet.route(AudioChunk(t=max(t, 0.0), samples=samples, rate=AUDIO_RATE))

        microphone = self.mic
        if microphone is not None:
            try:
                microphone.start(on_audio)
                last_audio[0] = time.monotonic()
            except DeviceUnavailable as exc:
                inlet.fail("audio", f"{exc}; running without audio and text")
                inlet.end(["audio", "text"])
                microphone = None

        def check_microphone() -> None:
            """A microphone silent past ``stall_timeout`` (no callbacks at all, not quiet audio)
            is closed: its modality becomes missing with one warning."""
            nonlocal microphone
            if microphone is None or inlet.paused or time.monotonic() - last_audio[0] <= stall_timeout:
                return
            inlet.fail("audio", f"microphone stopped delivering audio at {inlet.clock():.1f} s; "
                                "running without audio and text")
            microphone.stop()
            microphone = None
            inlet.end(["audio", "text"])

        period = 1.0 / self.video_fps
        last_slot = -1
        last_frame = time.monotonic()
        try:
            while not inlet.stopped:
                now = inlet.clock()
                if duration is not None and now >= duration:
                    break
                check_microphone()
                if cam is None:
                    time.sleep(0.05)
                    continue
                image = cam.read()
                t = inlet.clock()
                if inlet.paused:
                    last_frame = time.monotonic()
                    continue
                if image is None:
                    if time.monotonic() - last_frame > stall_timeout:
                        inlet.fail("face", f"camera stopped delivering frames at {t:.1f} s; running without face")
                        cam.close()
                        cam = None
                        inlet.end(["face"])
                    else:
                        time.sleep(0.01)
                    continue
                last_frame = time.monotonic()
                slot = int(t / period + 0.5)  # one frame per 1/video_fps slot, jitter-proof
                if slot == last_slot:
                    continue
                last_slot = slot
                inlet.route(VideoFrame(t=t, image=image))
                inlet.reached(t)
        finally:
            if microphone is not None:
                microphone.stop()
            if cam is not None:
                cam.close()
            inlet.reached(inlet.clock())
