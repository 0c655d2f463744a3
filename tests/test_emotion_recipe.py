"""The emotion recipe's parts: pooled channel heads, evaluation sentences kept out of
training, and cached corpus parts reused only for the options that made them."""

import numpy as np
import pytest
import torch

from models.config import ModelConfig
from models.data import DataError, load_dataset
from models.dmd import DMD
from realtime.corpus import main as corpus_main
from realtime.corpus import read_exclusions, text_key
from realtime.recipe import SOURCES, add_pairs

DIMS = {"L": 6, "A": 4, "V": 5}
STEPS = {"L": 8, "A": 10, "V": 9}


def _net(pooling: str) -> DMD:
    torch.manual_seed(0)
    cfg = ModelConfig(dims=DIMS, steps=STEPS, d=8, heads=2, cross_layers=1, memory_layers=1,
                      class_names=("neutral", "happy"), homo_pooling=pooling)
    return DMD(cfg).eval()


def _face_at(offset: int, width: int = 3):
    """A face present for `width` steps starting at `offset`; no words, no voice."""
    rng = np.random.default_rng(1)
    block = torch.from_numpy(rng.normal(size=(width, DIMS["V"])).astype(np.float32))
    inputs = {m: torch.zeros(1, STEPS[m], DIMS[m]) for m in DIMS}
    masks = {m: torch.zeros(1, STEPS[m]) for m in DIMS}
    inputs["V"][0, offset:offset + width] = block
    masks["V"][0, offset:offset + width] = 1.0
    return inputs, masks


def test_a_pooled_channel_reads_the_same_wherever_in_the_window_its_evidence_falls():
    readings = {}
    for pooling in ("pool", "flatten"):
        net = _net(pooling)
        with torch.no_grad():
            outs = [net(*_face_at(offset)) for offset in (1, 5)]
        readings[pooling] = [(o.logits_homo["V"].item(), o.channel_class_logits["V"][0].tolist()) for o in outs]
    (early, early_cls), (late, late_cls) = readings["pool"]
    assert early == pytest.approx(late, abs=1e-5)
    assert early_cls == pytest.approx(late_cls, abs=1e-5)
    # the paper's flattened head gives each step its own weights: the same face moved reads differently
    assert readings["flatten"][0][0] != pytest.approx(readings["flatten"][1][0], abs=1e-4)


def test_pooled_heads_train_and_a_config_without_the_field_keeps_the_papers_heads():
    net = _net("pool")
    inputs, masks = _face_at(2)
    out = net.train()(inputs, masks)
    (out.logits_homo["V"].sum() + out.channel_class_logits["V"].sum()).backward()
    assert net.head_homo["V"].proj1.weight.grad.abs().sum() > 0
    assert net.head_homo["V"].proj1.in_features == 2 * 8
    data = _net("pool").cfg.to_dict()
    del data["homo_pooling"]  # a checkpoint written before the option existed
    assert ModelConfig.from_dict(data).homo_pooling == "flatten"
    with pytest.raises(ValueError, match="homo_pooling"):
        ModelConfig(dims=DIMS, steps=STEPS, d=8, heads=2, homo_pooling="attention")


def test_exclusion_keys_ignore_case_punctuation_and_tokenisation(tmp_path):
    sst = tmp_path / "sst.csv"
    sst.write_text('sentence,values\n"Effective but too-tepid biopic",0.51\n"It \'s a mess .",0.1\n')
    lines = tmp_path / "lines.txt"
    lines.write_text("Thank you!\n\n")
    keys = read_exclusions([str(sst), str(lines)])
    assert text_key("Effective but too tepid biopic") in keys  # VADER's copy of the SST sentence
    assert text_key("It's a mess.") in keys
    assert text_key("thank you") in keys
    assert text_key("Thank you, all") not in keys
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score\n1,2\n")
    with pytest.raises(DataError, match="bad.csv.*column"):
        read_exclusions([str(bad)])
    with pytest.raises(DataError, match="no such file"):
        read_exclusions([str(tmp_path / "missing.csv")])


