"""The desktop window, offscreen, on the example video: real models, real pipeline threads."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from gui.session import Session, SessionOptions
from gui.window import MainWindow, running_threads
from realtime.logs import NATIVE_NOISE
from tests.conftest import EXAMPLE, EXIT_BOUND, ROOT, cli, read_records

pytestmark = pytest.mark.slow


def assert_same_records(a, b, tol: float = 2e-4) -> None:
    """Equal records, floats to within one step of their 4-decimal rounding: the GUI and the
    CLI batch windows differently, and a batch's size can move a float's last bit across a
    rounding boundary (seen once: sentiment 0.6419 vs 0.642). Everything else must match."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_records(a[k], b[k], tol)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_records(x, y, tol)
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= tol, (a, b)
    else:
        assert a == b


def release(session: Session) -> None:
    """Stop a session's run and close its models now (python -m gui does the same on exit)."""
    session.close()


@pytest.fixture(scope="module")
def session(qapp, components):
    """One session for the module, shared by the windows, on the suite's models (loaded once
    per test run; the CPU is what 'auto' picks here, and the GUI's own load differs only in
    setting one torch thread, which the suite already does)."""
    s = Session()
    s._components, s._components_key = components, SessionOptions(source="").models_key()
    yield s
    s.stop()
    s._components = None  # the suite's models: closed by their own fixture
    release(s)


def open_window(qtbot, session, source=EXAMPLE, **options) -> MainWindow:
    window = MainWindow(SessionOptions(source=str(source), **options), session=session)
    qtbot.addWidget(window)
    window.show()
    return window


def wait_finished(qtbot, window, timeout_s=240):
    qtbot.waitUntil(lambda: not window.session.running, timeout=timeout_s * 1000)
    qtbot.wait(100)  # queued signals from the run's last moments


def pause_and_hold(qtbot, window, watch_ms: int) -> int:
    """Pause, let a batch already in the model arrive, then watch: no estimate may come.
    Returns how many were seen."""
    window.pause_button.setChecked(True)
    qtbot.wait(500)  # a batch already in the model may still arrive
    held = window.estimates_seen
    qtbot.wait(watch_ms)
    assert window.estimates_seen == held, "estimates kept coming while paused"
    return held


def test_a_recording_names_the_input_each_estimate_came_from(qtbot, tmp_path):
    """Estimates still queued when a run is stopped and another started are recorded under
    the input they came from, which the session sends with each, not under the one now
    running."""
    from realtime.types import Estimate

    window = open_window(qtbot, Session(), source=tmp_path / "first.mp4")
    window.record_to(tmp_path / "rec.jsonl")
    window.session.options = SessionOptions(source=str(tmp_path / "second.mp4"))  # the next run's
    for t_end, name in ((4.0, "first.mp4"), (4.5, "second.mp4")):
        est = Estimate(t_start=t_end - 4.0, t_end=t_end, sentiment=0.1, emotions=None, channels={},
                       edges={"homo": {"L->A": 0.1}}, branches={"L": None},
                       modalities={"face": 1.0, "audio": 0.0, "text": 0.0}, words=[], checkpoint="test")
        window.session.estimate.emit(est, name)
    qtbot.wait(50)
    window.stop_recording()
    assert [r["source"] for r in read_records(tmp_path / "rec.jsonl")] == ["first.mp4", "second.mp4"]


