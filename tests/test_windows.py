"""The window assembler: geometry, masks, words, determinism, any interleaving."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.types import AcousticFrame, FaceFrame, Word
from realtime.windows import SHORT_TAIL, UTTERANCE_PAUSE, WindowAssembler, WindowSpec, resample, utterance_context

SPEC = WindowSpec(window=2.0, hop=0.5, face_steps=8, audio_steps=10, face_dim=3, audio_dim=2)


def face(t, value=1.0):
    return FaceFrame(t=t, features=np.full(3, value, np.float32))


def audio(t, value=1.0, voiced=True):
    return AcousticFrame(t=t, features=np.full(2, value, np.float32), voiced=voiced)


def test_windows_wait_for_every_stream_then_cover_the_media():
    asm = WindowAssembler(SPEC)
    for i in range(40):  # 4 s of face and audio at 10 Hz
        asm.push_face(face(i / 10))
        asm.push_audio(audio(i / 10))
    assert asm.step() == []  # text has not progressed yet
    asm.push_words([Word(0.2, 0.6, "hello"), Word(1.9, 2.3, "world")])
    asm.advance("text", 3.0)
    first = asm.step()
    assert [w.t_end for w in first] == [2.0, 2.5, 3.0]
    assert first[0].words[0].text == "hello" and [w.text for w in first[0].words] == ["hello"]
    assert [w.text for w in first[1].words] == ["world"]  # [0.5, 2.5): hello's middle is 0.4
    asm.close("text")
    rest = asm.step() + asm.flush(end_time=4.0)
    ends = [w.t_end for w in first + rest]
    assert ends == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert all(np.isclose(b - a, SPEC.hop) for a, b in zip(ends, ends[1:]))


def _speak(asm, words, until):
    """Face and audio at 10 Hz up to ``until``, the words, then every stream closed."""
    for i in range(int(until * 10)):
        asm.push_face(face(i / 10))
        asm.push_audio(audio(i / 10))
    asm.push_words(words)
    for name in ("face", "audio", "text"):
        asm.close(name)
    return asm.step() + asm.flush(end_time=until)


def test_samples_between_windows_are_not_late():
    """A hop longer than the window leaves gaps no window reads: what falls there is skipped,
    not counted as late (only samples a window could have held and missed are)."""
    import dataclasses

    asm = WindowAssembler(dataclasses.replace(SPEC, hop=3.0))  # windows [0, 2], [3, 5], ...
    asm.close("text")
    for i in range(21):  # 0 to 2 s
        asm.push_face(face(i / 10))
        asm.push_audio(audio(i / 10))
    assert [w.t_end for w in asm.step()] == [2.0]
    asm.push_face(face(2.5))  # between the windows: nobody's
    asm.push_words([Word(2.3, 2.7, "between")])
    asm.push_face(face(1.5))  # in the window already out: late
    assert asm.stats.late == 1


def test_a_window_reads_its_words_in_their_utterance():
    # one utterance word by word every 0.3 s, a pause longer than an utterance's, then another
    first = [Word(0.3 * i, 0.3 * i + 0.2, f"a{i}") for i in range(12)]  # ends at 3.5 s
    gap = first[-1].end + UTTERANCE_PAUSE + 0.5
    second = [Word(gap + 0.3 * i, gap + 0.3 * i + 0.2, f"b{i}") for i in range(6)]
    spec = WindowSpec(window=2.0, hop=0.5, face_steps=8, audio_steps=10, face_dim=3, audio_dim=2, text_context=4)
    windows = _speak(WindowAssembler(spec), first + second, until=second[-1].end + 1.0)
    plain = _speak(WindowAssembler(SPEC), first + second, until=second[-1].end + 1.0)
    assert [w.words for w in windows] == [w.words for w in plain]  # context never changes what a window holds
    seen = 0
    for win in windows:
        inside = [w.text for w in win.words]
        context = [w.text for w in win.context]
        assert win.text() == (context + inside if inside else [])
        if not inside:
            assert context == []  # no words, no text: the channel stays absent
            continue
        assert len(context) <= 4 and all(w.middle < win.t_start for w in win.context)
        earlier = [w for w in first + second if w.middle < win.t_start]
        head = win.words[0]
        # the words just before the window, up to four, never across the long pause
        same = [w.text for w in earlier if (w in first) == (head in first)]
        assert context == same[-4:]
        seen += bool(context)
    assert seen >= 4  # windows inside both utterances had context
    assert all(w.context == [] for w in plain)  # text_context 0: the window's words only


def test_context_is_the_sentence_so_far():
    def said(t, text):
        return Word(t, t + 0.2, text)

    earlier = [said(0.0, "I"), said(0.3, "hated"), said(0.6, "it."), said(0.9, "But"), said(1.2, "then")]
    now = said(1.5, "it")
    assert [w.text for w in utterance_context(earlier, now, 10)] == ["But", "then"]  # not the last sentence
    assert [w.text for w in utterance_context(earlier, now, 1)] == ["then"]
    assert utterance_context(earlier, said(1.4 + UTTERANCE_PAUSE + 0.1, "Later"), 10) == []  # after a pause
    for end in ("Wow!", "Really?", '"No."', "so…"):
        assert utterance_context([said(0.0, "a"), said(0.3, end)], said(0.6, "b"), 10) == []
    assert [w.text for w in utterance_context([said(0.0, "Dr"), said(0.3, "no,")], now, 10)] == ["Dr", "no,"]


def test_masks_follow_the_data():
    asm = WindowAssembler(SPEC)
    asm.close("text")
    for i in range(20):
        t = i / 10 + 0.05  # off bin edges
        asm.push_face(face(t) if not 0.5 <= t < 1.0 else FaceFrame(t=t, features=None))
        asm.push_audio(audio(t, voiced=t < 1.5))
    (win,) = asm.flush(end_time=2.0)
    # face bins are 0.25 s wide: bins 2 and 3 cover [0.5, 1.0) where no face was seen
    assert win.face_mask.tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    # audio bins are 0.2 s wide: silence from 1.5 s leaves the last two bins empty
    assert win.audio_mask.tolist() == [1] * 8 + [0, 0]
    assert np.all(win.face[win.face_mask == 0] == 0)
    assert win.coverage()["face"] == 0.75


def test_short_media_gets_one_window_and_empty_media_none():
    asm = WindowAssembler(SPEC)
    asm.push_face(face(0.3))
    out = asm.flush(end_time=0.7)
    assert len(out) == 1 and out[0].t_start == 0.0 and out[0].face_mask.sum() == 1
    assert WindowAssembler(SPEC).flush(end_time=0.0) == []


def test_an_end_a_few_milliseconds_past_the_last_window_gets_no_window():
    """The last video frame's duration past the audio's end (0.04 s at 25 fps) adds no window
    holding nothing new; a longer tail (the last second of a 1 fps video) gets its window."""
    for end, ends in ((4.0 + SHORT_TAIL - 0.01, [2.0, 2.5, 3.0, 3.5, 4.0]),
                      (4.0 + SHORT_TAIL + 0.01, [2.0, 2.5, 3.0, 3.5, 4.0, 4.5])):
        asm = WindowAssembler(SPEC)
        for name in ("face", "audio", "text"):
            asm.close(name)
        assert [w.t_end for w in asm.flush(end_time=end)] == ends, end


def test_a_hop_longer_than_the_window_gives_no_window_past_the_media():
    """Windows [0, 2], [3, 5], [6, 8] ... over media ending at 4 s and at 6.02 s: none starts
    at or past the end (a 22.5 s file with --hop 60 had a second window at 60-64 s, reading
    nothing, counted in its summary)."""
    import dataclasses

    for end, ends in ((4.0, [2.0, 5.0]), (6.02, [2.0, 5.0]), (6.2, [2.0, 5.0, 8.0]), (1.0, [2.0])):
        asm = WindowAssembler(dataclasses.replace(SPEC, hop=3.0))
        for name in ("face", "audio", "text"):
            asm.close(name)
        assert [w.t_end for w in asm.flush(end_time=end)] == ends, end


def test_resample_means_each_bin():
    values, mask = resample([0.1, 0.2, 0.9], [np.ones(1), 3 * np.ones(1), 5 * np.ones(1)], 0.0, 1.0, 2, 1)
    assert values[:, 0].tolist() == [2.0, 5.0] and mask.tolist() == [1, 1]


events = st.lists(
    st.tuples(st.sampled_from(["face", "audio"]), st.floats(0, 10, allow_nan=False), st.booleans()),
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(events=events, seed=st.integers(0, 2**16), live=st.booleans())
def test_any_interleaving_gives_well_formed_windows(events, seed, live):
    """Random timestamps, gaps, duplicates, out-of-order arrivals: windows stay aligned,
    masks match the samples, and no sample is counted twice."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(events)) if events else []
    asm = WindowAssembler(SPEC)
    asm.close("text")
    windows = []
    kept: set[tuple[str, float]] = set()
    late = duplicates = 0
    for k, i in enumerate(order):
        stream, t, present = events[i]
        # what the assembler must do with it: no window still to come starts before the
        # next one, so a sample before that is late; a (stream, t) already kept is a repeat
        if t < SPEC.window + len(windows) * SPEC.hop - SPEC.window:
            late += 1
        elif (stream, t) in kept:
            duplicates += 1
        else:
            kept.add((stream, t))
        if stream == "face":
            asm.push_face(FaceFrame(t=t, features=np.full(3, t, np.float32) if present else None))
        else:
            asm.push_audio(AcousticFrame(t=t, features=np.full(2, t, np.float32), voiced=present))
        if live and k % 7 == 0:
            windows += asm.step(until=t)
        elif not live:
            windows += asm.step()
    windows += asm.flush(end_time=10.0)
    ends = [w.t_end for w in windows]
    assert ends == sorted(set(ends)), "windows are emitted once each, in order"
    for w in windows:
        assert math.isclose(w.t_end - w.t_start, SPEC.window)
        assert w.face.shape == (8, 3) and w.audio.shape == (10, 2)
        assert set(np.unique(w.face_mask)) <= {0.0, 1.0}
        # a masked step holds nothing; a present step holds a mean of timestamps inside its bin
        width = SPEC.window / 8
        for i in range(8):
            if w.face_mask[i] == 0:
                assert np.all(w.face[i] == 0)
            else:
                lo, hi = w.t_start + i * width, w.t_start + (i + 1) * width
                assert lo - 1e-6 <= w.face[i, 0] < hi + 1e-6
    # every sample is kept once, or refused and counted once: as late, or as a repeat
    assert (asm.stats.late, asm.stats.duplicates) == (late, duplicates)