def _rated(folder):
    folder.mkdir()
    rows = [(3.1, "What a wonderful, lovely day this has been."), (-2.9, "This was the worst film I have ever seen."),
            (0.2, "The shop opens at nine on weekdays."), (2.5, "Great service and friendly staff, really."),
            (-3.2, "Terrible, rude and a complete waste of money."), (1.8, "I enjoyed it more than I expected to.")]
    rows = rows * 4  # enough for three splits
    (folder / "tweets_GroundTruth.txt").write_text(
        "\n".join(f"{i}\t{r}\t{t} ({i})" for i, (r, t) in enumerate(rows)) + "\n")


@pytest.mark.slow
def test_evaluation_sentences_never_reach_the_corpus_and_a_cached_part_follows_its_options(tmp_path, capsys):
    _rated(tmp_path / "vader")
    held = tmp_path / "eval.csv"
    held.write_text("sentence\n" + "\n".join(f'"This was the worst film I have ever seen ({i})"' for i in (1, 7, 13))
                    + "\n")
    out = tmp_path / "c.npz"
    base = ["--out", str(out), "--sentences", str(tmp_path / "vader"), "--work", str(tmp_path / "parts")]
    assert corpus_main(base) == 0
    assert corpus_main(base + ["--exclude", str(held)]) == 0  # other options: extracted again, not reused
    data = load_dataset(out)
    ids = [i for split in data.splits.values() for i in split.ids]
    assert len(ids) == 24 - 3
    assert not {f"vader/tweets_{i}" for i in (1, 7, 13)} & set(ids)
    summary = (tmp_path / "c.json").read_text()
    assert '"excluded (evaluation sentences)": 3' in summary
    assert corpus_main(base + ["--exclude", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_speed_perturbation_changes_duration_and_pitch_together():
    from realtime.corpus import _speed

    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    fast = _speed(tone, 1.15)
    assert len(fast) == pytest.approx(rate / 1.15, abs=2)
    spectrum = np.abs(np.fft.rfft(fast))
    assert np.fft.rfftfreq(len(fast), 1 / rate)[spectrum.argmax()] == pytest.approx(230, abs=3)


@pytest.mark.slow
def test_voice_augmentation_adds_new_voices_for_training_speakers_only(tmp_path):
    from realtime.corpus import extract_voice
    from realtime.featureset import FeatureSpec
    from realtime.synth_media import speak, write_wav

    folder = tmp_path / "emodb"
    folder.mkdir()
    for speaker in ("11", "03"):  # 11 trains, 03 is a test speaker
        for i, (letter, speed) in enumerate((("W", 190), ("T", 120))):
            write_wav(folder / f"{speaker}a0{i}{letter}a.wav", speak("We will meet again tomorrow.", "en-us", speed))
    plain = extract_voice(folder, FeatureSpec(), copies=2, seed=0)
    augmented = extract_voice(folder, FeatureSpec(), copies=2, seed=0, augment=3)
    assert len(plain.ids["train"]) == 2 * 2 and len(plain.ids["test"]) == 2
    assert len(augmented.ids["train"]) == 2 * 2 + 3 * 2  # three new voices, one window per clip each
    assert augmented.ids["test"] == plain.ids["test"]  # held-out speakers stay as recorded
    assert sum("~speed" in i for i in augmented.ids["train"]) == 6
    plain_x = np.stack(plain.features["train"])
    new_x = np.stack([x for x, i in zip(augmented.features["train"], augmented.ids["train"]) if "~speed" in i])
    assert not np.allclose(plain_x[:2], new_x[:2])  # a different voice reads differently


def test_voice_levels_set_one_mean_power_and_jitter_only_when_given_a_generator():
    from realtime.corpus import VoiceLevels

    rng = np.random.default_rng(0)
    clip = (0.3 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)

    def dbfs(y):
        return 10 * np.log10(np.mean(np.square(y, dtype=np.float64)))

    levels = VoiceLevels(level=-26.0, jitter=6.0)
    assert dbfs(levels.apply(clip, None)) == pytest.approx(-26.0, abs=0.01)
    assert dbfs(levels.apply(0.1 * clip, None)) == pytest.approx(-26.0, abs=0.01)  # the recorded level is gone
    jittered = [dbfs(levels.apply(clip, rng)) for _ in range(200)]
    assert -32.0 <= min(jittered) < -30.0 and -22.0 < max(jittered) <= -20.0  # up to 6 dB either way
    assert VoiceLevels(level=None, jitter=0.0).apply(clip, rng) is clip  # recorded levels kept
    loud = VoiceLevels(level=-3.0, jitter=6.0).apply(clip, rng)
    assert np.abs(loud).max() <= 1.0  # never past full scale


@pytest.mark.slow
def test_a_held_out_clips_features_do_not_depend_on_the_level_it_was_recorded_at(tmp_path):
    """The EmoDB copy was peak-normalised clip by clip, so clip levels lie about emotion:
    levelled, a quieter copy of one clip reads exactly as the original; kept as recorded,
    it does not."""
    from realtime.corpus import VoiceLevels, extract_voice
    from realtime.featureset import FeatureSpec
    from realtime.synth_media import speak, write_wav

    clips = [("W", speak("We will meet again tomorrow.", "en-us", 180)),
             ("T", speak("The cat sat on the mat today.", "en-us", 120))]
    for name, quiet in (("as-is", 1.0), ("quieter", 0.2)):
        folder = tmp_path / name
        folder.mkdir()
        for i, (letter, y) in enumerate(clips):  # speaker 03 is held out (test)
            write_wav(folder / f"03a0{i}{letter}a.wav", y * (quiet if letter == "T" else 1.0))

    def test_features(name, levels):
        part = extract_voice(tmp_path / name, FeatureSpec(), copies=1, seed=0, levels=levels)
        return dict(zip(part.ids["test"], part.features["test"]))

    levelled = [test_features(name, VoiceLevels()) for name in ("as-is", "quieter")]
    recorded = [test_features(name, VoiceLevels(level=None, jitter=0.0)) for name in ("as-is", "quieter")]
    assert levelled[0].keys() == levelled[1].keys() == recorded[1].keys() and len(levelled[0]) == 2
    moved = {name: max(np.abs(pair[0][k] - pair[1][k]).max() for k in pair[0])
             for name, pair in (("levelled", levelled), ("recorded", recorded))}
    # what is left (0.28 measured, against 3.2) is the quiet copy's 16-bit rounding near the silence threshold
    assert moved["recorded"] > 1.0 and moved["levelled"] < 0.15 * moved["recorded"], moved


def test_the_corpus_builder_refuses_a_voice_level_it_cannot_use(tmp_path, capsys):
    (tmp_path / "v").mkdir()
    for bad in (["--voice-level", "loud"], ["--voice-level", "3"], ["--voice-gain-jitter", "-1"]):
        assert corpus_main(["--out", str(tmp_path / "c.npz"), "--voice", str(tmp_path / "v"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --voice-")


def test_balanced_draws_give_each_source_a_square_root_share():
    from models.train import source_weights

    ids = [f"big/{i}" for i in range(400)] + [f"small/{i}" for i in range(25)] + ["pair/x"] * 100
    w = source_weights(ids)
    assert w.sum() == pytest.approx(1.0)
    assert w[:400].sum() == pytest.approx(20 / 35) and w[400:425].sum() == pytest.approx(5 / 35)
    assert np.allclose(source_weights(["a", "b", "c"]), 1 / 3)  # no sources named: uniform
    # grouped: 'other' (300) joins 'big' (400); the group of 700 takes one square-root share
    ids = [f"big/{i}" for i in range(400)] + [f"other/{i}" for i in range(300)] + [f"small/{i}" for i in range(25)]
    w = source_weights(ids, {"other": "big"})
    group = np.sqrt(700)
    assert w[:700].sum() == pytest.approx(group / (group + 5))
    assert np.allclose(w[:700], w[0])  # alike within the group
    assert w[700:].sum() == pytest.approx(5 / (group + 5))


def test_model_card_tables_come_from_the_checkpoint_and_the_bench(tmp_path, capsys):
    import json
    tables = _tool("model_card_tables").main

    score = {"n": 10, "accuracy": 0.42, "accuracy_all7": 0.3, "chance": 0.25}
    bench = {"voice": {"fused": score, "audio_channel": {"accuracy": 0.35}},
             "valence": {"scored": 200, "sign_accuracy": 0.8, "text_channel_sign_accuracy": 0.81}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    assert tables(["--bench", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| voice, neutral words | 10 | **0.420** | 0.300 | 0.350 | 0.25 | 0.40 (0.60): **met** |" in out
    assert "sign **0.800** | | 0.810 | 0.50 | 0.78 (0.85): **met** |" in out
    assert "| FER2013 PrivateTest (face) |" in out and "| truth \\ said | neutral | happy |" in out
    assert tables(["--checkpoint", str(tmp_path)]) == 2  # no checkpoint there: one line, exit 2
    assert capsys.readouterr().err.startswith("error: ")


def _tiny_split(extra: tuple = ()):
    from models.data import Split
    from models.emotions import EMOTIONS

    rows = [("fer", c) for c in ("neutral", "happy", "surprised")] + [("emodb", c) for c in ("neutral", "happy")] \
        + [("goemotions", c) for c in ("neutral", "happy", "surprised")] + list(extra)
    n = len(rows)
    modality = {"fer": "V", "emodb": "A", "goemotions": "L", "xed": "L"}
    inputs = {m: np.zeros((n, STEPS[m], DIMS[m]), np.float32) for m in DIMS}
    masks = {m: np.zeros((n, STEPS[m]), np.float32) for m in DIMS}
    for i, (src, _) in enumerate(rows):
        m = modality[src]
        inputs[m][i] = i + 1  # each sample recognisable by its value
        masks[m][i] = 1
    return Split(inputs=inputs, masks=masks, labels=np.zeros(n, np.float32),
                 class_labels=np.array([EMOTIONS.index(c) for _, c in rows]),
                 ids=[f"{src}/{c}{i}" for i, (src, c) in enumerate(rows)])


def _tool(name: str):
    """A script of tools/ as a module."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parent.parent / "tools")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def test_pairs_fill_a_missing_emotion_with_a_neutral_bystander_and_bystanders_do_not_teach_their_own_head():
    from models.config import MODALITIES
    from models.emotions import EMOTIONS

    split = _tiny_split()
    out = add_pairs(split, 60, seed=0, bystanders=0.0)
    pairs = np.arange(len(split), len(out))
    assert out.channel_weights.shape == (len(out), 3) and (out.channel_weights[: len(split)] == 1).all()
    a = MODALITIES.index("A")
    surprised = pairs[out.class_labels[pairs] == EMOTIONS.index("surprised")]
    assert len(surprised) and (out.channel_weights[surprised, a] == 0).all()  # no surprised voice exists
    assert (out.inputs["A"][surprised, 0, 0] == 4).all()  # the one neutral voice (sample 4)
    others = np.setdiff1d(pairs, surprised)
    assert (out.channel_weights[others] == 1).all()
    mixed = add_pairs(split, 60, seed=0, bystanders=1.0)
    emotional = pairs[mixed.class_labels[pairs] != EMOTIONS.index("neutral")]
    assert ((mixed.channel_weights[emotional] == 0).sum(1) >= 1).all()
    calm = pairs[mixed.class_labels[pairs] == EMOTIONS.index("neutral")]
    assert (mixed.channel_weights[calm] == 1).all()
    assert mixed.subset(np.array(emotional[:3])).channel_weights.shape == (3, 3)


def _one_sample_parts(sources: tuple[str, ...], emotion: str):
    """One sample of ``emotion`` per split from each named source (realtime.recipe.SOURCES)."""
    from models.emotions import EMOTIONS, VALENCE
    from realtime.corpus import Part
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec()
    parts = {}
    for name in sources:
        modality = SOURCES[name]["modality"]
        part = Part(modality)
        for split in ("train", "valid", "test"):
            x = np.ones((spec.steps[modality], spec.dims[modality]), np.float32)
            part.add(split, x, np.ones(spec.steps[modality]), EMOTIONS.index(emotion), VALENCE[emotion],
                     f"{SOURCES[name]['prefix']}1")
        parts[name] = part
    return parts, spec


def test_subtitle_and_voice_valence_targets_are_scaled_and_the_rest_kept():
    from models.emotions import VALENCE
    from realtime.corpus import assemble

    parts, spec = _one_sample_parts(("subtitles", "texts", "voice"), "happy")
    data = assemble(parts, spec, voice_valence_scale=0.5, subtitles_valence_scale=0.25)
    got = dict(zip(data["train"]["source"], data["train"]["regression_labels"]))
    assert got == pytest.approx({"subtitles": 0.25 * VALENCE["happy"], "texts": VALENCE["happy"],
                                 "voice": 0.5 * VALENCE["happy"]})


def test_a_valence_scale_of_zero_means_no_valence_the_loaded_split_knows_it_and_pairs_keep_it(tmp_path):
    from models.data import load_dataset, save_dataset
    from realtime.corpus import assemble

    parts, spec = _one_sample_parts(("subtitles", "texts", "faces"), "sad")
    assert "valence_weights" not in assemble(parts, spec, subtitles_valence_scale=0.25)["train"]
    data = assemble(parts, spec, subtitles_valence_scale=0.0)
    got = dict(zip(data["train"]["source"], data["train"]["valence_weights"]))
    assert got == {"faces": 1.0, "subtitles": 0.0, "texts": 1.0}
    train = load_dataset(save_dataset(tmp_path / "c.npz", data)).splits["train"]
    assert dict(zip(data["train"]["source"], train.valence_weights)) == got
    paired = add_pairs(train, 5, seed=0)
    assert paired.valence_weights.tolist() == train.valence_weights.tolist() + [1.0] * 5
    assert paired.subset(np.array([0, 1])).valence_weights.shape == (2,)
    data["train"]["valence_weights"] = np.array([0.0, 2.0, 1.0], np.float32)
    with pytest.raises(DataError, match="valence_weights"):
        load_dataset(save_dataset(tmp_path / "bad.npz", data))


def test_a_sample_without_valence_teaches_its_emotion_and_no_valence():
    from models.config import TrainConfig
    from models.corrkd import corrkd_losses
    from models.data import Split
    from models.loop import evaluate
    from models.losses import dmd_losses

    net = _net("pool").train()
    torch.manual_seed(0)
    inputs = {m: torch.randn(4, STEPS[m], DIMS[m]) for m in DIMS}
    masks = {m: torch.ones(4, STEPS[m]) for m in DIMS}
    classes = torch.tensor([1, 0, 1, 0])
    rated = torch.tensor([1.0, 1.0, 0.0, 0.0])
    out = net(inputs, masks)
    teacher = net(inputs, masks)
    totals = []
    for placeholder in (-3.0, 3.0):  # the unrated samples' labels must not matter
        labels = torch.tensor([2.0, -1.0, placeholder, placeholder])
        losses = dmd_losses(out, labels, TrainConfig(), classes, None, rated)
        kd = corrkd_losses(out, teacher, labels, classes, 0.5, rated)
        totals.append([float(t.detach()) for t in (losses.task, losses.margin, kd.response, losses.classes)])
    assert totals[0] == pytest.approx(totals[1])
    labels = torch.tensor([2.0, -1.0, 0.5, 0.5])
    plain = dmd_losses(out, labels, TrainConfig(), classes)
    weighted = dmd_losses(out, labels, TrainConfig(), classes, None, torch.ones(4))
    assert float(plain.task.detach()) == pytest.approx(float(weighted.task.detach()), rel=1e-6)
    # unrated samples still teach their emotion
    net.zero_grad()
    dmd_losses(out, labels, TrainConfig(), classes, None, torch.zeros(4)).total.backward()
    assert net.head_classes_channel["L"].weight.grad.abs().sum() > 0
    # and stay out of the valence metrics
    split = Split(inputs={m: v.numpy() for m, v in inputs.items()}, masks={m: v.numpy() for m, v in masks.items()},
                  labels=np.array([2.0, -1.0, 3.0, 3.0], np.float32), class_labels=classes.numpy(),
                  ids=[f"s/{i}" for i in range(4)])
    full = evaluate(net.eval(), split, torch.device("cpu"))
    split.valence_weights = rated.numpy()
    part = evaluate(net, split, torch.device("cpu"))
    first = evaluate(net, split.subset(np.array([0, 1])), torch.device("cpu"))
    assert part["MAE"] == pytest.approx(first["MAE"]) and part["MAE"] != pytest.approx(full["MAE"])
    assert part["Class_acc"] == full["Class_acc"]


def test_pairs_take_their_words_from_the_subtitles_too():
    from models.emotions import EMOTIONS

    split = _tiny_split(extra=(("fer", "sad"), ("xed", "sad")))  # samples 8 and 9: sad words only in XED
    out = add_pairs(split, 80, seed=0)
    sad = np.arange(len(split), len(out))[out.class_labels[len(split):] == EMOTIONS.index("sad")]
    assert len(sad) and (out.inputs["L"][sad, 0, 0] == 10).all() and (out.inputs["V"][sad, 0, 0] == 9).all()


def test_a_bystander_channel_gets_no_loss_from_the_pairs_label():
    from models.config import TrainConfig
    from models.losses import dmd_losses

    net = _net("pool").train()
    inputs = {m: torch.randn(2, STEPS[m], DIMS[m]) for m in DIMS}
    masks = {m: torch.ones(2, STEPS[m]) for m in DIMS}
    labels, classes = torch.tensor([2.0, 2.0]), torch.tensor([1, 1])
    grads = {}
    for name, weights in (("taught", None), ("bystander", torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]))):
        net.zero_grad()
        out = net(inputs, masks)
        dmd_losses(out, labels, TrainConfig(), classes, weights).classes.backward()
        grads[name] = net.head_classes_channel["A"].weight.grad
    assert grads["taught"].abs().sum() > 0
    assert grads["bystander"] is None or grads["bystander"].abs().sum() == 0


def test_rated_sentences_near_zero_teach_neutral_only_when_asked():
    from models.emotions import EMOTIONS
    from realtime.corpus import RATING_TO_MOSI, Part, assemble
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec()
    sentences, texts = Part("L"), Part("L")
    x, mask = np.zeros((spec.steps["L"], spec.dims["L"])), np.ones(spec.steps["L"])
    for split in ("train", "valid", "test"):
        for i, rating in enumerate((0.2, -0.4, 1.5, -3.0)):
            sentences.add(split, x, mask, -1, rating * RATING_TO_MOSI, f"vader/{split}{i}")
        texts.add(split, x, mask, EMOTIONS.index("happy"), 0.1, f"goemotions/{split}")
    parts = {"sentences": sentences, "texts": texts}
    plain = assemble(parts, spec)["train"]["class_labels"]
    calm = assemble(parts, spec, neutral_below=0.5)["train"]["class_labels"]
    happy, neutral = EMOTIONS.index("happy"), EMOTIONS.index("neutral")
    assert plain.tolist() == [-1, -1, -1, -1, happy]  # parts in name order: sentences, then texts
    assert calm.tolist() == [neutral, neutral, -1, -1, happy]  # a comment keeps its own label
