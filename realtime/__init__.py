"""Real-time multimodal emotion recognition: ``python -m realtime`` (see its --help), or
from Python ``realtime.Recognizer`` (``realtime.api``)."""


def __getattr__(name: str):
    if name == "Recognizer":  # the models' libraries load with it, not with every submodule
        from realtime.api import Recognizer

        return Recognizer
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
