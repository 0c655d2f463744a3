"""The streaming core (realtime/core.py) on a fake clock in milliseconds: when windows close
in live and file mode, late input, routing, batching, the end of a run.

The core is driven as the pipeline drives it (take, step(now), finish), with synthetic
timestamps and no threads or sleeps. The model is a stand-in that turns each window into
an Estimate of its own coverage and words, so what the core closed, when and in which
batch, is what these tests read.
"""

import math

import numpy as np
import pytest

from realtime.core import StreamCore
from realtime.run import RunOptions
from realtime.types import AcousticFrame, Estimate, FaceFrame, Mark, Word
from realtime.windows import WindowSpec

SPEC = WindowSpec(window=2.0, hop=0.5, face_steps=8, audio_steps=10, face_dim=3, audio_dim=2)
ALL = ("face", "audio", "text")
GRACE_MS = 50  # RunOptions' close_grace


def ms(t: int) -> float:
    """The fake clock: milliseconds -> run-clock seconds."""
    return t / 1000


class Model:
    """Stands in for the InferenceEngine: one Estimate per window, each batch remembered."""

    def __init__(self):
        self.batches: list[list[float]] = []
        self.windows = []

    def __call__(self, windows):
        self.batches.append([w.t_end for w in windows])
        self.windows += windows
        return [Estimate(t_start=w.t_start, t_end=w.t_end, sentiment=0.0, emotions=None, channels={}, edges={},
                         branches={}, modalities=w.coverage(), words=[x.text for x in w.words], checkpoint="fake")
                for w in windows]


def core(live: bool, streams=ALL, batch: int = 16, spec: WindowSpec = SPEC) -> StreamCore:
    return StreamCore(spec, Model(), RunOptions(live=live, hop=spec.hop, batch=batch), streams)


def scored(c: StreamCore, now: float | None = None) -> list[Estimate]:
    """Every estimate due at ``now``, as the pipeline's loop collects them."""
    out = []
    while estimates := c.step(now):
        out += estimates
    return out


def face(t: float) -> FaceFrame:
    return FaceFrame(t=t, features=np.full(3, t, np.float32))


def audio(t: float, voiced: bool = True) -> AcousticFrame:
    return AcousticFrame(t=t, features=np.full(2, t, np.float32), voiced=voiced)


def frames(c: StreamCore, start_ms: int, end_ms: int, every_ms: int = 100) -> None:
    """Face and audio frames at [start, end), as their workers would send them."""
    for t in range(start_ms, end_ms, every_ms):
        c.take(face(ms(t)))
        c.take([audio(ms(t))])


def test_a_live_window_closes_at_its_end_plus_the_grace_and_not_before():
    c = core(live=True)
    frames(c, 0, 3000)  # the text stream says nothing: live windows do not wait for it
    assert scored(c, ms(1999)) == []
    assert scored(c, ms(2000 + GRACE_MS - 1)) == []  # the window [0, 2) has ended; frames may still be coming
    first = scored(c, ms(2000 + GRACE_MS + 1))
    assert [(e.t_start, e.t_end) for e in first] == [(0.0, 2.0)]
    assert first[0].modalities == {"face": 1.0, "audio": 1.0, "text": 0.0}
    assert scored(c, ms(2500 + GRACE_MS - 1)) == []
    assert [e.t_end for e in scored(c, ms(2500 + GRACE_MS + 1))] == [2.5]
    # a clock far ahead closes every window it has passed, at once, in window order
    assert [e.t_end for e in scored(c, ms(4000 + GRACE_MS + 1))] == [3.0, 3.5, 4.0]
    assert c.assembler.stats.late == 0


def test_a_live_core_says_when_its_next_window_is_due_and_a_file_core_does_not():
    c = core(live=True)
    frames(c, 0, 3000)
    assert c.next_due() == pytest.approx(ms(2000 + GRACE_MS))  # the run loop wakes then, not a poll later
    assert scored(c, c.next_due() + 1e-6)[0].t_end == 2.0
    assert c.next_due() == pytest.approx(ms(2500 + GRACE_MS))  # and then at the next one, a hop on
    c.finish(3.0)
    assert c.next_due() is None  # finished: nothing closes on the clock any more
    f = core(live=False)
    frames(f, 0, 3000)
    assert f.next_due() is None  # files close windows on the streams' progress, never on a clock


def test_live_windows_are_scored_as_they_close_in_batches():
    c = core(live=True, batch=2)
    frames(c, 0, 1000)
    assert [e.t_end for e in scored(c, ms(4000 + GRACE_MS + 1))] == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert c.score.batches == [[2.0, 2.5], [3.0, 3.5], [4.0]]  # all at once, none held for a full batch
    assert c.waiting == 0


