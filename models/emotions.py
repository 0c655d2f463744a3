"""The seven emotion categories the product names, and how each corpus's labels map onto them.

The categories are Ekman's six basic emotions plus neutral, the set that face, voice and
text corpora most often share. Each corpus spells them its own way; the tables below
map its spelling onto ours, and anything not listed (EmoDB's "boredom", GoEmotions rows
with several labels) is left out rather than forced into a class.

Valence (the ``sentiment`` output, CMU-MOSI's [-3, 3]) has human ratings only for
sentences. For a sample that has only an emotion label, its valence target is the
category's typical valence below: pleasant emotions positive, unpleasant ones negative,
surprise slightly positive. The figures follow the circumplex model's ordering (Russell,
1980) on MOSI's scale; they are a prior, not a measurement, and the model card says so.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
"""The output categories, in the order of the model's class head."""

VALENCE: dict[str, float] = {
    "neutral": 0.0,
    "happy": 2.0,
    "sad": -2.0,
    "angry": -2.0,
    "fearful": -1.5,
    "disgusted": -2.0,
    "surprised": 0.5,
}
"""Typical valence of each category on MOSI's [-3, 3] scale: the target for samples
that carry an emotion label but no valence rating."""

FER_FOLDERS: dict[str, str] = {
    "neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
    "disgust": "disgusted", "surprise": "surprised",
}
"""FER2013's class folder names."""

EMODB_LETTERS: dict[str, str] = {
    "N": "neutral", "F": "happy", "T": "sad", "W": "angry", "A": "fearful", "E": "disgusted",
}
"""EmoDB: the sixth character of a file name (German initials); L (boredom) has no class here."""

GOEMOTIONS_EKMAN: dict[str, str] = {
    "neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful",
    "disgust": "disgusted", "surprise": "surprised",
}
"""GoEmotions' Ekman grouping (data/ekman/labels.txt)."""

XED_LABELS: dict[str, str | None] = {
    "1": "angry", "2": None, "3": "disgusted", "4": "fearful", "5": "happy", "6": "sad", "7": "surprised", "8": None,
}
"""XED's English annotations (Plutchik's eight, numbered alphabetically): anticipation (2)
and trust (8) have no Ekman category and are left out; its neutral lines come in a file
of their own."""


def class_index(name: str) -> int:
    """Index of a category in EMOTIONS; ValueError naming the known ones otherwise."""
    try:
        return EMOTIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown emotion {name!r}: expected one of {', '.join(EMOTIONS)}") from None
