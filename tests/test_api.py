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
def test_records_as_they_come_again_on_a_second_file_and_errors_as_exceptions(tmp_path, example_run):
    """Each record reaches ``on_record`` as its window is done, the same as those returned
    and those --out writes; the models serve a second analysis alike; bad media and a closed
    recognizer raise."""
    out, _ = example_run
    result = tmp_path / "records.json"
    run_script(tmp_path / "use.py", textwrap.dedent(f"""
        import json
        from realtime import Recognizer
        from realtime.sources.file import MediaError

        seen = []
        with Recognizer(device="cpu") as recognizer:
            first = recognizer.analyse({str(EXAMPLE)!r}, on_record=seen.append)
            again = recognizer.analyse({str(EXAMPLE)!r})
            try:
                recognizer.analyse({str(tmp_path / "missing.mp4")!r})
                raise SystemExit("no MediaError")
            except MediaError as error:
                missing = str(error)
        try:
            recognizer.analyse({str(EXAMPLE)!r})
            raise SystemExit("a closed recognizer analysed")
        except RuntimeError as error:
            closed = str(error)
        json.dump({{"first": first, "seen": seen, "again": again, "missing": missing, "closed": closed}},
                  open({str(result)!r}, "w"))
    """))
    got = json.loads(result.read_text())
    expected = read_records(out)
    assert got["seen"] == got["first"] and len(got["first"]) == len(expected)
    for ours, theirs in zip(got["first"], expected):
        same_record(ours, theirs, "record")
    for ours, theirs in zip(got["again"], got["first"]):
        same_record(ours, theirs, "again")
    assert got["missing"] == f"'{tmp_path / 'missing.mp4'}': no such file"
    assert got["closed"] == "this Recognizer is closed"


def test_a_bad_option_raises_before_any_model_loads():
    from realtime import Recognizer

    with pytest.raises(ValueError, match="--hop must be a number of seconds from 0.05 to 60, got 0"):
        Recognizer(hop=0)
    with pytest.raises(ValueError, match="unknown --device 'gpu'"):
        Recognizer(device="gpu")
