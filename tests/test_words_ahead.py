"""Live runs embed the words in the text worker: the word lists it sees coming are the
windows' own, the embedder it shares with the engine is safe from two threads, and file
runs leave embedding to the engine's batches."""

import threading

import numpy as np

from realtime.features.text import TextEmbedder, TextOptions
from realtime.features.words_ahead import WordsAhead
from realtime.types import Word
from realtime.windows import WindowAssembler, WindowSpec

SENTENCES = ("I love this so much. It is great", "but then the rain came and we were soaked?",
             "nobody expected that at all", "what a day")


def spoken(seed: int) -> list[Word]:
    """Words of a few sentences, with pauses long and short between them, in time order."""
    rng = np.random.default_rng(seed)
    words, t = [], 0.3
    for sentence in SENTENCES * 3:
        for text in sentence.split():
            length = rng.uniform(0.1, 0.5)
            words.append(Word(t, t + length, text))
            t += length + rng.choice([0.02, 0.2, 0.9])
        t += rng.choice([0.3, 2.0])
    return words


def test_the_lists_ahead_are_the_windows_own():
    # a live run's order of events: windows close on the clock, then the worker commits
    # words and looks ahead; a window's text is the list last seen ahead for it
    for seed, (window, hop, context) in enumerate(((4.0, 0.5, 0), (4.0, 0.5, 7), (2.5, 0.3, 3), (3.0, 1.0, 5))):
        spec = WindowSpec(window=window, hop=hop, text_context=context)
        words = spoken(seed)
        assembler, ahead = WindowAssembler(spec), WordsAhead(spec)
        last_seen: dict[int, list[str]] = {}
        compared = 0
        now, committed = 0.0, 0
        while now < words[-1].end + window + hop:
            now += 0.37
            for win in assembler.step(until=now):
                assert win.text() == last_seen.pop(win.index, []), (spec, win.t_end)
                compared += bool(win.words)
            new = [w for w in words[committed:] if w.end <= now - 1.0]  # committed a second after
            committed += len(new)
            assembler.push_words(new)
            ahead.push(new)
            for index in range(int((now + 0.9) / hop) + 1):  # each window ending in the next 0.9 s, alone
                t_end = spec.window + index * spec.hop
                if now < t_end <= now + 0.9:
                    last_seen[index] = (ahead.lists(t_end - hop / 2, t_end) or [[]])[0]
        assert assembler.stats.late == 0 and compared > 10


def test_lists_ahead_skip_empty_windows_and_forget_old_words():
    spec = WindowSpec(window=2.0, hop=1.0)
    ahead = WordsAhead(spec)
    ahead.push([Word(0.2, 0.4, "hello"), Word(0.2, 0.4, "hello"), Word(5.1, 5.3, "again")])
    assert ahead.lists(0.0, 3.0) == [["hello"]]  # [0, 2) holds it once; [1, 3) does not
    assert ahead.lists(3.0, 8.0) == [["again"], ["again"]]  # windows ending at 6 and 7; not 4, 5, 8
    assert ahead.lists(6.0, 8.0) == [["again"]]
    assert ahead.lists(0.0, 3.0) == []  # forgotten: only windows before 6 could hold it


def test_the_embedder_gives_the_same_arrays_to_threads_that_share_it():
    embedder = TextEmbedder(TextOptions(encoder="minilm"))
    lists = [sentence.split()[: n] for sentence in SENTENCES for n in (2, 4, 9)]
    reference, reference_mask = TextEmbedder(TextOptions(encoder="minilm")).embed_many(lists)
    results: dict[int, tuple] = {}
    errors = []
    start = threading.Barrier(4)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                if i % 2:  # as the text worker: embed ahead, in its own batches
                    embedder.embed_ahead(lists[i::2])
                results[i] = embedder.embed_many(lists)  # as the engine
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 4
    first, first_mask = results[0]
    for x, mask in results.values():  # every thread reads the one remembered array of each list
        assert np.array_equal(x, first) and np.array_equal(mask, first_mask)
    # and each is that list's own, whatever batch computed it (padding may move the last bits)
    assert np.array_equal(first_mask, reference_mask) and np.allclose(first, reference, atol=1e-5)
    distinct = len({tuple(words) for words in lists})  # "what a day" is one list at 4 and 9 words
    counts = embedder.counts  # each list ran through the model once, in one thread or the other
    assert counts.computed + counts.ahead == distinct and counts.asked == 12 * distinct


def test_a_file_run_embeds_its_words_in_the_engine_batches(components, media, tmp_path):
    from realtime.run import RunOptions, build_run
    from realtime.sources.file import FileFeed

    text = components.engine.text
    text.clear_cache()  # earlier tests may have run these words through the same embedder
    counts = text.counts
    before = (counts.ahead, counts.computed)
    estimates = []
    with build_run(components, FileFeed(media["audio_only_wav"]), RunOptions(hop=1.0),
                   on_estimate=estimates.append) as run:
        run.run()
    assert any(est.words for est in estimates)
    assert counts.ahead == before[0] and counts.computed > before[1]