def test_a_late_frame_or_word_is_counted_not_added():
    spec = WindowSpec(window=2.0, hop=0.5, face_steps=8, audio_steps=10, face_dim=3, audio_dim=2, text_context=8)
    c = core(live=True, spec=spec)
    frames(c, 0, 2500)
    c.take([Word(0.1, 0.3, "early")], ms(600))
    assert [e.t_end for e in scored(c, ms(2500 + GRACE_MS + 1))] == [2.0, 2.5]  # the next window starts at 1.0
    c.take(face(ms(900)))  # before the next window's start: no window still to come can hold it
    c.take([audio(ms(700))])
    c.take([Word(0.8, 0.9, "late"), Word(1.3, 1.5, "kept")], ms(2600))
    assert c.assembler.stats.late == 3
    frames(c, 2500, 3100)
    (third,) = scored(c, ms(3000 + GRACE_MS + 1))
    assert third.t_start == 1.0 and third.words == ["kept"]
    # nor is the late word part of the sentence later windows are read in: it never entered
    assert [w.text for w in c.score.windows[-1].context] == ["early"]


def test_a_clock_that_stands_still_closes_nothing_however_much_arrives():
    # a paused run: the run clock stands still, so the pipeline steps at the same time
    c = core(live=True)
    frames(c, 0, 2000)
    assert [e.t_end for e in scored(c, ms(2000 + GRACE_MS + 1))] == [2.0]
    frames(c, 2000, 6000)
    c.take([Word(2.1, 2.4, "still")], ms(2051))
    for _ in range(5):
        assert scored(c, ms(2000 + GRACE_MS + 1)) == []
    assert [e.t_end for e in scored(c, ms(2500 + GRACE_MS + 1))] == [2.5]


def test_file_mode_closes_a_window_only_when_every_stream_has_passed_it():
    c = core(live=False, batch=1)
    frames(c, 0, 3000)
    assert scored(c, ms(60_000)) == []  # the clock means nothing here: text has not progressed
    c.take([Word(0.5, 0.9, "hello")])
    c.take(Mark("text", 2.2))
    (first,) = scored(c)
    assert (first.t_end, first.words) == (2.0, ["hello"])
    assert scored(c) == []  # 2.5 waits for the text stream again
    c.take(Mark("face", 3.5))  # a mark moves its stream past its last sample
    c.take(Mark("text", 3.0))
    assert [e.t_end for e in scored(c)] == [2.5]  # audio reached 2.9 s: 3.0 waits for it
    c.take([audio(2.95)])
    assert scored(c) == []
    c.take([audio(3.0)])
    assert [e.t_end for e in scored(c)] == [3.0]


