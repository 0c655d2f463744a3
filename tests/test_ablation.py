"""bench.ablation on a labelled emotion corpus: the same seeded rows for every variant,
real scores from the data, and graph units that are inert where no sample has two channels."""

import json

import numpy as np
import pytest

from bench.ablation import RATES, CorpusCut, corpus_dataset, main, stratified_rows
from models.data import save_dataset
from models.emotions import EMOTIONS, VALENCE

DIMS = {"text": 6, "audio": 4, "vision": 5}
STEPS = {"text": 4, "audio": 5, "vision": 4}
# each corpus gives the one channel it has, as realtime.corpus writes them
SOURCES = (("fer", "vision", True), ("emodb", "audio", True), ("goemotions", "text", True), ("vader", "text", False))


def _split(n_per_source: int, rng: np.random.Generator) -> dict:
    rows = []
    for source, channel, has_class in SOURCES:
        for i in range(n_per_source):
            rows.append((source, channel, int(rng.integers(len(EMOTIONS))) if has_class else -1, i))
    split = {k: np.zeros((len(rows), STEPS[k], d), np.float32) for k, d in DIMS.items()}
    split.update({f"{k}_mask": np.zeros((len(rows), STEPS[k]), np.float32) for k in DIMS})
    labels, classes, ids = [], [], []
    for row, (source, channel, c, i) in enumerate(rows):
        valence = VALENCE[EMOTIONS[c]] if c >= 0 else float(rng.uniform(-3, 3))
        # the class and the valence are in the features: a model can learn them
        signal = np.zeros(DIMS[channel], np.float32)
        signal[(c if c >= 0 else 0) % DIMS[channel]] = 2.0
        signal[-1] = valence
        split[channel][row] = signal + rng.normal(0, 0.5, (STEPS[channel], DIMS[channel]))
        split[f"{channel}_mask"][row] = 1.0
        labels.append(valence)
        classes.append(c)
        ids.append(f"{source}/{i}")
    split.update(regression_labels=np.array(labels, np.float32), class_labels=np.array(classes, np.int64),
                 id=np.array(ids))
    return split


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    data = {"meta": {"feature_set": "tiny-test", "class_names": list(EMOTIONS)},
            "train": _split(14, rng), "valid": _split(6, rng), "test": _split(8, rng)}
    return save_dataset(tmp_path_factory.mktemp("corpus") / "corpus.npz", data)


def test_the_corpus_sample_is_seeded_stratified_and_takes_the_recipes_pairs(corpus):
    cut = CorpusCut(path=corpus, train=28, valid=12, test=32, pairs=6, seed=3)
    dataset, data, kept = corpus_dataset(cut)
    again = corpus_dataset(cut)[2]
    assert kept == again  # every variant and training seed trains on these very rows
    assert corpus_dataset(CorpusCut(corpus, 28, 12, 32, 0, seed=4))[2]["train"] != kept["train"]
    assert [len(kept[s]) for s in ("train", "valid", "test")] == [28, 12, 32]  # the test split whole
    # stratified: each source keeps its share (a quarter each here)
    assert {k: sum(v.values()) for k, v in data["kept"]["train"].items()} == {
        "fer": 7, "emodb": 7, "goemotions": 7, "vader": 7, "pair": 6}
    train = dataset.splits["train"]
    assert len(train) == 34 and train.ids[-6:] == [i for i in train.ids if i.startswith("pair/")]
    assert all(train.masks[m][-6:].sum(1).min() > 0 for m in "LAV")  # the pairs hold all three channels
    assert dataset.class_names == EMOTIONS


def test_stratified_rows_keep_every_strata_share():
    class Split:
        ids = [f"a/{i}" for i in range(60)] + [f"b/{i}" for i in range(40)]
        class_labels = np.array([0, 1] * 50)

        def __len__(self):
            return 100

    rows = stratified_rows(Split(), 10, np.random.default_rng(0))
    assert len(rows) == len(set(rows)) == 10 and (np.diff(rows) > 0).all()
    assert (rows < 60).sum() == 6 and (Split.class_labels[rows] == 0).sum() == 5