def test_a_recording_whose_disk_fills_up_stops_with_its_records_whole(qtbot, tmp_path):
    """A records file that cannot grow (a full disk; here the kernel's file size limit): the
    recording stops with a message naming the file, and every line in it is a whole record
    (the sink's error is no OSError since records are written whole: it had escaped the
    window's handler)."""
    from realtime.types import Estimate
    from tests.conftest import file_size_limit

    window = open_window(qtbot, Session(), source=tmp_path / "clip.mp4")
    record = tmp_path / "rec.jsonl"
    window.record_to(record)
    with file_size_limit(2000):
        for i in range(40):
            est = Estimate(t_start=i, t_end=i + 4.0, sentiment=0.1, emotions=None, channels={},
                           edges={"homo": {"L->A": 0.1}}, branches={"L": None},
                           modalities={"face": 1.0, "audio": 0.0, "text": 0.0}, words=[], checkpoint="test")
            window.session.estimate.emit(est, "clip.mp4")
        qtbot.wait(50)
    assert window.recorder is None and not window.record_button.isChecked()
    text = window.banner.text()
    assert "recording stopped: cannot write the records file" in text and "--out" not in text
    records = read_records(record)
    assert 0 < len(records) < 40 and [r["t_end"] for r in records] == [i + 4.0 for i in range(len(records))]


def test_window_plays_the_example_like_the_headless_run(qtbot, session, tmp_path, example_run):
    window = open_window(qtbot, session, pace="asap")
    record = tmp_path / "gui.jsonl"
    window.record_to(record)
    window.start()
    qtbot.waitUntil(lambda: window.estimates_seen >= 3, timeout=180_000)
    wait_finished(qtbot, window)
    assert not window.banner.isVisible(), window.banner.text()

    # the sentiment curve has a point per window
    xs, ys = window.sentiment.curve.getData()
    assert len(xs) == window.estimates_seen >= 30 and all(-3 <= y <= 3 for y in ys)
    window.stop_recording()
    records = read_records(record)
    assert len(records) == window.estimates_seen
    assert {r["source"] for r in records} == {str(EXAMPLE)}  # the recording names what was played

    # both graphs show the weights of the newest record, and their timelines hold every window
    last = records[-1]
    for kind in ("homo", "hetero"):
        shown = window.graphs[kind].weights
        assert set(shown) == set(last["edges"][kind])
        assert all(abs(shown[name] - value) < 1e-3 for name, value in last["edges"][kind].items())
        _, ys = window.edge_plots[kind].curves["V->L"].getData()
        assert len(ys) == len(records)

    # the bundled model names emotions: bars for the newest window (fused and each present
    # channel), and the leading-emotion timeline has a dot per window
    assert window.emotions.names == tuple(last["emotions"])
    fused_valence, fused_probs = window.emotions.readings["all"]
    assert all(abs(fused_probs[k] - v) < 1e-3 for k, v in last["emotions"].items())
    for label, channel in (("face", "face"), ("voice", "audio"), ("words", "text")):
        assert (window.emotions.readings[label] is None) == (channel not in last["channels"])
    assert window.sentiment.class_plot is not None
    xs, ys = window.sentiment.leading.getData()
    assert len(xs) == len(records) and list(ys[-1:]) == [list(last["emotions"]).index(last["emotion"])]

    # the transcript holds the spoken words
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    spoken = {w.strip(".,").lower() for s in meta["sentences"] for w in s["text"].split()}
    shown_words = {w.strip(".,").lower() for w in window.transcript.committed_text.split()}
    assert len(spoken & shown_words) >= 0.7 * len(spoken)

    # the GUI (asap pace) and python -m realtime give the same records for the same file
    headless, _ = example_run
    assert_same_records(records, read_records(headless))

    # the health strip shows the newest window's coverage, and the model
    assert max(r["modalities"]["face"] for r in records) > 0.99  # face in view for the whole clip
    expected = "present" if last["modalities"]["face"] >= 0.99 else "partial"
    assert window.health.states["face"] == expected
    assert f"Face {100 * last['modalities']['face']:.0f}%" in window.health.text("face")
    assert "default-" in window.health.text("model")

    window.close()
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)