def test_file_mode_scores_full_batches_and_then_all_that_wait():
    c = core(live=False, batch=4)
    frames(c, 0, 8000)
    c.take(Mark("text", 4.6))  # windows ending 2.0 ... 4.5: six close, a batch is due, all six go
    assert [e.t_end for e in scored(c)] == [2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    assert c.score.batches == [[2.0, 2.5, 3.0, 3.5], [4.0, 4.5]]
    c.take(Mark("text", 5.6))  # two more close: fewer than a batch, they wait
    assert scored(c) == [] and c.waiting == 2
    c.take(Mark("text", 6.1))
    c.take(Mark("text", 6.6))
    assert [e.t_end for e in scored(c)] == [5.0, 5.5, 6.0, 6.5]


def test_words_and_frames_reach_their_own_streams():
    c = core(live=False, batch=1)
    c.take(FaceFrame(t=0.1, features=None))  # no face found: counts for progress, holds no data
    c.take(face(0.6))
    c.take([audio(0.3), audio(1.3, voiced=False)])  # silence is masked
    c.take([])  # nothing: nothing happens
    c.take([Word(0.2, 0.4, "one"), Word(1.0, 1.2, "two")])
    for stream in ALL:
        c.take(Mark(stream, 2.0))
    (window,) = scored(c)
    assert window.words == ["one", "two"]
    assert window.modalities == pytest.approx({"face": 1 / 8, "audio": 1 / 10, "text": 1.0})
    with pytest.raises(TypeError):
        c.take(Word(0.2, 0.4, "alone"))  # words come in lists
    with pytest.raises(TypeError):
        c.take([audio(0.5), Word(0.6, 0.7, "mixed")])


def test_live_words_are_dated_by_their_arrival():
    c = core(live=True)
    c.take([Word(1.0, 1.5, "a"), Word(1.6, 2.0, "b")], ms(3200))
    assert c.speech_lags == pytest.approx([1.7, 1.2])
    f = core(live=False)
    f.take([Word(1.0, 1.5, "a")], ms(3200))
    assert f.speech_lags == []  # file mode: the clock is not the media's


def test_finish_closes_the_windows_that_cover_the_media_end():
    c = core(live=False)
    frames(c, 0, 3200)
    for stream in ALL:
        c.take(Mark(stream, math.inf, final=True))
    assert not c.done
    c.take(Mark("source", 3.6, final=True))  # the media ends after its last frame
    assert c.done
    assert scored(c) == [] and c.waiting == 3  # up to the data (3.1 s): fewer than a batch
    c.finish(end_time=3.1)  # the later of the two ends counts
    assert [e.t_end for e in scored(c)] == [2.0, 2.5, 3.0, 3.5, 4.0]
    c.finish(end_time=10.0)  # once
    assert scored(c) == [] and c.waiting == 0


def test_live_finish_flushes_what_the_clock_had_not_closed():
    c = core(live=True)
    frames(c, 0, 3000)
    assert [e.t_end for e in scored(c, ms(2100))] == [2.0]
    c.finish(end_time=3.0)
    assert [e.t_end for e in scored(c, ms(2100))] == [2.5, 3.0]


def test_a_live_run_whose_media_ended_closes_the_windows_a_file_run_would_however_long_it_finishes():
    """A replay's clock runs on while Whisper reads its last words: windows past the media's
    end closed by the clock made the example's record count vary (39 or 40) with how long
    that took."""
    ends = {}
    for live, finishing_ms in ((False, 0), (True, 0), (True, 700), (True, 2000)):
        c = core(live=live)
        frames(c, 0, 3600)
        got = scored(c, ms(3650))
        c.take(Mark("source", 3.6, final=True))
        for stream in ALL:
            c.take(Mark(stream, math.inf, final=True))
        got += scored(c, ms(3600 + finishing_ms))
        c.finish(end_time=3.6)
        ends[live, finishing_ms] = [e.t_end for e in got + scored(c, ms(3600 + finishing_ms))]
    assert ends[False, 0] == [2.0, 2.5, 3.0, 3.5, 4.0]  # the last window covers the media's end: 3.6 s
    assert ends[True, 0] == ends[True, 700] == ends[True, 2000] == ends[False, 0]


def test_a_file_run_stopped_early_keeps_only_the_windows_every_stream_passed():
    c = core(live=False)
    for t in range(0, 4000, 100):
        c.take(face(ms(t)))
        if t < 2000:  # then the microphone went
            c.take([audio(ms(t))])
    c.take(Mark("text", 2.6))
    assert scored(c) == [] and c.waiting == 0
    c.stop()
    c.fail("audio")
    # the workers stop where they are: face and text keep their progress, failed audio is over
    c.take(Mark("face", math.inf, final=True))
    c.take(Mark("audio", math.inf, final=True))
    c.take(Mark("text", math.inf, final=True))
    c.take(Mark("source", 10.0, final=True))
    assert c.done
    c.finish(end_time=10.0)
    assert [e.t_end for e in scored(c)] == [2.0, 2.5]  # not up to 10 s with face and text missing


def test_a_stream_the_input_lacks_holds_nothing_back():
    c = core(live=False, streams=("face",), batch=1)
    for t in range(0, 2500, 100):
        c.take(face(ms(t)))
    assert [e.t_end for e in scored(c)] == [2.0]
    assert c.score.batches == [[2.0]]
    c.take(Mark("face", math.inf, final=True))
    assert not c.done  # until the source says so
    c.take(Mark("source", 2.6, final=True))
    assert c.done
    with pytest.raises(ValueError):
        core(live=False, streams=("face", "video"))


def test_an_interrupted_core_scores_what_closed_and_closes_nothing_more():
    c = core(live=False)
    frames(c, 0, 4000)
    c.take(Mark("text", 3.1))
    c.take(Mark("source", 4.0, final=True))
    assert scored(c) == [] and c.waiting == 3
    c.finish(interrupted=True)
    assert [e.t_end for e in scored(c)] == [2.0, 2.5, 3.0]


def test_a_live_core_needs_the_time():
    with pytest.raises(ValueError):
        core(live=True).step()


@pytest.mark.parametrize("live", [False, True], ids=["file", "live"])
def test_an_hour_with_nothing_in_it_closes_its_windows_a_few_hundred_at_a_time(live):
    """Streams that jump an hour ahead (a file whose audio skips an hour) made every window
    of the hour complete at once: all 7,200 were built (their face and voice steps) before
    the first was scored, about 100 MB an hour. Live, a clock that jumps does the same."""
    from realtime.core import WAITING_MOST

    c = core(live=live)
    frames(c, 0, 2000)
    hour = 3600.0
    for stream in ALL:
        c.take(Mark(stream, hour))
    held, got = 0, []
    while estimates := c.step(hour if live else None):
        held = max(held, c.waiting + len(estimates))
        got += estimates
    c.finish(end_time=hour + 1.0)
    while estimates := c.step():
        held = max(held, c.waiting + len(estimates))
        got += estimates
    ends = [e.t_end for e in got]
    assert ends == [2.0 + 0.5 * i for i in range(len(ends))] and ends[-1] >= hour + 1.0  # every window, in order
    assert held <= WAITING_MOST
    assert len(c.score.windows) == len(ends) and max(len(b) for b in c.score.batches) <= 16


def test_an_interrupt_counts_the_complete_windows_it_leaves_unscored():
    c = core(live=False)
    frames(c, 0, 2000)
    for stream in ALL:
        c.take(Mark(stream, 3600.0))
    c.finish(interrupted=True)
    assert c.waiting == 7197  # 2.0 ... 3600.0 s, none closed yet
    first = c.step()
    assert [e.t_end for e in first] == [2.0 + 0.5 * i for i in range(16)] and c.waiting == 7197 - 16
