"""A stop signal waits for the record being delivered (realtime.interrupts)."""

import os
import signal
import threading

import pytest

from realtime import interrupts


@pytest.fixture
def stop_signal():
    """SIGUSR1 handled as the command handles Ctrl-C and SIGTERM: through ``interrupts.interrupt``."""
    previous = signal.signal(signal.SIGUSR1, lambda *_: interrupts.interrupt())
    yield lambda: os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)


def test_a_stop_during_a_held_block_interrupts_at_its_end(stop_signal):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            stop_signal()
            done.append("written")
            with interrupts.held():  # nested: still held until the outer block ends
                done.append("counted")
            done.append("reached")
    assert done == ["written", "counted", "reached"]
    with pytest.raises(KeyboardInterrupt):  # outside a block: at once
        stop_signal()
        done.append("never")
    assert done[-1] == "reached"


def test_a_held_block_that_fails_ends_with_its_own_error_and_leaves_nothing_pending(stop_signal):
    with pytest.raises(OSError, match="disk full"):
        with interrupts.held():
            stop_signal()
            raise OSError("disk full")
    with interrupts.held():  # the stop was not carried into the next block
        pass


def test_outside_the_main_thread_a_block_holds_nothing():
    seen = []

    def worker():
        with interrupts.held():
            seen.append(interrupts._held)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [0]


def test_an_interrupt_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """SIGTERM to `realtime.extract --workers 2` landed between a cache entry's write and its
    rename: the temporary stayed in the cache until a later run removed it."""
    from realtime.outputs import write_atomic

    path = tmp_path / "entry.npz"
    write_atomic(path, b"old")

    def interrupted(fd) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["entry.npz"]
