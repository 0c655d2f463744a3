"""Live mode through the real code path, with a camera and a microphone that replay a clip."""

import dataclasses
import threading

import numpy as np
import pytest

from realtime.sources.live import DeviceUnavailable, SoundDeviceMicrophone
from realtime.sources.replay import ReplayCamera, ReplayMicrophone
from tests.conftest import EXAMPLE, run_live


def test_live_replay_gives_timely_records(components):
    counts = components.engine.text.counts
    before = dataclasses.replace(counts)
    estimates, summary, threads = run_live(components, ReplayCamera(EXAMPLE), ReplayMicrophone(EXAMPLE), 6.5)
    assert not threads, "every worker thread stopped"
    assert len(estimates) >= 5  # windows end at 4.0, 4.5, ... up to about 6.5 s
    ends = [e.t_end for e in estimates]
    assert ends == sorted(ends) and np.allclose(np.diff(ends), 0.5)
    assert np.median([e.modalities["face"] for e in estimates]) > 0.5
    assert any(e.words for e in estimates), "words arrive in live mode"
    assert all(e.latency_ms is not None and e.latency_ms >= 0 for e in estimates)
    assert "latency_ms" in summary.as_dict()
    # the text worker embedded word lists ahead, and windows found them ready (the real mpnet)
    assert counts.ahead > before.ahead and counts.found_ahead > before.found_ahead


@pytest.mark.slow
def test_camera_that_stalls_becomes_missing_face(components, caplog):
    camera = ReplayCamera(EXAMPLE, stall_after=3.0)
    estimates, summary, _ = run_live(components, camera, ReplayMicrophone(EXAMPLE), 7.5)  # noticed at 5 s
    assert any("camera stopped delivering" in w for w in summary.warnings)
    assert estimates[0].modalities["face"] > 0
    assert estimates[-1].modalities["face"] == 0  # the last window began after the stall
    assert estimates[-1].modalities["audio"] > 0  # and the run went on


def test_a_machine_without_a_sound_card_reads_as_microphone_unavailable():
    # this machine has no sound card: PortAudio raises, which must read as "unavailable"
    try:
        SoundDeviceMicrophone(None)
    except DeviceUnavailable as exc:
        assert "microphone unavailable" in str(exc)
    else:
        pytest.skip("a microphone is present here")


@pytest.mark.slow
def test_video_only_live(components):
    estimates, summary, _ = run_live(components, ReplayCamera(EXAMPLE), None, 5.0)
    assert estimates and all(e.modalities["audio"] == 0 and e.words == [] for e in estimates)
    assert threading.active_count() < 20