def test_file_mode_is_deterministic_under_reordering():
    rng = np.random.default_rng(0)
    samples = [("face", float(t)) for t in np.arange(0, 6, 0.1)] + [("audio", float(t)) for t in np.arange(0, 6, 0.02)]

    def run(order):
        asm = WindowAssembler(SPEC)
        asm.close("text")
        out = []
        for i in order:
            stream, t = samples[i]
            value = np.sin(np.full(3 if stream == "face" else 2, t, np.float32))
            if stream == "face":
                asm.push_face(FaceFrame(t=t, features=value))
            else:
                asm.push_audio(AcousticFrame(t=t, features=value, voiced=True))
        out += asm.flush(end_time=6.0)
        return out

    a = run(range(len(samples)))
    b = run(rng.permutation(len(samples)))
    assert len(a) == len(b) == 9
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.face, y.face)
        np.testing.assert_array_equal(x.audio_mask, y.audio_mask)


sorted_events = st.lists(
    st.tuples(st.sampled_from(["face", "audio"]), st.floats(0, 8, allow_nan=False).map(lambda t: round(t, 3)),
              st.booleans()),
    max_size=150,
).map(lambda evs: sorted(evs, key=lambda e: e[1]))


@settings(max_examples=60, deadline=None)
@given(events=sorted_events, dup_seed=st.integers(0, 2**16))
def test_every_sample_counts_once_and_masks_match_the_data(events, dup_seed):
    """Arrivals in time order with repeats and gaps: each bin holds exactly the mean of the
    distinct present samples in it, and its mask is set exactly when there is one."""
    rng = np.random.default_rng(dup_seed)
    first: dict[tuple[str, float], bool] = {}
    for stream, t, present in events:
        first.setdefault((stream, t), present)
    arrivals = []
    for e in events:  # every sample arrives once or twice (a repeat carries the first's content)
        copy = (e[0], e[1], first[(e[0], e[1])])
        arrivals += [copy] * int(rng.integers(1, 3))
    asm = WindowAssembler(SPEC)
    asm.close("text")
    windows = []
    for stream, t, present in arrivals:
        if stream == "face":
            asm.push_face(FaceFrame(t=t, features=np.full(3, t, np.float32) if present else None))
        else:
            asm.push_audio(AcousticFrame(t=t, features=np.full(2, t, np.float32), voiced=present))
        windows += asm.step()
    windows += asm.flush(end_time=8.0)
    for w in windows:
        for stream, values, mask, steps in (("face", w.face, w.face_mask, 8), ("audio", w.audio, w.audio_mask, 10)):
            width = SPEC.window / steps
            for i in range(steps):
                lo, hi = w.t_start + i * width, w.t_start + (i + 1) * width
                inside = [t for (s, t), p in first.items() if s == stream and p and lo <= t < hi]
                # the assembler bins with a float division: allow samples a hair from an edge
                edge = [t for (s, t), p in first.items() if s == stream and p and min(abs(t - lo), abs(t - hi)) < 1e-9]
                if edge:
                    continue
                assert mask[i] == (1.0 if inside else 0.0), (stream, i, inside)
                if inside:
                    assert np.isclose(values[i, 0], np.mean(inside), atol=1e-4), (stream, i, inside, values[i, 0])
