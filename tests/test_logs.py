"""Whose warnings a run keeps (``realtime.logs.warnings_to``): two runs in two threads, a
run's worker that outlives it, a block inside another."""

import logging
import threading

from realtime import logs

log = logging.getLogger("realtime.test_logs")


def in_thread(target, carried: bool = True) -> None:
    thread = threading.Thread(target=logs.carried(target) if carried else target)
    thread.start()
    thread.join()


def test_each_run_keeps_the_warnings_of_its_own_threads():
    """Two runs at once, each in its thread with a worker of its own: each run's summary
    had held both runs' warnings (a file without audio named in the other file's summary)."""
    kept = {"a": [], "b": []}
    both_in = threading.Barrier(2)
    done = threading.Barrier(2)

    def run(name: str) -> None:
        with logs.warnings_to(kept[name].append):
            both_in.wait()
            log.warning("%s itself", name)
            in_thread(lambda: log.warning("%s's worker", name))
            done.wait()

    threads = [threading.Thread(target=run, args=(name,)) for name in kept]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert kept == {"a": ["a itself", "a's worker"], "b": ["b itself", "b's worker"]}


def test_a_worker_that_outlives_its_run_tells_the_next_run_nothing():
    first, second = [], []
    go_on, logged = threading.Event(), threading.Event()

    def straggler() -> None:
        go_on.wait(10)
        log.warning("late, from the first run's worker")
        logged.set()

    with logs.warnings_to(first.append):
        thread = threading.Thread(target=logs.carried(straggler))
        thread.start()
    with logs.warnings_to(second.append):
        go_on.set()
        assert logged.wait(10)
        log.warning("the second run's own")
    thread.join()
    assert first == [] and second == ["the second run's own"]


def test_unclaimed_threads_tell_every_run_and_a_block_inside_another_tells_both():
    """A thread no run started (a microphone's callback) still tells the run; a thread
    started outside any block stays unclaimed; a block inside another (the window's, then the
    file run's) hears what the outer hears, and the outer keeps hearing its thread."""
    outer, inner = [], []
    with logs.warnings_to(outer.append):
        in_thread(lambda: log.warning("from a device"), carried=False)
        with logs.warnings_to(inner.append):
            log.warning("inside both")
            in_thread(lambda: log.warning("a worker inside both"))
        log.warning("outer again")
    in_thread(lambda: log.warning("after every block"))
    assert outer == ["from a device", "inside both", "a worker inside both", "outer again"]
    assert inner == ["inside both", "a worker inside both"]
    assert logs._owners == {}  # nothing left claimed