def test_bad_file_shows_a_message_and_the_window_stays_usable(qtbot, session, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 20)
    window = open_window(qtbot, session, pace="asap")
    window._add_file(str(bad))
    window.start()
    wait_finished(qtbot, window, 30)
    assert window.banner.isVisible() and "not a media file" in window.banner.text()
    assert window.start_button.isEnabled()

    # the same window then plays a good file at its own speed, pauses, resumes and stops
    window._add_file(str(EXAMPLE))
    window.base = SessionOptions(source=str(EXAMPLE), pace="realtime")
    window.start()
    assert not window.banner.isVisible()
    qtbot.waitUntil(lambda: window.estimates_seen >= 2, timeout=180_000)
    held = pause_and_hold(qtbot, window, 1500)
    window.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: window.estimates_seen > held, timeout=60_000)
    window.stop()  # asks; the controls come back once the run has ended
    qtbot.waitUntil(lambda: not session.running and window.start_button.isEnabled(), timeout=10_000)
    window.close()
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)


def test_pause_holds_a_file_read_as_fast_as_it_decodes(qtbot, session, tmp_path):
    """--pace asap: Pause holds what the window shows and records as it does at real-time
    pace (21 more estimates had arrived in 4 s of pause, scored ahead of the screen, with the
    button reading Resume), and Resume gives every window, in order."""
    window = open_window(qtbot, session, pace="asap")
    window.record_to(tmp_path / "rec.jsonl")
    window.start()
    qtbot.waitUntil(lambda: window.estimates_seen >= 3, timeout=180_000)
    held = pause_and_hold(qtbot, window, 2000)
    assert held < 30, held  # the pause came in time to hold something back (38 windows in all)
    window.pause_button.setChecked(False)
    wait_finished(qtbot, window)
    assert window.estimates_seen == 38
    window.stop_recording()
    ends = [r["t_end"] for r in read_records(tmp_path / "rec.jsonl")]
    assert len(ends) == 38 and ends == sorted(ends)
    # stopped while paused: what was held is shown and recorded, not lost
    window.record_to(tmp_path / "again.jsonl")
    window.start()
    qtbot.waitUntil(lambda: window.estimates_seen >= 3, timeout=180_000)
    window.pause_button.setChecked(True)
    qtbot.wait(500)
    window.stop()
    wait_finished(qtbot, window)
    assert not window.pause_button.isChecked() and window._held == []
    window.stop_recording()
    assert len(read_records(tmp_path / "again.jsonl")) == window.estimates_seen >= 3
    window.close()


def test_a_file_without_video_says_so_in_the_video_pane(qtbot, session, media):
    # the pane said "starting..." for the whole of an audio file's run
    window = open_window(qtbot, session, source=media["audio_only_wav"], pace="asap")
    window.start()
    assert window.video.placeholder == "starting..."
    qtbot.waitUntil(lambda: "no video in 'audio_only.wav'" in window.video.placeholder, timeout=60_000)
    wait_finished(qtbot, window)
    assert window.estimates_seen > 0 and not window.video.showing_frame
    assert window.video.placeholder == "no video in 'audio_only.wav': voice and words only"
    # and a file without sound says so where the words would be (it read 'no words yet' throughout)
    window._add_file(str(media["video_no_audio"]))
    window.start()
    wait_finished(qtbot, window)
    assert window.transcript.toPlainText() == "no audio in 'video_no_audio.mp4': no words"
    window.close()


def test_camera_that_cannot_open(qtbot, session):
    # this machine has no camera and no microphone: the window says so and stays usable
    window = open_window(qtbot, session, source="7", microphone=None)
    assert window.source_box.currentData() == "7" and window.mic_box.currentData() is None
    window.start()
    wait_finished(qtbot, window, 120)
    assert window.banner.isVisible() and "camera 7 cannot be opened" in window.banner.text()
    assert window.start_button.isEnabled() and window.source_box.isEnabled()
    window.close()
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)


