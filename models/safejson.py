"""JSON that every parser accepts: non-finite numbers become null.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which are not JSON (RFC 8259)
and which ``jq``, JavaScript and most other readers reject. Metrics can be NaN (``Non0``
scores with no non-zero label), a window of infinite length gives infinite times: every
JSON file or line this project writes goes through ``dumps`` here.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (also inside dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy or torch scalar
        return finite(value.item())
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` that writes null for NaN and infinities (and never writes them)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as any strict JSON parser does."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)
