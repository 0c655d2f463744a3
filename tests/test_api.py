"""realtime.Recognizer: the command line's file run from Python (the README's "From Python")."""

import json
import re
import textwrap

import pytest

from tests.conftest import EXAMPLE, EXIT_BOUND, ROOT, finish, read_records, same_record, start


def readme_python() -> str:
    """The README's Python example, as a user copies it."""
    section = (ROOT / "README.md").read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_script(path, text: str):
    """``python path`` from the repository root; it ends with 'script done' on stderr and must
    exit within EXIT_BOUND of it (its models closed, no graph left to a finalizer)."""
    path.write_text(text + "import sys\nprint('script done', file=sys.stderr, flush=True)\n")
    proc = finish(start([path], module=None), timeout=300, done="script done")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.exit_lag < EXIT_BOUND and "exit-audit:" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # loads the models (about 10 s)
def test_the_readme_s_python_gives_the_command_line_s_records(tmp_path, example_run):
    out, _ = example_run
    expected = read_records(out)
    lines = run_script(tmp_path / "readme.py", readme_python()).stdout.strip().splitlines()
    assert len(lines) == len(expected) + 1
    for line, record in zip(lines, expected):
        t_end, emotion, sentiment = line.split()
        assert (float(t_end), emotion) == (record["t_end"], record["emotion"])
        assert abs(float(sentiment) - record["sentiment"]) <= 2e-4, (line, record)
    assert lines[-1].startswith(f"examples/talking.mp4: {len(expected)} windows")


@pytest.mark.slow  # loads the models (about 10 s)
def test_records_as_they_come_one_run_at_a_time_and_what_a_run_warned_of(tmp_path, example_run, media):
    """Each record reaches ``on_record`` as its window is done, the same as those returned
    and those --out writes; the models serve a second analysis alike; a second thread's call
    during a run is refused (it had reset the models under the run: wrong records, in
    silence); Ctrl-C stops a run and is raised again (it had returned the records so far as
    if whole); close() from on_record is refused, ending the analysis (it had waited for
    itself for ever); the summary keeps what the run warned of, and the end's findings are said."""
    out, _ = example_run
    result = tmp_path / "result.json"
    proc = run_script(tmp_path / "use.py", textwrap.dedent(f"""
        import _thread, json, threading
        from realtime import Recognizer
        from realtime.sources.file import MediaError

        seen, refused = [], []

        def from_another_thread():
            try:
                recognizer.analyse({str(EXAMPLE)!r})
            except RuntimeError as error:
                refused.append(str(error))

        def on_record(record):
            seen.append(record)
            if len(seen) == 1:
                other = threading.Thread(target=from_another_thread)
                other.start()
                other.join()

        def interrupt(record):
            if record["t_end"] == 6.0:  # once (a second Ctrl-C would end the windows kept after the first)
                _thread.interrupt_main()

        with Recognizer(device="cpu") as recognizer:
            first = recognizer.analyse({str(EXAMPLE)!r}, on_record=on_record)
            again = recognizer.analyse({str(EXAMPLE)!r})
            try:
                recognizer.analyse({str(EXAMPLE)!r}, on_record=interrupt)
                interrupted = None
            except KeyboardInterrupt:
                interrupted = [recognizer.summary.interrupted, recognizer.summary.windows,
                               [t.name for t in threading.enumerate() if t.name.startswith("realtime-")]]
            try:  # close() from on_record would wait for itself: refused, which ends the analysis
                recognizer.analyse({str(EXAMPLE)!r}, on_record=lambda record: recognizer.close())
                from_callback = None
            except RuntimeError as error:
                from_callback = str(error)
            without_audio = recognizer.analyse({str(media["video_no_audio"])!r})
            warned = list(recognizer.summary.warnings)
            recognizer.analyse({str(media["no_face"])!r})
            no_face = list(recognizer.summary.warnings)
            try:
                recognizer.analyse({str(tmp_path / "missing.mp4")!r})
            except MediaError as error:
                missing = [str(error), recognizer.summary]
        try:
            recognizer.analyse({str(EXAMPLE)!r})
        except RuntimeError as error:
            closed = str(error)
        left_open = Recognizer(device="cpu")  # closed by the exit hook, with a warning (not by a finalizer)
        json.dump({{"first": first, "seen": seen, "again": again,
                    "refused": refused, "interrupted": interrupted, "without_audio": len(without_audio),
                    "warned": warned, "no_face": no_face, "missing": missing, "closed": closed,
                    "from_callback": from_callback}},
                  open({str(result)!r}, "w"))
    """))
    got = json.loads(result.read_text())
    expected = read_records(out)
    assert got["seen"] == got["first"] and len(got["first"]) == len(expected)
    for ours, theirs in zip(got["first"], expected):
        same_record(ours, theirs, "record")
    for ours, theirs in zip(got["again"], got["first"]):
        same_record(ours, theirs, "again")
    assert got["refused"] == ["this Recognizer is analysing another file: give each thread a Recognizer of its own"]
    assert got["interrupted"][0] is True and 0 < got["interrupted"][1] < len(expected)
    assert got["interrupted"][2] == []  # the run's threads ended
    assert got["without_audio"] > 0 and any("has no audio stream" in w for w in got["warned"]), got["warned"]
    assert any(w.startswith("no face found") for w in got["no_face"]), got["no_face"]
    # said as they happened and at the end, though nothing configured logging
    assert "has no audio stream" in proc.stderr and "no face found in its video" in proc.stderr, proc.stderr
    assert got["missing"] == [f"'{tmp_path / 'missing.mp4'}': no such file", None]
    assert got["closed"] == "this Recognizer is closed"
    assert got["from_callback"].startswith("close() from on_record would wait for the analysis"), got
    assert "a Recognizer was left open: closed at exit" in proc.stderr  # run_script: no graph left to a finalizer


