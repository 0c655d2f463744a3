"""Labelled videos -> features -> model -> served: the train-to-serve round trip."""

import csv
import json
import shutil

import pytest

from models.data import DataError
from realtime.logs import NATIVE_NOISE
from tests.conftest import EXIT_BOUND, run_main

SENTENCES = [
    ("I love this, it is wonderful.", 2.5), ("What a great and happy day.", 2.2),
    ("This is a beautiful gift, thank you.", 2.0), ("I am so glad and excited.", 2.4),
    ("Everything went perfectly today.", 1.8), ("This is awful and I hate it.", -2.5),
    ("What a terrible, sad mess.", -2.2), ("I feel miserable and angry.", -2.4),
    ("That was a horrible failure.", -2.0), ("I am disgusted and upset.", -1.9),
]


def make_corpus(folder, make_clip) -> tuple:
    """clips/spk<k>/clip<i>.mp4 for the sentences, made by ``make_clip(path, i, text)``, and labels.csv."""
    clips = folder / "clips"
    clips.mkdir()
    rows = []
    for i, (text, label) in enumerate(SENTENCES):
        speaker = f"spk{i % 5}"
        (clips / speaker).mkdir(exist_ok=True)
        name = f"{speaker}/clip{i}.mp4"
        make_clip(clips / name, i, text)
        split = "test" if i in (0, 5) else "valid" if i in (1, 6) else "train"
        rows.append([name, label, split])
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "split"], *rows])
    return clips, labels


@pytest.fixture(scope="module")
def corpus(extraction_run):
    """Real talking clips: espeak-ng speech over a real face (made in tests/conftest.py's
    second lane, beside the tests before these): (clips folder, labels.csv)."""
    return extraction_run[:2]


@pytest.fixture
def layout(tmp_path):
    """The corpus's folders and labels with empty clips: all that label parsing and splits read."""
    return make_corpus(tmp_path, lambda path, i, text: path.write_bytes(b""))


def extract_main(capsys, *args):
    """python -m realtime.extract in this process (for its argument and label checks): (code, stderr)."""
    from realtime.extract import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def extraction(extraction_run):
    """python -m realtime.extract on the corpus, killed (SIGKILL) once 3 clips are cached, then
    run again to the end: one extraction serves the resume test and the round trip."""
    return extraction_run[2:]


@pytest.mark.slow
def test_extract_train_evaluate_serve(corpus, extraction, tmp_path, capsys, caplog):
    clips, _ = corpus
    features, _, killed, proc, _ = extraction
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"10 clips extracted ({len(killed['cached'])} of them from the cache), 0 failed" in proc.stderr
    assert proc.exit_lag < EXIT_BOUND  # its MediaPipe graph and Whisper closed, nothing left hanging
    assert not [line for line in proc.stderr.splitlines() if NATIVE_NOISE.match(line)], proc.stderr

    from models.data import load_dataset
    from realtime.featureset import FEATURE_SET_NAME, FeatureSpec

    data = load_dataset(features)
    assert data.feature_set == FEATURE_SET_NAME and data.dims == FeatureSpec().dims
    train = data.splits["train"]
    # clips are shorter than a 4 s window: steps outside the clip are masked
    assert len(train) == 6 and train.masks["V"].max(1).min() == 1 and train.masks["V"].mean() > 0.5
    assert train.masks["L"].sum(1).min() > 3

    # training, scoring and serving in this process: what they make of the features is under test
    from models.evaluate import main as evaluate_main
    from models.train import main as train_main

    model = tmp_path / "model"
    capsys.readouterr()
    assert train_main(["--data", str(features), "--out", str(model), "--config", "small", "--epochs", "2",
                       "--batch-size", "4", "--device", "cpu", "--quiet"]) == 0, capsys.readouterr().err[-2000:]
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(model), "--data", str(features)]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2

    out = tmp_path / "served.jsonl"
    ran = run_main(None, capsys, caplog, "--source", clips / "spk0" / "clip0.mp4", "--checkpoint", model, "--out", out)
    assert ran.returncode == 0, ran.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and records[0]["checkpoint"].startswith("dmd-student-")


