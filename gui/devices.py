"""What capture hardware this machine has, found without opening anything slow."""

from __future__ import annotations

import glob
import logging
import sys

logger = logging.getLogger(__name__)


def list_cameras() -> list[int]:
    """Camera indices to offer. Linux: the /dev/video* nodes; elsewhere index 0 (tried on start)."""
    if sys.platform.startswith("linux"):
        indices = []
        for node in glob.glob("/dev/video*"):
            suffix = node.removeprefix("/dev/video")
            if suffix.isdigit():
                indices.append(int(suffix))
        return sorted(indices)
    return [0]


def list_microphones() -> list[str]:
    """Names of input devices PortAudio sees; [] when it sees none or is not installed."""
    try:
        import sounddevice as sd

        return [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
    except Exception as exc:  # OSError: no PortAudio library; PortAudioError
        logger.info("no microphones listed (%s: %s)", type(exc).__name__, exc)
        return []
