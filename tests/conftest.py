"""Test environment: Qt offscreen, no hub access, small shared fixtures."""

import os

# Qt aborts the whole process with no display unless told to render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing may download: a hub name must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pickle  # noqa: E402
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