def test_split_by_speaker_without_a_split_column(layout):
    from realtime.extract import assign_splits, read_labels

    clips, labels = layout
    rows = list(csv.reader(labels.read_text().splitlines()))
    plain = labels.with_name("plain.csv")
    with plain.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"]] + [r[:2] for r in rows[1:]])
    parsed = read_labels(clips, plain)
    splits = assign_splits(parsed)
    by_speaker = {}
    for clip, split in zip(parsed, splits):
        by_speaker.setdefault(clip.group, set()).add(split)
    assert all(len(s) == 1 for s in by_speaker.values()), by_speaker

    # a speaker column says who speaks where names cannot (RAVDESS's actor is the last field
    # of '03-01-06-01-02-01-12.mp4'; CREMA-D's '1001_DFA_ANG_XX' would group by '1001_DFA_ANG')
    named = labels.with_name("speakers.csv")
    with named.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "speaker"]] + [r[:2] + [f"actor{i % 2}"]
                                                                   for i, r in enumerate(rows[1:])])
    parsed = read_labels(clips, named)
    assert [c.group for c in parsed] == [f"actor{i % 2}" for i in range(len(parsed))]
    splits = assign_splits(parsed)
    assert len({s for c, s in zip(parsed, splits) if c.group == "actor0"}) == 1
    named.write_text(named.read_text().replace(",actor1", ",", 1))
    with pytest.raises(DataError, match="row 3: the speaker column is empty"):
        read_labels(clips, named)


@pytest.mark.slow
def test_interrupted_extraction_resumes(extraction):
    _, cache, killed, resumed, exits = extraction
    done = killed["cached"]
    assert 3 <= len(done) < 10 and not killed["out_existed"]
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    assert len(after) == 10
    assert all(after[name] == mtime for name, mtime in done.items()), "finished clips were not redone"
    assert not [p.name for p in cache.iterdir() if not p.name.endswith(".npz")], "temporary files left"
    # both pool workers ended their work themselves, their face graphs closed (a worker the
    # pool terminated writes no exit line); no process of the run left a graph open
    assert len([line for line in exits if line.split()[1] == "face"]) == 2, exits
    assert all(line.split()[2] == "0" for line in exits), exits


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_ends_an_extraction_as_ctrl_c_does(corpus, tmp_path, workers):
    """A scheduler's SIGTERM: exit 130 and the interrupted line, the clips finished before it
    cached whole (it had ended the process at once: exit 143, nothing said); with a pool of
    workers, nothing left behind that multiprocessing warns of (their progress bars' locks)."""
    import signal
    import time

    from tests.conftest import start

    clips, labels = corpus
    out = tmp_path / "features.npz"
    cache = tmp_path / "features.npz.cache"
    proc = start(["--videos", clips, "--labels", labels, "--out", out, "--quiet", "--workers", str(workers)],
                 module="realtime.extract")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(cache.glob("*.npz")) and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted: finished clips are cached; run again to resume" in stderr
    assert "Traceback" not in stderr and "leaked" not in stderr and not out.exists()
    from realtime.extract import read_cache

    cached = list(cache.glob("*.npz"))
    assert cached and all(read_cache(p) is not None for p in cached)
    assert not [p.name for p in cache.iterdir() if not p.name.endswith(".npz")], "temporary files left"


@pytest.mark.parametrize("content,fragment", [
    ("file,score\na.mp4,1\n", "needs columns"),
    ("path,label\nnowhere.mp4,1\n", "row 2: "),
    ("path,label\nspk0/clip0.mp4,4.5\n", "row 2: label 4.5 is outside [-3, 3]"),
    ("path,label\nspk0/clip0.mp4,good\n", "row 2: label 'good' is not a number"),
    ("path,label\n", "no rows"),
    ("path,label,split\nspk0/clip0.mp4,1,train,oops\n", "row 2: 4 fields where the header has 3"),
    ("path;label\nspk0/clip0.mp4;-1,5\n", "row 2: 2 fields where the header has 1"),
    ("path,label,split\nspk0/clip0.mp4,1,train\nspk1/clip1.mp4,1,valid\nspk0/../spk0/clip0.mp4,1,test\n",
     "row 4: '"),
    ("path,label,class\nspk0/clip0.mp4,-1,sad\nspk1/clip1.mp4,-1,Sad\n",
     "row 3: class 'Sad' differs from 'sad' only in case"),
    ("path,label,split\nspk0/clip0.mp4,1,training\n", "row 2: unknown split 'training'"),
    ("path;label\nspk0/clip0.mp4;1\n", "has ['path;label'] (';' between them? use ',')"),
    ("path,label,class\nspk0/clip0.mp4,,\n", "row 2: no label (a valence in [-3, 3]) and no class"),
    ("path,label,class,Class\nspk0/clip0.mp4,1,happy,sad\n", "the header names ['class'] twice"),
])
def test_bad_labels_one_line_errors(layout, tmp_path, content, fragment, capsys):
    clips, _ = layout
    labels = tmp_path / "bad_labels.csv"
    labels.write_text(content)
    code, stderr = extract_main(capsys, "--videos", clips, "--labels", labels, "--out", tmp_path / "x.npz")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], stderr


