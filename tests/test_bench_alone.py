"""bench.alone: each stage of a file run alone on the same media (issue 15's 1.3x measure)."""

import pytest

from tests.conftest import EXAMPLE, read_records


@pytest.mark.slow
def test_each_stage_alone_sees_what_a_file_run_gives_it(components, example_run):
    from bench.alone import stages_alone
    from realtime.sources.file import FileSource
    from realtime.types import VideoFrame

    out = stages_alone(EXAMPLE, components=components)
    frames = sum(isinstance(item, VideoFrame) for item in FileSource(EXAMPLE))
    assert out["face_frames"] == frames and out["face_found"] >= 0.9 * frames  # a real face in every frame
    assert out["speech_words"] >= 40, out  # the example says 47 words
    # the model stage scores the windows a file run of the same media writes, and embeds
    # more than one word list (its memory of earlier lists was cleared)
    records = read_records(example_run[0])
    assert out["model_windows"] == len(records)
    assert 1 < out["model_lists"] <= out["model_windows"]
    stages = ("decode", "face", "acoustic", "speech", "model")
    assert all(out[name] > 0 for name in stages)
    assert out["slowest"] in stages
    assert abs(out["media_s"] - 22.5) < 0.5
    assert not components.face.closed  # models it was given are the caller's to close