def test_ablation_on_a_corpus_scores_each_variant_from_the_data(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--corpus", str(corpus), "--corpus-train", "40", "--corpus-valid", "16", "--corpus-test", "32",
                 "--seeds", "0", "--epochs", "1", "--variants", "dmd", "dmd-no-gd", "--out", str(out),
                 "--threads", "1"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["corpus"] == str(corpus) and results["data"]["pairs"] == 0
    assert [(r["variant"], r["role"]) for r in results["runs"]] == [
        ("dmd", "teacher"), ("dmd", "student"), ("dmd-no-gd", "teacher"), ("dmd-no-gd", "student")]
    test_ids = json.loads((out / "subset.json").read_text())["test"]
    known = sum(1 for i in test_ids if not i.startswith("vader/"))  # the samples with a class
    for run in results["runs"]:
        assert set(run["test"]) == {f"{r:.1f}" for r in RATES}
        for scores in run["test"].values():
            assert set(scores) == {"Class_acc", "Class_macro_F1", "Non0_acc_2", "MAE", "Corr"}
            assert all(isinstance(v, float) and np.isfinite(v) for v in scores.values())
            assert 0 <= scores["Class_macro_F1"] <= scores["Class_acc"] * 7 and 0 < scores["MAE"] < 6
            hits = scores["Class_acc"] * known  # a count of the test's classified samples
            assert hits == pytest.approx(round(hits), abs=0.03)
        # dropping data changes what the model sees, and so its scores
        assert run["test"]["0.0"] != run["test"]["0.5"]
    teacher, student = results["runs"][:2]
    assert teacher["test"] != student["test"]
    # no sample holds two channels, so no edge exists and the graph units' losses are 0:
    # without them, the same seed trains the same network
    assert results["runs"][0]["test"] == results["runs"][2]["test"]
    assert results["runs"][1]["test"] == results["runs"][3]["test"]
    table = (out / "table.md").read_text()
    assert "| dmd | teacher |" in table and "ΔF1m @0.5" in table and "sign @0.3" in table
    assert table in capsys.readouterr().out


def test_a_corpus_without_classes_is_refused_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = {"train": _split(3, rng), "valid": _split(3, rng), "test": _split(3, rng)}
    for split in ("train", "valid", "test"):
        del data[split]["class_labels"]
    path = save_dataset(tmp_path / "plain.npz", data)
    assert main(["--corpus", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "class" in err


def test_the_edges_figure_on_a_corpus_draws_complete_windows_by_emotion(corpus, tmp_path):
    out = tmp_path / "run"
    figure = tmp_path / "edges.png"
    args = ["--corpus", str(corpus), "--corpus-train", "40", "--corpus-valid", "16", "--corpus-test", "32",
            "--corpus-pairs", "8", "--seeds", "0", "--epochs", "1", "--variants", "dmd", "dmd-alpha-1/8",
            "--out", str(out), "--threads", "1", "--edges-figure", str(figure), "--teachers-only"]
    assert main(args) == 2  # a corpus's own windows hold one channel: no edge to draw
    assert main([*args, "--corpus-edge-windows", "12"]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["variant"], r["role"]) for r in runs] == [("dmd", "teacher"), ("dmd-alpha-1/8", "teacher")]
    with np.load(out / "edges.npz") as edges:
        for name in ("dmd", "dmd-alpha-1/8"):
            for space in ("homo", "hetero"):
                weights = edges[f"{name}.{space}"]
                # every window holds all three channels: six edges that sum to 1
                assert weights.shape == (12, 6) and np.allclose(weights.sum(1), 1, atol=1e-5)
            assert (edges[f"{name}.classes"] >= 0).all()


def test_a_metric_undefined_for_some_seeds_is_averaged_over_the_others():
    import numpy as np

    from bench.ablation import _spread

    assert _spread(np.array([0.5, 0.7]), 2) == "0.60 ± 0.10"
    assert _spread(np.array([0.5, np.nan, 0.7]), 2) == "0.60 ± 0.10 (2 of 3 seeds)"
    assert _spread(np.array([-0.2, -0.4]), 1, signed=True) == "-0.3 ± 0.1"
    assert _spread(np.array([np.nan]), 2) == "n/a"