def test_a_split_left_empty_is_refused_before_any_clip_is_extracted(layout, tmp_path, capsys):
    clips, labels = layout
    rows = list(csv.reader(labels.read_text().splitlines()))
    no_valid = tmp_path / "no_valid.csv"
    with no_valid.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0]] + [r[:2] + ["train" if r[2] == "valid" else r[2]] for r in rows[1:]])
    out = tmp_path / "x.npz"
    code, stderr = extract_main(capsys, "--videos", clips, "--labels", no_valid, "--out", out)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "split 'valid' would have no clips" in lines[0], stderr
    assert not out.with_name(out.name + ".cache").exists()  # nothing extracted, no cache begun


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "v").mkdir()
    labels = tmp_path / "l.csv"
    labels.write_text("path,label\na.mp4,1\n")
    code, stderr = extract_main(capsys, "--videos", tmp_path / "v", "--labels", labels, "--out", tmp_path / "x.npz")
    assert code == 2 and "does not exist" in stderr


def test_mmsa_raw_layout(tmp_path):
    """label.csv as MMSA ships it: clips at DIR/<video_id>/<clip_id>.mp4, splits from 'mode'."""
    from realtime.extract import assign_splits, read_labels

    for vid, clip in (("vidA", "1"), ("vidA", "2"), ("vidB", "1")):
        (tmp_path / vid).mkdir(exist_ok=True)
        (tmp_path / vid / f"{clip}.mp4").write_bytes(b"x")
    labels = tmp_path / "label.csv"
    labels.write_text("video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
                      "vidA,1,hello,1.2,1,1,1,Positive,train\n"
                      "vidA,2,bye,-0.8,0,0,0,Negative,valid\n"
                      "vidB,1,meh,0.0,0,0,0,Neutral,test\n")
    clips = read_labels(tmp_path, labels)
    assert [c.path.name for c in clips] == ["1.mp4", "2.mp4", "1.mp4"]
    assert [c.group for c in clips] == ["vidA", "vidA", "vidB"]
    assert assign_splits(clips) == ["train", "valid", "test"]
    assert [c.label for c in clips] == [1.2, -0.8, 0.0]
    # a mode MMSA does not use is an error, as a split column's is, not a silent hash split
    labels.write_text(labels.read_text().replace(",train\n", ",training\n"))
    with pytest.raises(DataError, match="row 2: unknown split 'training'"):
        read_labels(tmp_path, labels)


def test_a_headers_case_is_free_and_a_column_not_read_is_named(layout, tmp_path, caplog):
    """'emotion' for 'class' trained a model with no classes and said nothing; 'Path,Label'
    was refused."""
    from realtime.extract import read_labels

    clips, labels = layout
    rows = list(csv.reader(labels.read_text().splitlines()))
    renamed = tmp_path / "renamed.csv"
    with renamed.open("w", newline="") as fh:
        csv.writer(fh).writerows([["Path", "LABEL", " Split", "emotion"]] + [r + ["happy"] for r in rows[1:]])
    caplog.clear()
    parsed = read_labels(clips, renamed)
    assert len(parsed) == len(rows) - 1 and {c.split for c in parsed} == {"train", "valid", "test"}
    assert all(c.clip_class is None for c in parsed)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "columns ['emotion'] are not read" in said[0] and "class" in said[0], said
    caplog.clear()
    read_labels(clips, labels)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_cache_key_names_the_models(layout, tmp_path):
    """Features extracted with another Whisper (face, words' model) were taken from the
    cache for this one's: the key now names the models' files."""
    from realtime.extract import cache_path, models_key, read_labels

    clips, labels = layout
    clip = read_labels(clips, labels)[0]
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    (whisper / "model.bin").write_bytes(b"12345")
    face = tmp_path / "face.task"
    face.write_bytes(b"face")
    key = models_key([face, whisper])
    assert key == models_key([face, whisper])
    copy = tmp_path / "copy" / "whisper"
    shutil.copytree(whisper, copy)
    assert models_key([face, copy]) == key  # the same model elsewhere (installed again, moved)
    (whisper / "model.bin").write_bytes(b"12346")
    assert models_key([face, whisper]) != key  # other weights of the same size
    (whisper / "model.bin").write_bytes(b"1" * (3 << 20))
    big = models_key([face, whisper])
    (whisper / "model.bin").write_bytes(b"1" * ((3 << 20) - 1) + b"2")
    assert models_key([face, whisper]) != big  # a large file differing in its last byte
    assert models_key([whisper, face]) != models_key([face, whisper])  # which model is which
    cache = tmp_path / "cache"
    assert cache_path(cache, clip, "mpnet", "speech", key) != cache_path(cache, clip, "mpnet", "speech", "other")
    assert cache_path(cache, clip, "mpnet", "speech", key) == cache_path(cache, clip, "mpnet", "speech", key)


