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


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    from realtime.synth_media import astronaut_face

    root = tmp_path_factory.mktemp("corpus")
    image, centre = astronaut_face()
    _face_images(root / "faces", image, centre)
    _voice_clips(root / "voice")
    _texts(root / "ekman")
    _sentences(root / "vader")
    return root


@pytest.mark.slow
def test_builder_on_a_tiny_corpus(tiny_sources, tmp_path, caplog):
    out = tmp_path / "corpus.npz"
    argv = ["--out", str(out), "--faces", str(tiny_sources / "faces"), "--voice", str(tiny_sources / "voice"),
            "--texts", str(tiny_sources / "ekman"), "--sentences", str(tiny_sources / "vader"),
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
