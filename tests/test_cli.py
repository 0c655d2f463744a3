"""python -m realtime end to end on real media, with the bundled default model."""

import csv
import json

import numpy as np
import pytest

from realtime.logs import NATIVE_NOISE
from tests.conftest import EXAMPLE, EXIT_BOUND, SIGNAL_EXIT_BOUND, TALKING_FACES, read_records, run_main, same_record

EDGE_NAMES = {"V->L", "A->L", "L->V", "A->V", "L->A", "V->A"}


def check_record(rec):
    """The record schema (docs/RECORDS.md)."""
    assert set(rec) >= {"t_start", "t_end", "sentiment", "emotion", "emotions", "channels", "edges", "branches",
                        "modalities", "words", "checkpoint"}
    assert rec["t_end"] > rec["t_start"] >= -1e-9
    assert -3.0 <= rec["sentiment"] <= 3.0
    if rec["emotions"] is not None:  # the bundled model names the seven emotions
        assert abs(sum(rec["emotions"].values()) - 1) < 1e-3
        assert rec["emotion"] == max(rec["emotions"], key=rec["emotions"].get)
    # a channel reads only when it was present in the window
    assert set(rec["channels"]) == {c for c, share in rec["modalities"].items() if share > 0}
    for reading in rec["channels"].values():
        assert -3.0 <= reading["sentiment"] <= 3.0
        if rec["emotions"] is not None:
            assert list(reading["emotions"]) == list(rec["emotions"])
            assert abs(sum(reading["emotions"].values()) - 1) < 1e-3
    # edges only among the modalities present in the window, and the record says which
    present = [m for m, channel in (("L", "text"), ("A", "audio"), ("V", "face")) if rec["modalities"][channel] > 0]
    among = present if len(present) >= 2 else []
    assert rec["edges_among"] == among
    for kind in ("homo", "hetero"):
        edges = rec["edges"][kind]
        assert set(edges) == {f"{t}->{s}" for t in among for s in among if t != s} <= EDGE_NAMES
        assert all(v >= 0 for v in edges.values())
        assert not edges or abs(sum(edges.values()) - 1) < 1e-3
    assert set(rec["modalities"]) == {"face", "audio", "text"}
    assert all(0.0 <= v <= 1.0 for v in rec["modalities"].values())
    assert all(v is None or -3 <= v <= 3 for v in rec["branches"].values())
    assert isinstance(rec["words"], list) and isinstance(rec["checkpoint"], str)