@pytest.mark.slow
def test_a_cached_extraction_checks_its_models_and_one_that_lost_clips_says_so(corpus, extraction, tmp_path, capsys,
                                                                               caplog):
    """Every clip cached, a missing --whisper-model passed (exit 0, the old features); a clip
    that failed left exit code 0, which a script cannot tell from a whole set."""
    clips, labels = corpus
    _, cache, _, resumed, _ = extraction
    assert resumed.returncode == 0
    out = tmp_path / "again.npz"
    code, stderr = extract_main(capsys, "--videos", clips, "--labels", labels, "--out", out, "--cache", cache,
                                "--quiet", "--whisper-model", tmp_path / "no-such-whisper")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no-such-whisper" in lines[0], stderr
    assert not out.exists()

    code, stderr = extract_main(capsys, "--videos", clips, "--labels", labels, "--out", out, "--cache", cache,
                                "--quiet")
    assert code == 0 and "10 clips extracted (10 of them from the cache), 0 failed" in stderr, stderr

    # rows naming a class and no valence: their valence weighs 0 in training and metrics
    rows = list(csv.reader(labels.read_text().splitlines()))
    classes = tmp_path / "classes.csv"
    with classes.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0] + ["class"]] + [[r[0], "" if i >= 5 else r[1], r[2],
                                                           "happy" if float(r[1]) > 0 else "sad"]
                                                          for i, r in enumerate(rows[1:])])
    by_class = tmp_path / "by_class.npz"
    code, stderr = extract_main(capsys, "--videos", clips, "--labels", classes, "--out", by_class, "--cache", cache,
                                "--quiet")
    assert code == 0 and "; 5 clips name a class and rate no valence" in stderr, stderr
    from models.data import load_dataset

    data = load_dataset(by_class)
    assert data.class_names == ("happy", "sad")
    weights = {i: w for s in data.splits.values() for i, w in zip(s.ids, s.valence_weights)}
    assert weights == {r[0]: (1.0 if i < 5 else 0.0) for i, r in enumerate(rows[1:])}
    assert not [r for r in caplog.records if "rates a valence" in r.getMessage()]
    unrated = tmp_path / "unrated.csv"  # every row a class and no valence
    with unrated.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "split", "class"]] + [[r[0], "", r[2], "sad"] for r in rows[1:]])
    caplog.clear()
    code, stderr = extract_main(capsys, "--videos", clips, "--labels", unrated, "--out", tmp_path / "unrated.npz",
                                "--cache", cache, "--quiet")
    assert code == 0, stderr
    assert [r for r in caplog.records if "no clip of the train split rates a valence" in r.getMessage()]

    broken = clips / "spk0" / "broken-clip.mp4"  # a text file by another name
    broken.write_text("not a video")
    try:
        with_broken = tmp_path / "with_broken.csv"  # its class is the only 'angry'
        with_broken.write_text(classes.read_text().rstrip("\n").replace(",,", ",1.0,") +
                               "\nspk0/broken-clip.mp4,1.0,train,angry\n")
        code, stderr = extract_main(capsys, "--videos", clips, "--labels", with_broken, "--out", out, "--cache", cache,
                                    "--quiet", "--overwrite")
    finally:
        broken.unlink()
    assert code == 3, stderr
    assert [r for r in caplog.records if r.levelname == "WARNING" and r.getMessage().startswith("skipped ")
            and "broken-clip.mp4 (row 12)" in r.getMessage()]
    assert "10 clips extracted (10 of them from the cache), 1 failed" in stderr
    failed = load_dataset(out)
    assert sum(len(s) for s in failed.splits.values()) == 10  # the others' features written
    assert failed.class_names == ("happy", "sad")  # not the failed clip's class


