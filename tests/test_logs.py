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
    assert threading.get_ident() not in logs._owners  # nothing left claimed


def test_a_warning_true_of_every_run_is_said_once_and_kept_by_each():
    shown, kept = [], []

    class Console(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                shown.append(record.getMessage())
            except Exception:
                self.handleError(record)  # Python's own "--- Logging error ---"

    console = Console(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(console)
    try:
        with logs.said_once():
            for _ in range(3):  # a folder run's files
                with logs.warnings_to(kept.append):
                    log.warning("--hop 3 s is longer than the 2 s window", extra=logs.ONCE)
                    log.warning("'a.mp4' has no video stream")
            # a malformed call is left to the handler to report ("--- Logging error ---"): the
            # filter itself must not raise at the call site
            bad = log.makeRecord(log.name, logging.WARNING, __file__, 1, "bad %d", ("x",), None, extra=logs.ONCE)
            assert console.filter(bad)
        log.warning("--hop 3 s is longer than the 2 s window", extra=logs.ONCE)  # the next command
    finally:
        root.removeHandler(console)
    assert shown.count("--hop 3 s is longer than the 2 s window") == 2
    assert shown.count("'a.mp4' has no video stream") == 3  # only what is marked true of every run
    assert kept.count("--hop 3 s is longer than the 2 s window") == 3


def test_pythons_last_resort_shows_warnings_while_any_run_needs_it():
    """Nothing configured logging (a script with two Recognizers in two threads): the first
    run to end had taken Python's last resort from the root, and the other's warnings then
    reached no terminal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        first_in, first_out = threading.Event(), threading.Event()

        def first() -> None:
            with logs.warnings_to(lambda message: None):
                first_in.set()
                first_out.wait(10)

        thread = threading.Thread(target=first)
        thread.start()
        assert first_in.wait(10)
        with logs.warnings_to(lambda message: None):
            first_out.set()
            thread.join()
            assert logging.lastResort in root.handlers
        assert root.handlers == []
    finally:
        root.handlers = saved


def test_what_a_run_says_for_itself_after_its_block_reaches_no_other_run():
    """A Recognizer says its run's end findings ('no face found') after the run's block:
    the thread was then unclaimed, and another thread's run kept them in its summary."""
    other, inside, done = [], threading.Event(), threading.Event()

    def another_run() -> None:
        with logs.warnings_to(other.append):
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=another_run)
    thread.start()
    assert inside.wait(10)
    from realtime.cli import say_end_findings
    from realtime.sinks import Summary

    summary = Summary(source="blank.mp4")
    summary.warnings.append("no face found in its video")
    say_end_findings(summary)
    done.set()
    thread.join()
    assert other == [] and summary.unsaid == [] and threading.get_ident() not in logs._owners
