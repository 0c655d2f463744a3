"""How a run is built (realtime.run) and what a feed sees of it (realtime.pipeline.Inlet)."""

import time

import numpy as np
import pytest

from realtime.pipeline import WORKERS, BoundedQueue, Inlet, RunState
from realtime.types import AudioChunk, VideoFrame
from tests.conftest import EXAMPLE


def test_a_run_takes_the_options_of_its_mode(components):
    from realtime.run import RunOptions, build_run
    from realtime.sources.file import FileFeed

    feed = FileFeed(EXAMPLE)
    for live, beam, commit in ((False, 5, "segments"), (True, 1, "agreement")):
        with build_run(components, feed, RunOptions(live=live, hop=1.0, batch=4)) as run:
            pipeline = run.pipeline
            assert (pipeline.options.live, pipeline.options.hop, pipeline.options.batch) == (live, 1.0, 4)
            # file: Whisper hears 25 s at a time with beam 5 (the same records every run); live: short greedy steps
            asr = pipeline.transcriber.options
            assert (asr.beam_size, asr.commit, asr.min_chunk) == (beam, commit, 25.0 if commit == "segments" else 0.5)
            assert all(q.drop_oldest is live for q in pipeline.queues.values())
            assert pipeline.spec.hop == 1.0


def test_the_inlet_routes_ends_and_gives_up_streams():
    queues = {name: BoundedQueue(8, drop_oldest=False) for name in WORKERS}
    state = RunState()
    failed = []
    inlet = Inlet(queues, state, lambda stream, message: failed.append((stream, message)))
    frame = VideoFrame(t=0.3, image=np.zeros((2, 2, 3), np.uint8))
    chunk = AudioChunk(t=0.0, samples=np.zeros(1600, np.float32), rate=16000)
    inlet.route(frame)
    inlet.route(chunk)
    assert queues["face"].take_waiting() == ([frame], False)
    assert queues["audio"].take_waiting() == ([chunk], False) and queues["text"].take_waiting() == ([chunk], False)
    assert state.end_time == pytest.approx(0.1)  # audio's end; a frame's time counts once the feed says so
    inlet.reached(2.0)
    inlet.reached(1.0)
    assert state.end_time == 2.0
    inlet.end(["face"])
    assert queues["face"].take_waiting() == ([], True) and queues["audio"].take_waiting() == ([], False)
    inlet.fail("audio", "microphone gone")
    assert failed == [("audio", "microphone gone")]
    assert not inlet.stopped and not inlet.paused
    state.pause()
    assert inlet.paused
    state.stop.set()
    assert inlet.stopped


def test_a_run_paused_before_its_clock_starts_reads_zero_until_resumed():
    # the window may be paused before its run starts: the pause leaves no gap in the timeline
    state = RunState()
    state.pause()
    state.start_clock()
    time.sleep(0.6)
    assert state.clock() == 0.0
    state.resume()
    assert 0.0 <= state.clock() < 0.5  # not the 0.6 s of the pause (loose: a loaded machine)


def test_file_components_skip_the_one_window_export(components):
    """Files score windows in batches, which torch serves as fast as ONNX Runtime: components
    loaded for files never export the one-window graph (1-7 s of every file run). Live ones
    do: tests/test_exit.py reads it in a replayed live run's log."""
    assert components.engine.forward.onnx is None


def test_a_window_length_is_built_into_an_engine_not_written_into_it(components, caplog):
    import dataclasses

    from realtime.run import RunOptions, build_run
    from realtime.sources.file import FileFeed

    engine = components.engine
    trained = engine.spec.window
    assert engine.with_window(None) is engine and engine.with_window(trained) is engine
    with caplog.at_level("WARNING", logger="realtime.engine"):
        other = engine.with_window(trained + 1.0)
    assert "differs from the checkpoint's" in caplog.text
    # the same models, another geometry; the loaded engine keeps its own
    assert other.net is engine.net and other.text is engine.text
    assert other.spec.window == trained + 1.0 and engine.spec.window == trained
    assert other.spec.face_steps == engine.spec.face_steps
    with build_run(dataclasses.replace(components, engine=other), FileFeed(EXAMPLE), RunOptions(hop=1.0)) as run:
        assert run.pipeline.spec.window == trained + 1.0


def test_a_stopped_realtime_replay_says_it_reached_what_it_handed_over_not_what_it_decoded():
    """A replay at realtime pace decodes up to ``REORDER_SPAN`` (and the decoder's buffers)
    ahead of the clock; stopped after half a second, its run had heard half a second, not
    what the decoder held (it read 1.4 s: a real-time factor a replay cannot have)."""
    import threading

    from realtime.sources.file import FileFeed, FileOptions

    queues = {name: BoundedQueue(10_000, drop_oldest=True) for name in WORKERS}
    state = RunState()
    inlet = Inlet(queues, state, lambda stream, message: None)
    feed = FileFeed(EXAMPLE, FileOptions(pace="realtime"))
    state.start_clock()
    thread = threading.Thread(target=feed, args=(inlet,))
    thread.start()
    while state.clock() < 0.5:
        time.sleep(0.01)
    state.stop.set()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    heard = state.clock()
    assert feed.source.end_time > heard + 0.5  # the decoder was ahead ...
    assert 0.3 < state.end_time <= heard  # ... and the run counts what it played


def test_a_video_under_the_models_face_steps_a_second_is_warned_of(components, tmp_path, caplog):
    """A 5 fps video reads a face coverage of about 0.6 with the face always in view (the
    model reads 8 face steps a second); a 25 fps one read at --face-fps 30 is no such video."""
    from realtime.run import RunOptions, build_run
    from realtime.sources.file import FileFeed, FileOptions
    from tests.test_sources import example_audio, write_tracks

    slow = tmp_path / "slow.mp4"
    write_tracks(slow, [[(example_audio(2.0), 0.0)]], frames=[np.zeros((48, 64, 3), np.uint8)] * 10, fps=5)
    for path, fps, warned in ((slow, 10, True), (EXAMPLE, 30, False), (EXAMPLE, 10, False)):
        caplog.clear()
        with build_run(components, FileFeed(path, FileOptions(video_fps=fps)), RunOptions()):
            pass
        said = "has 5 frames a second, fewer than the model's 8 face steps a second" in caplog.text
        assert said == warned and ("frames a second" in caplog.text) == warned, (path, fps, caplog.text)