def test_csv_keeps_every_column_when_channels_are_absent(media, tmp_path, components, capsys, caplog):
    """A table has one set of columns: emotions and every channel's reading, empty where absent."""
    import csv

    out = tmp_path / "face.csv"
    proc = run_main(components, capsys, caplog, "--source", media["video_no_audio"], "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    names = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    for channel in ("face", "audio", "text"):
        assert {f"channels.{channel}.emotions.{n}" for n in names} <= set(rows[0])
    for row in rows:
        assert abs(sum(float(row[f"emotions.{n}"]) for n in names) - 1) < 1e-3
        assert row["emotion"] in names and row["channels.face.emotion"] in names
        assert row["channels.audio.emotion"] == row["channels.text.emotions.happy"] == ""


def _one_error_line(proc, fragment):
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_bad_input_one_line_errors(media, tmp_path, capsys, caplog, bad_checkpoint_run):
    def run(*args):  # these stop before any model is needed
        return run_main(None, capsys, caplog, *args)

    _one_error_line(run("--source", tmp_path / "absent.mp4", "--out", tmp_path / "x.jsonl"), "no such file")
    _one_error_line(run("--source", media["not_media"], "--out", tmp_path / "x.jsonl"), "not a media file")
    _one_error_line(run("--source", media["truncated"], "--out", tmp_path / "x.jsonl"), "truncated")
    _one_error_line(run("--source", EXAMPLE, "--device", "tpu"), "unknown --device")
    _one_error_line(run("--source", EXAMPLE, "--out", "/proc/nope/x.jsonl"), "cannot write")
    # and in a process of its own (the second lane's, tests/conftest.py): one line on stderr,
    # nothing else (no native chatter either)
    out, proc = bad_checkpoint_run
    _one_error_line(proc, "missing checkpoint.json")
    assert proc.exit_lag < EXIT_BOUND and not out.exists()


@pytest.mark.parametrize("key,present,absent", [
    ("video_no_audio", "face", "audio"),
    ("audio_only_wav", "audio", "face"),
    ("no_face", "audio", "face"),
    ("silence", "face", "audio"),
    ("noise", "face", "audio"),
])
def test_runs_on_the_modalities_it_has(media, tmp_path, key, present, absent, components, capsys, caplog):
    out = tmp_path / "r.jsonl"
    proc = run_main(components, capsys, caplog, "--source", media[key], "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_records(out)
    assert records
    for rec in records:
        check_record(rec)
    assert max(r["modalities"][present] for r in records) > 0.5
    assert all(r["modalities"][absent] == 0 for r in records)
    if key in ("video_no_audio", "silence", "noise"):
        assert all(r["words"] == [] for r in records)
    if key == "video_no_audio":
        assert "no audio stream" in proc.stderr
    assert ("no face found in its video" in proc.stderr) == (key == "no_face"), proc.stderr
    if key in ("video_no_audio", "noise"):
        # a real smiling face, silent or over noise that is no voice: the face alone reads
        # happy and positive (noise taken for a voice made it fearful)
        assert [set(r["channels"]) for r in records] == [{"face"}] * len(records)
        assert sum(r["emotion"] == "happy" for r in records) > 0.8 * len(records)
        assert sum(r["sentiment"] for r in records) / len(records) > 0.5


def test_windows_with_nothing_to_read_are_left_out_of_the_summary(media, tmp_path, components, capsys, caplog):
    """Loud noise alone: no face, no voice, no word in any window. The records keep the model's
    reading of nothing (its prior), but the summary counts those windows apart and reads no
    mean sentiment and no leading emotion into them (it read "neutral 100%", sentiment -0.39)."""
    out, summary_path = tmp_path / "r.jsonl", tmp_path / "s.json"
    ran = run_main(components, capsys, caplog, "--source", media["noise_only_wav"], "--out", out,
                   "--summary", summary_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    records = read_records(out)
    assert records and all(not any(r["modalities"].values()) for r in records)
    summary = json.loads(summary_path.read_text())
    assert summary["empty_windows"] == summary["windows"] == len(records)
    assert summary["mean_sentiment"] is None and summary["leading_emotions"] == {}
    windows = f"{len(records)} window{'' if len(records) == 1 else 's'}"
    assert f"{windows} ({len(records)} with nothing to read" in ran.stdout + ran.stderr


def test_face_fps_sets_how_many_frames_are_analysed(tmp_path, components, capsys, caplog):
    """--face-fps 4 analyses 4 frames a second of the example: half the model's 8 face steps
    a second hold a face (the rest are masked), where the default fills every step; the same
    windows come out with the same words."""
    runs = {}
    for fps in (None, "4"):
        out = tmp_path / f"r{fps}.jsonl"
        extra = ("--face-fps", fps) if fps else ()
        proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", out, *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[fps] = read_records(out)
    assert [r["words"] for r in runs[None]] == [r["words"] for r in runs["4"]]
    inner = slice(0, -1)  # the last window may reach past the media's end, where no frame is
    assert min(r["modalities"]["face"] for r in runs[None][inner]) > 0.9
    assert all(0.4 <= r["modalities"]["face"] <= 0.6 for r in runs["4"][inner]), [r["modalities"] for r in runs["4"]]


def test_a_low_frame_rate_video_is_read_to_its_last_frame_s_end(tmp_path, components, capsys, caplog):
    """A real face at one frame a second for 5 s, no audio: its media lasts 5 s, not until its
    last frame's start (4 s: that frame's second was in no window, its face never read)."""
    from realtime.synth_media import astronaut_face, moving_face, write_av

    clip, out, summary = tmp_path / "slow.mp4", tmp_path / "r.jsonl", tmp_path / "s.json"
    write_av(clip, None, moving_face(*astronaut_face(), 5, 1, (320, 240)), fps=1, size=(320, 240))
    ran = run_main(components, capsys, caplog, "--source", clip, "--out", out, "--summary", summary)
    assert ran.returncode == 0, ran.stderr[-2000:]
    records = read_records(out)
    assert json.loads(summary.read_text())["media_seconds"] == 5.0
    assert records[-1]["t_end"] >= 5.0
    last_frame = [r for r in records if r["t_start"] <= 4.0 < r["t_end"]]
    assert last_frame and all(r["modalities"]["face"] > 0 for r in last_frame)


def test_a_file_cut_short_runs_as_far_as_it_goes_and_says_so(media, tmp_path, components, capsys, caplog):
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    ran = run_main(components, capsys, caplog, "--source", media["truncated_mkv"], "--out", out, "--summary", summary)
    assert ran.returncode == 0 and read_records(out)
    warnings = json.loads(summary.read_text())["warnings"]
    assert len(warnings) == 1 and "the media ends at" in warnings[0] and "cut short" in ran.stderr
    assert ran.stderr.count("its container declares") == 1, ran.stderr  # said once, not again at the end


def test_the_summary_keeps_every_warning_the_run_gave_once(media, tmp_path, components, capsys, caplog):
    """An audio file's missing video and a hop that leaves gaps were said on stderr and left
    out of the --summary JSON, which held only the end-of-run findings."""
    clip = media["audio_only_wav"]
    summary = tmp_path / "s.json"
    ran = run_main(components, capsys, caplog, "--source", clip, "--summary", summary, "--window", "2", "--hop", "3")
    assert ran.returncode == 0, ran.stderr[-2000:]
    warnings = json.loads(summary.read_text())["warnings"]
    assert any("has no video stream" in w for w in warnings), warnings
    assert any("1 s between windows is never analysed" in w for w in warnings), warnings
    assert len(warnings) == len(set(warnings))
    assert ran.stderr.count("has no video stream") == 1  # said as it happened, not again at the end


def test_a_hop_longer_than_the_window_is_said_once_a_command_and_kept_by_every_run(media, tmp_path, components,
                                                                                   capsys, caplog):
    """The gap warning was said once per process: a folder run's terminal once (as now), but a
    second file's summary, the window's next run and a Recognizer's next analysis never had it."""
    out = tmp_path / "r.jsonl"
    ran = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", out, "--window", "2", "--hop", "3")
    assert ran.returncode == 0 and ran.stderr.count("1 s between windows is never analysed") == 1, ran.stderr
    assert [r["t_end"] - r["t_start"] for r in read_records(out)][:2] == [2.0, 2.0]
    again = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", out, "--window", "2", "--hop", "3",
                     "--overwrite")  # the next command in this process (a Recognizer's next analysis goes so)
    assert again.returncode == 0 and again.stderr.count("1 s between windows is never analysed") == 1
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        (folder / name).write_bytes(media["audio_only_wav"].read_bytes())
    summary = tmp_path / "s.json"
    ran = run_main(components, capsys, caplog, "--source", folder, "--out", tmp_path / "out", "--summary", summary,
                   "--window", "2", "--hop", "3", "--quiet")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stderr.count("1 s between windows is never analysed") == 1, ran.stderr  # the terminal: once
    assert ran.stderr.count("has no video stream") == 2  # said of each file, its name in it
    for each in json.loads(summary.read_text()):  # each file's summary keeps it
        assert any("1 s between windows is never analysed" in w for w in each["warnings"]), each


def test_a_ray_workers_warnings_before_a_failure_reach_the_driver(media, components, monkeypatch, caplog):
    """A file that failed on a Ray worker came back as its error alone: what the worker had
    warned of before (on the worker's log, which stays there) was lost."""
    import json
    import logging

    import realtime.cli as cli

    def fails_part_way(path, out, args, comps, summary, sinks) -> None:  # a run that breaks after a warning
        logging.getLogger("realtime.test").warning("'%s': its audio skips from 6.0 s to 11.0 s", path)
        raise RuntimeError("the pipeline broke")

    monkeypatch.setattr(cli, "_run_file", fails_part_way)
    worker = object.__new__(cli.FolderWorker)  # its models: the suite's, already loaded
    worker.args, worker.comps = cli.build_parser().parse_args(["--source", str(media["audio_only_wav"])]), components
    outcome = cli.analyse_file(4, str(media["audio_only_wav"]), worker)
    assert outcome.index == 4 and outcome.error == "RuntimeError: the pipeline broke"
    warned = json.loads(outcome.payload)["warnings"]
    assert warned == [f"'{media['audio_only_wav']}': its audio skips from 6.0 s to 11.0 s"]
    caplog.clear()
    cli.say_worker_warnings(media["audio_only_wav"], warned + ["no face found in its video"])
    said = [r.getMessage() for r in caplog.records]
    assert said == [warned[0], f"{media['audio_only_wav']}: no face found in its video"]


def test_folder_source(media, tmp_path, components, capsys, caplog):
    folder = tmp_path / "videos"
    folder.mkdir()
    for key in ("audio_only_wav", "video_no_audio"):
        (folder / media[key].name).write_bytes(media[key].read_bytes())
    (folder / "broken.mp4").write_text("not media")
    proc = run_main(components, capsys, caplog, "--source", folder, "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 3, proc.stderr  # some files failed (issue 17): the others are done
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audio_only.jsonl", "video_no_audio.jsonl"]
    assert "broken.mp4" in proc.stderr


def test_plot_path_is_checked_before_any_model_loads(components, capsys, caplog, tmp_path):
    ran = run_main(components, capsys, caplog, "--source", EXAMPLE, "--plot", tmp_path / "run.txt")
    assert ran.returncode == 2 and "--plot" in ran.stderr and ".png" in ran.stderr
    (tmp_path / "notes").write_text("a file, not a folder")
    ran = run_main(components, capsys, caplog, "--source", EXAMPLE, "--plot", tmp_path / "notes" / "run.png")
    assert ran.returncode == 2 and "--plot" in ran.stderr and "is a file, not a folder" in ran.stderr


def test_missing_output_folders_are_made_and_a_refused_run_leaves_none(components, capsys, caplog, tmp_path):
    """--out, --summary and --plot alike: a folder that does not exist yet is made; a run
    refused once its outputs are held (here: no GPU for --device cuda) removes what it made."""
    new = tmp_path / "new"
    outputs = ("--out", new / "a" / "r.jsonl", "--summary", new / "b" / "s.json", "--plot", new / "c" / "p.png")
    through = ("--out", new / "x" / ".." / "a" / "r.jsonl", *outputs[2:])  # the kernel makes x too
    ran = run_main(None, capsys, caplog, "--source", EXAMPLE, *through, "--device", "cuda")
    if ran.returncode == 0:
        pytest.skip("a CUDA GPU is present here")
    assert ran.returncode == 2 and not new.exists(), sorted(map(str, tmp_path.rglob("*")))
    ran = run_main(components, capsys, caplog, "--source", EXAMPLE, *outputs, "--duration", "5")
    assert ran.returncode == 0, ran.stderr
    assert all(new.joinpath(*part).stat().st_size > 0 for part in (("a", "r.jsonl"), ("b", "s.json"), ("c", "p.png")))


# ---- the README example, run once per session (tests/conftest.py starts it as the session
# starts, in a process of its own); the tests above run in this process meanwhile ----------
def test_example_video_records(example_run):
    out, proc = example_run
    records = read_records(out)
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    # windows every 0.5 s from 4 s until one covers the end (AAC padding may add ~50 ms)
    assert records[0]["t_end"] == 4.0
    assert records[-1]["t_end"] >= meta["duration"] and records[-2]["t_end"] < meta["duration"] + 0.1
    for rec in records:
        check_record(rec)
        assert rec["modalities"]["face"] > 0.8  # a face in every window (the last one runs past the end)
        assert rec["source"] == str(EXAMPLE) and list(rec)[-1] == "source"  # the input, as given, last
    ends = [r["t_end"] for r in records]
    assert ends == sorted(ends)
    assert "windows" in proc.stderr and "real-time factor" in proc.stderr


def test_example_run_is_quiet_and_exits_promptly(example_run):
    """The README's example: only our own lines on stderr, and the process gone soon after its summary."""
    _, proc = example_run
    assert proc.exit_lag is not None and proc.exit_lag < EXIT_BOUND, proc.exit_lag
    noise = [line for line in proc.stderr.splitlines() if NATIVE_NOISE.match(line) or "W0000" in line]
    assert not noise, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(str(EXAMPLE)), proc.stderr  # the summary line is the last


def test_words_match_the_spoken_sentences(example_run):
    out, _ = example_run
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    heard = set()
    for rec in read_records(out):
        heard |= {w.lower().strip(".,!?") for w in rec["words"]}
    spoken = {w.lower().strip(".,!?") for s in meta["sentences"] for w in s["text"].split()}
    assert len(heard & spoken) >= 0.8 * len(spoken), (sorted(spoken - heard), sorted(heard - spoken))


def test_words_move_valence_the_way_a_person_reads_them(example_run):
    """The example says two positive and two negative sentences over one smiling photograph:
    the words' own reading follows each sentence's sign, and the fused valence drops well
    below its level of the positive sentences wherever the words turn negative (the smile,
    present throughout, keeps it from reading the words alone)."""
    out, _ = example_run
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    records = read_records(out)
    fused: dict[int, list[float]] = {1: [], -1: []}
    for sentence in meta["sentences"]:
        mid = 0.5 * (sentence["start"] + sentence["end"])
        nearest = min(records, key=lambda r: abs(0.5 * (r["t_start"] + r["t_end"]) - mid))
        words = nearest["channels"]["text"]["sentiment"]
        assert words * sentence["sign"] > 0, (sentence["text"], words)
        fused[sentence["sign"]] += [r["sentiment"] for r in records
                                    if sentence["start"] <= 0.5 * (r["t_start"] + r["t_end"]) <= sentence["end"]]
    assert fused[1] and fused[-1]
    assert np.mean(fused[1]) - np.mean(fused[-1]) > 1.5, fused


def test_summary_json_matches_the_records(example_run):
    out, proc = example_run
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    records = read_records(out)
    assert summary["windows"] == len(records)
    assert summary["source"].endswith("talking.mp4") and not summary["interrupted"]
    mean = sum(r["sentiment"] for r in records) / len(records)
    assert abs(summary["mean_sentiment"] - mean) < 1e-2 and summary["empty_windows"] == 0
    assert abs(summary["coverage"]["face"] - sum(r["modalities"]["face"] for r in records) / len(records)) < 1e-2
    assert 0 < summary["real_time_factor"] < 10 and summary["media_seconds"] > 22
    # the models' loading is said beside the run's own time, not hidden in it (a new user timed
    # a 5 s clip at 10 s where the summary said 1 s)
    assert summary["load_seconds"] > 0
    assert f"the models loaded in {summary['load_seconds']:.1f} s before" in proc.stderr
    # a file is read in order: no sample reaches the windows late or twice
    assert summary["dropped"]["late"] == 0 and summary["dropped"]["duplicate"] == 0


@pytest.mark.slow
def test_two_runs_give_identical_files(example_run, tmp_path, components, capsys, caplog):
    """A second run, in this process on models that have already run: the same records (every
    word, name and count; numbers to their last written digit, see ``same_record``)."""
    out, _ = example_run
    again = tmp_path / "b.jsonl"
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", again, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = [json.loads(line) for line in out.read_text().splitlines()]
    second = [json.loads(line) for line in again.read_text().splitlines()]
    assert len(first) == len(second) == 38  # to 22.5 s, where its audio ends (its codec's padding left out)
    for i, (ours, theirs) in enumerate(zip(second, first)):
        same_record(ours, theirs, f"record {i}")


@pytest.mark.slow
def test_csv_output_and_existing_out_is_refused(tmp_path, example_run, components, capsys, caplog):
    out, _ = example_run
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", out)
    assert proc.returncode == 2 and "exists" in proc.stderr and "--overwrite" in proc.stderr
    csv_out, summary = tmp_path / "r.csv", tmp_path / "r.summary.json"
    proc = run_main(components, capsys, caplog, "--source", TALKING_FACES / "face_5.mp4", "--out", csv_out,
                    "--summary", summary, "--quiet")  # a 5 s camera clip: a row per window as well as 22 s
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("t_start,t_end,sentiment") and "edges.homo.L->A" in lines[0]
    assert len(lines) == json.loads(summary.read_text())["windows"] + 1 >= 3
    assert "load_seconds" not in json.loads(summary.read_text())  # models loaded before, by the caller
    assert lines[0].endswith(",source") and lines[1].endswith(f",{TALKING_FACES / 'face_5.mp4'}")

    # appended: another run's rows name their own input, under the file's one header
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", csv_out, "--append", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(csv_out.read_text().splitlines()))
    assert len(rows) == len(lines) - 1 + 38 and csv_out.read_text().count("t_start,t_end") == 1
    assert {r["source"] for r in rows} == {str(TALKING_FACES / "face_5.mp4"), str(EXAMPLE)}

    # a table whose header has other columns (another checkpoint's, or one written before
    # records named their input): the rows follow its header, and the run says what it left out
    other = tmp_path / "other.csv"
    header = [c for c in lines[0].split(",") if c not in ("source", "emotions.happy")]
    other.write_text(",".join(header) + "\n")
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", other, "--append", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of them are left out (emotions.happy, source)" in proc.stderr, proc.stderr[-2000:]
    table = list(csv.reader(other.read_text().splitlines()))
    assert table[0] == header and len(table) == 39 and {len(row) for row in table} == {len(header)}

    # a table that is not one of records: one line, before anything runs, and it stays as it was
    notes = tmp_path / "notes.csv"
    notes.write_text("name,score\nalice,3\n")
    proc = run_main(components, capsys, caplog, "--source", EXAMPLE, "--out", notes, "--append", "--quiet")
    assert proc.returncode == 2 and "its first line is not a records header" in proc.stderr, proc.stderr
    assert notes.read_text() == "name,score\nalice,3\n"


def test_plot_draws_the_run(example_run, tmp_path):
    """--plot's picture: emotions stacked over time in the emotions' colours, valence, channels."""
    from PyQt6.QtGui import QColor, QImage

    from realtime.plot import EMOTION_COLOURS, draw_run

    records = read_records(example_run[0])
    path = draw_run(records, tmp_path / "run.png", title="example")
    image = QImage(str(path))
    assert not image.isNull() and (image.width(), image.height()) == (1400, 620)
    # the emotion band (rows 40-300) is painted in the colour of the emotions the records hold
    band = {image.pixelColor(x, y).name() for x in range(100, 1250, 7) for y in range(60, 300, 7)}
    lead = max(records[len(records) // 2]["emotions"].items(), key=lambda kv: kv[1])[0]
    assert QColor(EMOTION_COLOURS[lead]).name() in band
    # the time axis starts with the first window's column: no blank stretch before it
    assert image.pixelColor(92, 200).name() != "#ffffff"
    assert draw_run([], tmp_path / "empty.png").is_file(), "a run without windows still gets a picture"


def test_a_plot_into_a_pipe_leaves_the_pipe(example_run, tmp_path):
    """--plot naming a pipe (or a device, or a link to one): the picture goes into it, and it
    stays a pipe (the rename that writes a picture whole had put a file in its place)."""
    import os
    import stat
    import threading

    from realtime.plot import draw_run

    fifo = tmp_path / "plot.png"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)  # as a viewer would
    reader.start()
    draw_run(read_records(example_run[0]), fifo, title="example")
    reader.join(timeout=30)
    assert got and got[0].startswith(b"\x89PNG") and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_time_ticks_are_round():
    from realtime.plot import tick_step

    assert [tick_step(s) for s in (0.3, 7, 18.5, 22.5, 300, 1800)] == [0.05, 1, 2, 5, 50, 200]


@pytest.mark.slow
def test_sigterm_keeps_finished_windows(sigterm_run):
    out, proc = sigterm_run  # the example at wall-clock pace, SIGTERM after 3 windows (tests/conftest.py)
    assert proc.exit_lag < SIGNAL_EXIT_BOUND  # finish() fails first if it is not
    records = read_records(out)  # every line parses: the file is valid
    assert 3 <= len(records) < 37
    assert proc.returncode == 130
    for rec in records:
        check_record(rec)
        assert rec["latency_ms"] >= 0


@pytest.mark.slow
def test_a_window_closing_live_has_its_voice_to_its_end(sigterm_run, example_run):
    """A window closes live 0.05 s after its end; its voice frames come in 0.1 s blocks
    (realtime.features.acoustic.LIVE_BLOCK), so it lacks at most its last step or two of
    what the same window of a file run holds. 1 s blocks left up to its last second out: the
    first three windows 0.225, 0.125 and 0.25 short."""
    live = read_records(sigterm_run[0])
    files = {round(r["t_end"], 2): r for r in read_records(example_run[0])}
    assert len(live) >= 3
    short = [files[round(r["t_end"], 2)]["modalities"]["audio"] - r["modalities"]["audio"] for r in live]
    assert max(short) <= 0.15 and sum(short) / len(short) <= 0.05, short
