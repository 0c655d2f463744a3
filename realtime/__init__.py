"""Real-time multimodal emotion recognition: ``python -m realtime`` (see its --help), or
from Python ``realtime.Recognizer`` (``realtime.api``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.api import Recognizer

__all__ = ["Recognizer"]


def __getattr__(name: str):
    if name == "Recognizer":  # the models' libraries load with it, not with every submodule
        from realtime.api import Recognizer

        return Recognizer
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