def test_live_devices_through_the_window_are_released_on_close(qtbot, session):
    """A camera and a microphone replaying the example (this machine has neither) through the
    window's live path; closing the window stops the run and closes both devices."""
    from realtime.sources.replay import ReplayCamera, ReplayMicrophone

    opened = {}

    def open_devices(index, microphone):
        opened["camera"], opened["mic"] = ReplayCamera(EXAMPLE), ReplayMicrophone(EXAMPLE)
        return opened["camera"], opened["mic"]

    live = Session(open_devices=open_devices)
    live._components, live._components_key = session._components, session._components_key  # loaded already
    window = MainWindow(SessionOptions(source="0"), session=live)
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.estimates_seen >= 3, timeout=60_000)
    qtbot.waitUntil(lambda: window.health.states["face"] in ("present", "partial"), timeout=10_000)
    assert "fps" in window.health.text("face") and window.session.health().face_fps > 3
    assert window.video.showing_frame, "frames reach the window"
    assert window.last.latency_ms is not None and window.last.latency_ms >= 0
    window.close()
    assert not live.running
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)
    assert opened["camera"]._frames == [], "the camera was closed"
    assert opened["mic"]._stop.is_set(), "the microphone was stopped"


def test_a_checkpoint_without_classes_still_serves_and_says_so(qtbot, tmp_path, session):
    import subprocess
    import sys

    from tests.conftest import ROOT, TALKING_FACES, with_checkpoint

    plain = tmp_path / "plain"
    proc = subprocess.run([sys.executable, "tools/init_checkpoint.py", "--out", str(plain)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    options = SessionOptions(source=str(TALKING_FACES / "face_5.mp4"), pace="asap", checkpoint=str(plain))
    plain_session = Session()  # the plain checkpoint's engine on the suite's extractors, loaded already
    plain_session._components = with_checkpoint(session._components, plain)
    plain_session._components_key = options.models_key()
    window = MainWindow(options, session=plain_session)
    qtbot.addWidget(window)
    window.show()
    record = tmp_path / "r.jsonl"
    window.record_to(record)
    window.start()
    wait_finished(qtbot, window)
    assert not window.banner.isVisible(), window.banner.text()
    window.stop_recording()
    records = read_records(record)
    assert records and all(r["emotions"] is None and r["emotion"] is None for r in records)
    assert all(reading["emotions"] is None for r in records for reading in r["channels"].values())
    assert window.sentiment.class_plot is None, "no emotion timeline without emotions"
    assert window.emotions.names == () and window.emotions.readings, "the bars say there are no emotions"
    window.close()
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)
    plain_session._components = None  # the suite's extractors: closed by their own fixture
    release(plain_session)


def test_screenshot_command(gui_screenshot_run):
    """--screenshot saves the window after 6 s of media and exits (the second lane's run,
    tests/conftest.py: python -m realtime --gui, which hands its command line to python -m gui)."""
    png, proc = gui_screenshot_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.exit_lag < EXIT_BOUND  # the window closes, its threads stop and the models close
    assert not [line for line in proc.stderr.splitlines() if NATIVE_NOISE.match(line)], proc.stderr
    assert "propagateSizeHints" not in proc.stderr, proc.stderr  # Qt's offscreen chatter (gui.__main__.QT_NOISE)
    # the command line's options the window does not take are named, as every warning is
    assert "WARNING: the GUI ignores --quiet" in proc.stderr.splitlines(), proc.stderr
    records = read_records(png.parent / "recorded.jsonl")  # its --out is the window's --record (it was ignored)
    assert records[0]["source"] == "earlier"  # --append: the record kept (the flag was ignored, the file refused)
    assert len(records) > 1 and records[1]["t_end"] == 4.0 and records[1]["source"].endswith("talking.mp4")
    with Image.open(png) as image:
        assert image.width >= 1000 and image.height >= 600
        # not a blank window: the video and the plots give many distinct colours
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000


def test_no_display_is_a_one_line_error():
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "gui", "--source", str(EXAMPLE)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "no display" in proc.stderr


def test_realtime_gui_flag_opens_the_same_window(gui_screenshot_run):
    """python -m realtime --gui opens the window (its screenshot, above) and names the options
    the window does not take."""
    png, proc = gui_screenshot_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ignores --quiet" in proc.stderr and png.stat().st_size > 10_000


@pytest.mark.parametrize("screenshot", [True, False])
def test_a_missing_file_fails_with_one_line(tmp_path, screenshot):
    """Without --screenshot the window opened, said nothing on stderr and stayed open."""
    started = time.monotonic()
    extra = ["--screenshot", tmp_path / "x.png"] if screenshot else []
    proc = cli("--source", tmp_path / "nope.mp4", *extra, module="gui", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: '{tmp_path / 'nope.mp4'}': no such file"]
    # refused before any model or window is loaded (about 1 s on 2 idle cores; loading is 10 s or more)
    assert time.monotonic() - started < 20


def test_a_recording_that_holds_records_is_refused_unless_replaced_or_appended_to(tmp_path):
    """python -m gui --record took no --overwrite or --append (and python -m realtime --gui
    named them as ignored, then refused the file)."""
    record = tmp_path / "rec.jsonl"
    record.write_text('{"t_end": 4.0}\n')
    proc = cli("--source", EXAMPLE, "--record", record, module="gui", timeout=120)  # offscreen (conftest)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: the records file '{record}' exists; pass --overwrite or "
                                                "--append"]
    assert record.read_text() == '{"t_end": 4.0}\n'
    proc = cli("--source", EXAMPLE, "--append", module="gui", timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --append is for the --record file; give one"
    proc = cli("--gui", "--source", EXAMPLE, "--overwrite", timeout=120)  # the command line names it --out
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --overwrite is for the --out file; give one"


def test_a_screenshot_in_a_format_it_cannot_write_is_refused(tmp_path):
    """--screenshot x.svg wrote PNG data under the .svg name, after a whole run."""
    shot = tmp_path / "x.svg"
    proc = cli("--source", EXAMPLE, "--screenshot", shot, module="gui", timeout=120)
    assert proc.returncode == 2 and not shot.exists()
    assert proc.stderr.strip().splitlines() == ["error: --screenshot saves .png, .jpg, .jpeg, .bmp images; "
                                                "'x.svg' names none"]


def test_the_face_rate_reaches_the_window_s_feeds(qtbot):
    """--face-fps (SessionOptions.face_fps) sets both the camera's and a file's face rate."""
    from realtime.sources.replay import ReplayCamera

    camera = ReplayCamera(EXAMPLE)
    session = Session(open_devices=lambda index, microphone: (camera, None))
    try:
        live = session._live_feed(SessionOptions(source="0", microphone=None, face_fps=4))
        assert live.video_fps == 4
    finally:
        camera.close()
    played = session._file_feed(SessionOptions(source=str(EXAMPLE), face_fps=4))
    assert played.source.options.video_fps == 4
    assert Session()._file_feed(SessionOptions(source=str(EXAMPLE))).source.options.video_fps == 10


def test_a_bad_face_rate_is_a_one_line_error():
    proc = cli("--face-fps", "0", "--source", EXAMPLE, module="gui", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --face-fps must be a number of frames per second from 1 to 60, got 0"


def test_a_screenshot_path_is_checked_before_the_models_load_and_its_folders_made(tmp_path):
    """A folder, or a path under a file, as --screenshot: one line before anything loads (it
    had loaded the models and played the clip, then said 'could not write' with no reason);
    a missing folder is made, as --record's are (it had failed the same way)."""
    (tmp_path / "notes").write_text("a file")
    for shot, message in ((tmp_path, "is a folder; give a file name"),
                          (tmp_path / "notes" / "x.png", "is a file, not a folder")):
        started = time.monotonic()
        proc = cli("--source", EXAMPLE, "--screenshot", shot, module="gui", timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 15, proc.stderr
    shot = tmp_path / "made" / "for" / "it.png"
    proc = cli("--source", EXAMPLE, "--screenshot", shot, "--after", "2", module="gui", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.format == "PNG"


def test_a_recording_is_locked_as_the_commands_outputs_are(qtbot, tmp_path):
    """python -m realtime --append onto the window's recording exited 0 while the window
    wrote over its lines (it took no lock); the refusal of a file holding records named
    --overwrite and --append, options the window does not have."""
    from realtime.outputs import OutputError, OutputLocks

    window = open_window(qtbot, Session(), source=tmp_path / "clip.mp4")
    record = tmp_path / "rec.jsonl"
    window.record_to(record)
    assert window.recorder is not None
    with OutputLocks() as other, pytest.raises(OutputError, match="is being written by another run"):
        other.acquire(record, "--out")
    window.stop_recording()
    assert not record.exists()  # nothing was recorded: no empty file is left, as the command line leaves none
    window.record_to(tmp_path / "made" / "for" / "it.jsonl")
    window.stop_recording()
    assert not (tmp_path / "made").exists()  # nor the folders the recording made
    with OutputLocks() as other:
        other.acquire(record, "--out")  # free once the recording stops
    record.write_text('{"t_end": 4.0}\n')
    window.record_to(record)
    assert window.recorder is None and window.banner.isVisible()
    text = window.banner.text()
    assert "exists; record to another file" in text and "--overwrite" not in text and "--append" not in text
    window.record_to(tmp_path / "records.json")  # the window has no --out: its errors name the file its way
    text = window.banner.text()
    assert window.recorder is None and "the records file" in text and "--out" not in text


def test_plots_and_screenshots_are_written_in_the_format_their_name_says(qtbot, tmp_path):
    """A --screenshot named .jpg held PNG data."""
    window = open_window(qtbot, Session(), source=tmp_path / "clip.mp4")
    for name, kind in (("p.jpg", "JPEG"), ("p.jpeg", "JPEG"), ("p.png", "PNG"), ("plain", "PNG")):
        assert window.save_plots(tmp_path / name)
        saved = tmp_path / (name if "." in name else f"{name}.png")  # a name without a suffix gets .png
        with Image.open(saved) as image:
            assert image.format == kind, name
    # another suffix is refused: its data were PNG under, say, an .svg name
    assert not window.save_plots(tmp_path / "p.svg") and not (tmp_path / "p.svg").exists()
    assert "names none" in window.statusBar().currentMessage()


def test_a_run_started_in_reply_to_the_last_ones_finished_starts(qtbot, session, media):
    """``finished`` comes from the run's own thread a moment before that thread ends: a start
    in reply (a script chaining runs; a click on Start as it comes back) had been refused
    with 'a run is in progress'. Replied to directly, in the run's thread, it always was."""
    from PyQt6.QtCore import Qt

    ended, refused = [], []

    def next_run(summary) -> None:
        ended.append(summary)
        if len(ended) == 1:
            try:
                session.start(SessionOptions(source=str(media["audio_only_wav"]), pace="asap"))
            except RuntimeError as error:
                refused.append(str(error))

    session.finished.connect(next_run, Qt.ConnectionType.DirectConnection)
    try:
        session.start(SessionOptions(source=str(media["audio_only_wav"]), pace="asap"))
        qtbot.waitUntil(lambda: len(ended) == 2 or bool(refused), timeout=120_000)
    finally:
        session.finished.disconnect(next_run)
    assert refused == [] and ended[1].windows == ended[0].windows > 0
    qtbot.waitUntil(lambda: not session.alive, timeout=10_000)


def test_a_new_run_starts_on_clear_panes_and_a_stop_does_not_wait_for_the_models(qtbot, session, media):
    """A demo presenter's probe: the last run's emotions, curves and graph weights stayed on
    screen into the next run (a smiling face shown 'fearful' until its first window); Stop
    while the models loaded froze the window for 6 s; the spin boxes cut --window 30 to 20
    and --hop 0.05 to 0.1 in silence; a run's warnings went to stderr only."""
    window = open_window(qtbot, session, source=media["audio_only_wav"], pace="asap", window=30.0, hop=0.05)
    assert (window.window_spin.value(), window.hop_spin.value()) == (30.0, 0.05)  # the command line's ranges
    window.window_spin.setValue(4.0)
    window.hop_spin.setValue(0.5)
    window.start()
    wait_finished(qtbot, window)
    assert window.estimates_seen and window.emotions.readings and window.sentiment.curve.getData()[0] is not None
    # the run's warnings stay on screen, in the window's own strip
    assert "has no video stream" in window.notes.text() and window.notes.isVisible()

    # a fresh session (its models not loaded): Stop returns at once, the run ends once they load
    fresh = Session()
    window2 = MainWindow(SessionOptions(source=str(EXAMPLE), pace="asap"), session=fresh)
    qtbot.addWidget(window2)
    window2.history.add(window.last)  # as if a run had shown a window
    window2.last = window.last
    window2._redraw(force=True)
    assert window2.emotions.readings and window2.sentiment.curve.getData()[0] is not None
    window2.start()
    assert not window2.emotions.readings and window2.sentiment.curve.getData()[0] is None  # cleared at once
    assert not window2.notes.isVisible()
    started = time.monotonic()
    window2.stop()
    assert time.monotonic() - started < 1.0 and not window2.start_button.isEnabled()
    qtbot.waitUntil(lambda: not fresh.running, timeout=120_000)
    qtbot.wait(100)
    assert window2.start_button.isEnabled() and window2.estimates_seen == 0
    assert window2.video.placeholder == "stopped" and window2.statusBar().currentMessage() == "stopped"
    window2.close()
    release(fresh)
    window.close()


def test_one_window_is_drawn_as_a_point_and_one_that_is_not_a_number_is_not(qtbot):
    """A run of one window drew no curve (a line of one point); its symbol on a value that is
    not a number made pyqtgraph's bounds NaN (an error under the suite's warnings filter)."""
    import math
    from types import SimpleNamespace

    from gui.widgets import EdgeTimeline, History, SentimentPlot

    plot, edges = SentimentPlot(), EdgeTimeline("homo", "edges")
    qtbot.addWidget(plot)
    qtbot.addWidget(edges)
    for value, drawn in ((0.5, "o"), (math.nan, None)):
        history = History()
        history.add(SimpleNamespace(t_end=4.0, sentiment=value, edges={"homo": {"L->A": value}}, emotions=None,
                                    emotion=None))
        plot.redraw(history)
        edges.redraw(history)
        assert plot.curve.opts["symbol"] == drawn and edges.curves["L->A"].opts["symbol"] == drawn
        plot.grab()  # painted: bounds of a NaN point would raise here
        edges.grab()


def test_a_signal_during_a_paint_closes_the_window_after_the_paint(tmp_path):
    """Ctrl-C's handler runs at the next bytecode, which may be inside a paintEvent; it called
    quit() there, and Qt 6's quit() closes the windows at once (the run stopped, queued events
    delivered) under the painter: python -m gui crashed with SIGSEGV about 1 Ctrl-C in 6.
    In a process of its own: quitting the suite's QApplication would end pyqtgraph's views
    (its aboutToQuit clean-up) for every later test."""
    script = tmp_path / "paint.py"
    script.write_text(textwrap.dedent("""
        import json, os, signal, sys
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication, QWidget
        from gui.__main__ import _closing_on_signals

        events = []

        class Painted(QWidget):
            def paintEvent(self, event):
                events.append("paint")
                if "signal" not in events:
                    events.append("signal")
                    os.kill(os.getpid(), signal.SIGINT)  # the handler runs on one of the next bytecodes
                    sum(range(1000))
                    events.append("painted")

            def closeEvent(self, event):
                events.append("close")
                super().closeEvent(event)

        app = QApplication(sys.argv[:1])
        widget = Painted()
        result = {"code": 0}
        QTimer.singleShot(20_000, app.quit)  # a bound if the signal never ends the loop
        with _closing_on_signals(app, result):
            widget.show()
            app.exec()
        print(json.dumps(events))
        sys.exit(result["code"])
    """))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130, proc.stderr[-3000:]
    events = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "close" in events and events.index("close") > events.index("painted"), events
