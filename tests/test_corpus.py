"""The emotion corpus builder on a tiny corpus made here: real faces, real speech, real text."""

import json
import logging

import numpy as np
import pytest

from models.data import DataError, load_dataset
from models.emotions import EMOTIONS
from realtime.corpus import main as corpus_main


def _face_images(folder, image, centre):
    import cv2

    cx, cy, half = centre
    crop = image[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
    bgr = np.ascontiguousarray(crop[:, :, ::-1])
    for split in ("train", "validation", "test"):
        for cls in ("happy", "neutral"):
            d = folder / split / cls
            d.mkdir(parents=True)
            cv2.imwrite(str(d / "a.jpg"), bgr)
            cv2.imwrite(str(d / "b.jpg"), bgr[:, ::-1])
            cv2.imwrite(str(d / "a.jpg0.jpg"), bgr)  # an augmented copy: left out
    (folder / "train" / "happy" / "broken.jpg").write_bytes(b"not an image")
    (folder / "train" / "contempt").mkdir()  # a class we do not name


def _voice_clips(folder):
    from realtime.synth_media import speak, write_wav

    folder.mkdir()
    sentences = ["The cat sat on the mat today.", "We will meet again tomorrow morning."]
    for speaker, pitch in (("03", 40), ("09", 60), ("11", 50), ("12", 45)):
        for i, (letter, speed) in enumerate((("W", 190), ("T", 120), ("N", 150), ("L", 140))):
            write_wav(folder / f"{speaker}a0{i}{letter}a.wav", speak(sentences[i % 2], "en-us", speed, pitch))
    (folder / "11a09Xa.wav").write_bytes(b"RIFF....")  # unknown letter: reported
    (folder / "12a09Wb.wav").write_bytes(b"RIFF....WAVE")  # not audio: reported


def _texts(folder):
    folder.mkdir()
    (folder / "labels.txt").write_text("\n".join(["anger", "disgust", "fear", "joy", "neutral", "sadness",
                                                  "surprise"]) + "\n")
    rows = ["I love this so much, thank you!\t3\tid1", "This is infuriating and unfair.\t0\tid2",
            "It is on the table.\t4\tid3", "I miss her every single day.\t5\tid4",
            "Wow, I did not see that coming!\t6\tid5", "Happy and sad at once.\t3,5\tid6",
            "A label we do not know.\t9\tid7"]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (folder / name).write_text("\n".join(rows) + "\n")


def _sentences(folder):
    folder.mkdir()
    lines = [f"s{i}\t{r}\t{t}" for i, (r, t) in enumerate([
        (3.1, "What a wonderful, lovely day this has been."), (-2.9, "This was the worst film I have ever seen."),
        (0.2, "The shop opens at nine on weekdays."), (2.5, "Great service and friendly staff, highly recommended."),
        (-3.2, "Terrible, rude and a complete waste of money."), (1.8, "I enjoyed it more than I expected to."),
    ] * 6)]
    lines.append("bad\tnot-a-number\tA rating that is not a number.")
    (folder / "tweets_GroundTruth.txt").write_text("\n".join(lines) + "\n")


XED_LINES = [  # line, labels: anger 1, anticipation 2, disgust 3, fear 4, joy 5, sadness 6, surprise 7, trust 8
    ("Get out of my house , [PERSON] !", "1"), ("I can't believe we won !", "5"), ("She is gone forever .", "6"),
    ("What ? You did what ?", "7"), ("That smell makes me sick .", "3"), ("Please do n't hurt me .", "4"),
    ("I will see you tomorrow then .", "2"), ("Trust me , it works .", "8"), ("You liar , I hate you !", "1, 6"),
    ("A line with a label nobody knows .", "12"), ("I can't believe we won!", "5"),  # the same line again
]
XED_NEUTRAL = ["9\tThe train leaves at nine .", "9\tPass the salt , please .", "no tab on this line"]


def _subtitles(folder):
    folder.mkdir()
    (folder / "en-annotated.tsv").write_text("\n".join(f"{t}\t{labels}" for t, labels in XED_LINES) + "\n")
    (folder / "neu_en.txt").write_text("\n".join(XED_NEUTRAL) + "\n")


def test_subtitle_lines_keep_one_ekman_emotion_each_read_as_speech_and_split_by_their_text(tmp_path, caplog):
    from realtime.corpus import subtitle_rows, text_key

    _subtitles(tmp_path / "xed")
    with caplog.at_level(logging.WARNING):
        rows, left_out = subtitle_rows(tmp_path / "xed", 100, np.random.default_rng(0))
    assert "unknown label '12'" in caplog.text and "neu_en.txt line 3" in caplog.text
    by_text = {text: emotion for _, emotion, text, _ in rows}
    assert by_text == {"Get out of my house!": "angry", "I can't believe we won!": "happy",
                       "She is gone forever.": "sad", "What? You did what?": "surprised",
                       "That smell makes me sick.": "disgusted", "Please don't hurt me.": "fearful",
                       "The train leaves at nine.": "neutral", "Pass the salt, please.": "neutral"}
    assert left_out == {"anticipation or trust": 2, "several emotions": 1, "unknown label": 2, "repeated line": 1}
    again, _ = subtitle_rows(tmp_path / "xed", 100, np.random.default_rng(5))
    split_of = {text_key(t): s for s, _, t, _ in rows}
    assert all(split_of[text_key(t)] == s for s, _, t, _ in again)  # a line's split is its text's, not a draw's


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    from realtime.synth_media import astronaut_face

    root = tmp_path_factory.mktemp("corpus")
    image, centre = astronaut_face()
    _face_images(root / "faces", image, centre)
    _voice_clips(root / "voice")
    _texts(root / "ekman")
    _sentences(root / "vader")
    _subtitles(root / "xed")
    return root


@pytest.mark.slow
def test_builder_on_a_tiny_corpus(tiny_sources, tmp_path, caplog):
    out = tmp_path / "corpus.npz"
    argv = ["--out", str(out), "--faces", str(tiny_sources / "faces"), "--voice", str(tiny_sources / "voice"),
            "--texts", str(tiny_sources / "ekman"), "--sentences", str(tiny_sources / "vader"),
            "--subtitles", str(tiny_sources / "xed"),
            "--voice-copies", "2", "--faces-per-class", "10", "--texts-per-class", "10"]
    with caplog.at_level(logging.WARNING):
        assert corpus_main(argv) == 0
    warnings = caplog.text
    # every bad item is named and the rest goes on
    assert "broken.jpg" in warnings and "contempt" in warnings
    assert "11a09Xa.wav" in warnings and "12a09Wb.wav" in warnings
    assert "unknown label '9'" in warnings
    assert "not-a-number" in warnings

    data = load_dataset(out)  # a pickle-free archive, read back by the training loader
    assert data.class_names == EMOTIONS and data.feature_set.startswith("live-")
    summary = json.loads(out.with_suffix(".json").read_text())
    train = data.splits["train"]
    present = {m: train.masks[m].max(1) > 0 for m in "LAV"}
    # each sample carries exactly one channel: the one its corpus has
    assert (sum(p.astype(int) for p in present.values()) == 1).all()
    ids = np.array(train.ids)
    faces = np.char.startswith(ids.astype(str), "fer/")
    assert present["V"][faces].all() and faces.sum() == 4, "augmented copies are left out"
    assert summary["faces"]["left_out"] == {"unreadable": 1}
    # voice: boredom (L) has no class of ours; two windows per training clip; split by speaker
    voice = np.char.startswith(ids.astype(str), "emodb/")
    assert present["A"][voice].all() and voice.sum() == 2 * 3 * 2  # speakers 11, 12; W, T, N; 2 copies
    assert {EMOTIONS[c] for c in train.class_labels[voice]} == {"angry", "sad", "neutral"}
    assert all(i.startswith("emodb/03") for i in data.splits["test"].ids if i.startswith("emodb/"))
    # texts: single-label rows only, classes mapped to ours; valence from the class prior
    texts = np.char.startswith(ids.astype(str), "goemotions/")
    assert texts.sum() == 5 and present["L"][texts].all()
    happy = train.class_labels == EMOTIONS.index("happy")
    assert (train.labels[happy & texts] > 0).all() and (train.labels[(train.class_labels == 3) & texts] < 0).all()
    # subtitles: words only, each kept line in one split, with its emotion's valence
    every = [(i, split.class_labels[k], split.masks["L"][k].max(), split.masks["A"][k].max())
             for split in data.splits.values() for k, i in enumerate(split.ids) if i.startswith("xed/")]
    assert len(every) == 8 and all(text > 0 and voice == 0 for _, _, text, voice in every)
    assert sorted(EMOTIONS[c] for _, c, _, _ in every) == sorted(
        ["angry", "happy", "sad", "surprised", "disgusted", "fearful", "neutral", "neutral"])
    assert summary["subtitles"]["left_out"]["anticipation or trust"] == 2
    # rated sentences: valence only, on MOSI's scale
    vader = np.char.startswith(ids.astype(str), "vader/")
    assert (train.class_labels[vader] == -1).all() and np.abs(train.labels[vader]).max() <= 3.0
    # the angry voice differs from the sad one after per-stream normalisation (louder, faster)
    angry = train.inputs["A"][voice & (train.class_labels == 3)]
    sad = train.inputs["A"][voice & (train.class_labels == 2)]
    assert not np.allclose(angry.mean(), sad.mean())


def test_builder_refuses_a_missing_folder_before_any_work(tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert corpus_main(["--out", str(out), "--faces", str(tmp_path / "nope"), "--texts", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --faces '{tmp_path / 'nope'}' is not a folder"]
    assert not out.exists()


def test_builder_needs_a_source_and_an_npz_name(tmp_path, capsys):
    assert corpus_main(["--out", str(tmp_path / "c.npz")]) == 2
    assert "at least one source" in capsys.readouterr().err
    assert corpus_main(["--out", str(tmp_path / "c.pkl"), "--texts", str(tmp_path)]) == 2
    assert ".npz" in capsys.readouterr().err


def test_a_dataset_archive_never_unpickles(tmp_path):
    bad = tmp_path / "evil.npz"
    np.savez(bad, **{"train.text": np.array([object()], dtype=object)})
    with pytest.raises(DataError, match="pickle-free"):
        load_dataset(bad)