def test_a_row_may_name_its_class_and_leave_its_valence_empty(layout, tmp_path):
    """Emotion corpora (RAVDESS, CREMA-D) name a class and rate no valence: such a row had to
    invent a number, which then taught a valence no one gave."""
    from realtime.extract import read_labels

    clips, labels = layout
    rows = list(csv.reader(labels.read_text().splitlines()))
    mixed = tmp_path / "mixed.csv"
    with mixed.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "split", "class"]] +
                                 [[r[0], "" if i % 2 else r[1], r[2], "happy" if float(r[1]) > 0 else "sad"]
                                  for i, r in enumerate(rows[1:])])
    parsed = read_labels(clips, mixed)
    assert [c.rated for c in parsed] == [i % 2 == 0 for i in range(len(parsed))]
    assert all(c.label == 0.0 for c in parsed if not c.rated)
    assert [c.label for c in parsed if c.rated] == [float(r[1]) for i, r in enumerate(rows[1:]) if i % 2 == 0]


def test_one_speaker_however_written_and_rows_without_a_split_follow_their_speaker(layout, tmp_path, caplog):
    """'Anna' and 'anna', NFC and NFD 'Zoë' were two speakers, and a row with an empty split
    went by hash while its speaker's other rows named one: one speaker in two splits."""
    from realtime.extract import assign_splits, read_labels

    clips, labels = layout
    rows = list(csv.reader(labels.read_text().splitlines()))[1:]
    speakers = ["Anna", "anna ", "Zo\u00eb", "Zoe\u0308", " ZO\u00cb"] * 2
    mixed = tmp_path / "mixed.csv"
    with mixed.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "speaker", "split"]] +
                                 [[r[0], r[1], who, "test" if i == 0 else ""] for i, (r, who) in
                                  enumerate(zip(rows, speakers))])
    parsed = read_labels(clips, mixed)
    assert [c.group for c in parsed] == ["anna", "anna", "zo\u00eb", "zo\u00eb", "zo\u00eb"] * 2
    splits = assign_splits(parsed)
    assert [s for c, s in zip(parsed, splits) if c.group == "anna"] == ["test"] * 4  # row 2's split, for all
    assert len({s for c, s in zip(parsed, splits) if c.group != "anna"}) == 1
    caplog.clear()
    with mixed.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "speaker", "split"]] +
                                 [[r[0], r[1], "anna", "train" if i else "test"] for i, r in enumerate(rows)])
    assign_splits(read_labels(clips, mixed))
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "speaker 'anna' has clips in the splits ['test', 'train']" in said[0], said


def test_mmsas_layout_names_the_columns_it_does_not_read(tmp_path, caplog):
    from realtime.extract import read_labels

    (tmp_path / "vidA").mkdir()
    (tmp_path / "vidA" / "1.mp4").write_bytes(b"x")
    labels = tmp_path / "label.csv"
    labels.write_text("video_id,clip_id,label,mode,class\nvidA,1,1.0,train,happy\n")
    caplog.clear()
    assert [c.clip_class for c in read_labels(tmp_path, labels)] == [None]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "does not read the columns ['class']" in said[0], said
    labels.write_text("video_id,clip_id,label,mode\nvidA,1,,train\n")
    with pytest.raises(DataError, match=r"row 2: no label \(a valence in \[-3, 3\]\)$"):
        read_labels(tmp_path, labels)


def test_the_clips_progress_bar_is_drawn_on_a_terminal_only(capsys, monkeypatch):
    """Extraction's and a folder run's bar went into logs and captured output (training's
    never did): a newcomer's redirected stderr held a line of it per update."""
    import sys

    from realtime.cluster import Outcome, progress

    outcomes = [Outcome(i, b"", None, "1@local") for i in range(3)]
    assert len(list(progress(iter(outcomes), 3, quiet=False, desc="extract"))) == 3
    assert "clip" not in capsys.readouterr().err  # stderr captured: not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    list(progress(iter(outcomes), 3, quiet=False, desc="extract"))
    assert "3/3" in capsys.readouterr().err  # on a terminal the bar is drawn