@pytest.mark.slow  # loads the models twice (about 20 s)
def test_two_recognizers_in_two_threads_each_keep_their_own_warnings(tmp_path, media):
    """What the refusal of a second thread advises: a Recognizer per thread. Each summary had
    held both runs' warnings: the example's named the other file as having no audio."""
    result = tmp_path / "result.json"
    run_script(tmp_path / "two.py", textwrap.dedent(f"""
        import json, threading
        from realtime import Recognizer

        warned = {{}}

        def analyse(path):
            with Recognizer(device="cpu") as recognizer:
                recognizer.analyse(path)
                warned[path] = list(recognizer.summary.warnings)

        threads = [threading.Thread(target=analyse, args=(path,))
                   for path in ({str(EXAMPLE)!r}, {str(media["video_no_audio"])!r})]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        json.dump(warned, open({str(result)!r}, "w"))
    """))
    warned = json.loads(result.read_text())
    assert warned[str(EXAMPLE)] == []
    assert any("has no audio stream" in w for w in warned[str(media["video_no_audio"])]), warned


def test_a_bad_option_raises_before_any_model_loads(monkeypatch):
    import realtime.api
    from realtime import Recognizer

    def load_components(args):
        raise AssertionError("the models were loaded before the options were checked")

    monkeypatch.setattr(realtime.api, "load_components", load_components)
    for options, message in (({"hop": 0}, "--hop must be a number of seconds from 0.05 to 60, got 0"),
                             ({"hop": "0.5"}, "--hop must be a number of seconds from 0.05 to 60, got '0.5'"),
                             ({"face_fps": None}, "--face-fps must be a number of frames per second from 1 to 60, "
                                                  "got None"),
                             ({"device": "gpu"}, "unknown --device 'gpu': use auto, cpu or cuda"),
                             ({"precision": "half"}, "unknown --precision 'half': use float32, bfloat16")):
        with pytest.raises(ValueError) as error:
            Recognizer(**options)
        assert str(error.value) == message
