"""A researcher's own labels and training folders: classes matched by name, a teacher
replaced with its student, labels that cannot train (the mistakes a new user made)."""

import json
import pickle
import shutil

import numpy as np
import pytest

from models.data import DataError, load_dataset, save_dataset
from tests.conftest import ROOT

NAMES = ("happy", "neutral", "sad")


def _classed(raw: dict, names: tuple[str, ...], order: tuple[str, ...] = NAMES) -> dict:
    """The synthetic set with emotion classes from its sentiment (happy > 0.5, sad < -0.5),
    named ``names`` and indexed in ``order`` (the same samples, the same classes)."""
    out = {"meta": {**raw["meta"], "class_names": list(names)}}
    for split in ("train", "valid", "test"):
        labels = np.asarray(raw[split]["regression_labels"])
        cls = np.where(labels > 0.5, 0, np.where(labels < -0.5, 2, 1))  # indices into NAMES
        out[split] = {**raw[split], "class_labels": np.array([names.index(order[k]) if order[k] in names else -1
                                                               for k in cls], dtype=np.int64)}
    return out


@pytest.fixture(scope="module")
def raw(synthetic_pickle) -> dict:
    return pickle.loads(synthetic_pickle.read_bytes())


@pytest.fixture(scope="module")
def classed(raw, tmp_path_factory):
    """(dataset .npz with three classes, training folder holding a teacher trained on it)."""
    from models.train import main

    folder = tmp_path_factory.mktemp("classed")
    data = save_dataset(folder / "classes.npz", _classed(raw, NAMES))
    out = folder / "run"
    assert main(["--data", str(data), "--out", str(out), "--stage", "teacher", "--config", "small",
                 "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    return data, out


@pytest.fixture(scope="module")
def trained(synthetic_pickle, tmp_path_factory):
    """A teacher and its student on the synthetic set (one epoch each: their scores are not
    under test here)."""
    from models.train import main

    out = tmp_path_factory.mktemp("pair")
    assert main(["--data", str(synthetic_pickle), "--out", str(out), "--config", "small", "--epochs", "1",
                 "--device", "cpu", "--quiet"]) == 0
    return out


def _run(main, capsys, *args) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def test_evaluation_matches_the_datas_classes_to_the_checkpoints_by_name(classed, raw, tmp_path, capsys):
    """The same samples and classes, indexed in another order (``realtime.extract`` sorts the
    classes a set holds: three of the bundled model's seven sit at other indices): before,
    each label was scored as whatever class shared its index (Class_acc 1.0 on one set, 0.0
    on another, exit 0)."""
    from models.evaluate import main

    data, out = classed
    reordered = save_dataset(tmp_path / "reordered.npz", _classed(raw, ("sad", "happy", "neutral")))
    fewer = save_dataset(tmp_path / "fewer.npz", _classed(raw, ("neutral", "sad")))  # happy unnamed: -1
    rows = {}
    for name, path in (("same", data), ("reordered", reordered), ("fewer", fewer)):
        code, err, stdout = _run(main, capsys, "--checkpoint", out / "teacher", "--data", path, "--device", "cpu")
        assert code == 0, err
        rows[name] = json.loads(stdout)
    assert rows["reordered"] == rows["same"]
    assert rows["same"]["rated"] == rows["same"]["samples"] > 0  # every sample rates a valence
    assert 0.0 < rows["same"]["Class_acc"] < 1.0  # a real score, not a degenerate one
    assert rows["fewer"]["Class_acc"] != rows["same"]["Class_acc"]  # scored on the named classes only

    angry = ("happy", "angry", "sad")  # the middle class named another way
    unknown = save_dataset(tmp_path / "unknown.npz", _classed(raw, angry, angry))
    code, err, _ = _run(main, capsys, "--checkpoint", out / "teacher", "--data", unknown, "--device", "cpu")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "['angry'] is not among them" in err[0]
    # a class the checkpoint does not know, named by the data but used by no label of the split scored
    elsewhere = _classed(raw, angry, angry)
    elsewhere["test"]["class_labels"] = np.where(elsewhere["test"]["class_labels"] == 1, -1,
                                                 elsewhere["test"]["class_labels"])
    elsewhere = save_dataset(tmp_path / "elsewhere.npz", elsewhere)
    code, err, stdout = _run(main, capsys, "--checkpoint", out / "teacher", "--data", elsewhere, "--device", "cpu")
    assert code == 0 and json.loads(stdout)["MAE"] == rows["same"]["MAE"], err


def test_a_config_without_classes_serves_both_stages(classed, tmp_path, capsys):
    """A config may train a model without the data's classes: its student stage takes the
    teacher made with the same config."""
    from models.train import main

    data, _ = classed
    config = tmp_path / "no_classes.json"
    config.write_text(json.dumps({"model": {"class_names": []}}))
    for stage in ("teacher", "student"):
        code, err, _ = _run(main, capsys, "--data", data, "--out", tmp_path / "run", "--stage", stage, "--config",
                            config, "--epochs", "1", "--device", "cpu", "--quiet")
        assert code == 0, (stage, err)


def test_a_student_stage_refuses_a_teacher_of_other_classes(classed, raw, tmp_path, capsys):
    """Four classes where the teacher knew three ended in IndexError's traceback mid-
    training; three other names trained a student that kept the teacher's names."""
    from models.train import main

    _, out = classed
    run = tmp_path / "run"
    shutil.copytree(out, run)
    four = _classed(raw, NAMES)
    four["meta"]["class_names"] = ["angry", *NAMES]
    for split in ("train", "valid", "test"):
        four[split]["class_labels"] = four[split]["class_labels"] + 1
    renamed = _classed(raw, ("happy", "nuetral", "sad"), ("happy", "nuetral", "sad"))
    for name, dataset in (("four", four), ("renamed", renamed)):
        path = save_dataset(tmp_path / f"{name}.npz", dataset)
        code, err, _ = _run(main, capsys, "--data", path, "--out", run, "--stage", "student", "--config", "small",
                            "--epochs", "1", "--device", "cpu", "--quiet")
        assert code == 2 and len(err) == 1 and "was trained on the classes" in err[0], (name, err)
        assert not (run / "student").exists()


def test_a_new_teacher_takes_the_student_of_the_old_one_with_it(trained, synthetic_pickle, tmp_path, capsys,
                                                                 monkeypatch, caplog):
    """A student distilled from a replaced teacher was served from the folder without a
    word: --stage teacher asks for --overwrite where a student is, and a new teacher removes
    it when saved, so a run stopped before its own student leaves the new teacher alone."""
    import models.train as train
    from models.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    old_teacher = load_checkpoint(run / "teacher").id
    args = ["--data", synthetic_pickle, "--out", run, "--config", "small", "--epochs", "1", "--device", "cpu",
            "--quiet", "--seed", "11"]
    code, err, _ = _run(train.main, capsys, *args, "--stage", "teacher")
    assert code == 2 and len(err) == 1 and "already holds teacher/ and student/" in err[0], err
    assert "the student distilled from it is removed" in err[0]

    fit = train.fit

    def stopped_in_the_student_stage(*a, teacher=None, **kw):
        if teacher is not None:
            raise KeyboardInterrupt
        return fit(*a, teacher=teacher, **kw)

    monkeypatch.setattr(train, "fit", stopped_in_the_student_stage)
    code, err, _ = _run(train.main, capsys, *args, "--stage", "both", "--overwrite")
    assert code == 130, err
    assert load_checkpoint(run / "teacher").id != old_teacher and not (run / "student").exists()
    assert load_checkpoint(run).path == run / "teacher"  # what serving the folder now takes

    monkeypatch.setattr(train, "fit", fit)
    shutil.rmtree(run)
    shutil.copytree(trained, run)
    caplog.clear()
    code, err, _ = _run(train.main, capsys, *args, "--stage", "teacher", "--overwrite")
    assert code == 0 and not (run / "student").exists()
    said = [r for r in caplog.records if "it was distilled from the teacher this run replaced" in r.getMessage()]
    assert said and said[0].levelname == "WARNING"


def test_labels_that_cannot_train_are_refused_in_one_line(raw, tmp_path):
    """An infinite sentiment trained with a loss of inf every epoch (exit 0); a class index
    past the names failed mid-training."""
    infinite = _classed(raw, NAMES)
    infinite["train"]["regression_labels"] = np.array(infinite["train"]["regression_labels"], dtype=np.float32)
    infinite["train"]["regression_labels"][5] = np.inf
    past = _classed(raw, NAMES)
    past["valid"]["class_labels"][0] = 3
    below = _classed(raw, NAMES)
    below["test"]["class_labels"][0] = -2
    for data, fragment in ((infinite, "'regression_labels' has infinite values in 1 samples"),
                           (past, "split 'valid' has class 3, but meta's class_names name 3"),
                           (below, "'class_labels' holds -2")):
        with pytest.raises(DataError, match=fragment):
            load_dataset(save_dataset(tmp_path / "bad.npz", data))


def test_a_class_no_training_sample_holds_is_named(raw, tmp_path, caplog):
    from models.train import main

    data = _classed(raw, NAMES)
    train = data["train"]["class_labels"]
    data["train"]["class_labels"] = np.where(train == 1, -1, train)  # 'neutral' only outside train
    path = save_dataset(tmp_path / "no_neutral.npz", data)
    assert load_dataset(path).classes_not_in("train") == ["neutral"]
    assert load_dataset(path).classes_not_in("test") == []
    caplog.clear()
    assert main(["--data", str(path), "--out", str(tmp_path / "o"), "--stage", "teacher", "--config", "small",
                 "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    assert [r for r in caplog.records if "['neutral'] have no sample in the train split" in r.getMessage()]


def test_a_checkpoint_given_as_a_file_or_a_folder_with_only_its_teacher(trained, synthetic_pickle, tmp_path, capsys,
                                                                        caplog):
    from models.evaluate import main

    code, err, _ = _run(main, capsys, "--checkpoint", synthetic_pickle, "--data", synthetic_pickle)
    assert code == 2 and len(err) == 1 and "a file; a checkpoint is a folder holding" in err[0], err
    only = tmp_path / "only"
    shutil.copytree(trained / "teacher", only / "teacher")
    caplog.clear()
    code, err, _ = _run(main, capsys, "--checkpoint", only, "--data", synthetic_pickle, "--device", "cpu")
    assert code == 0 and [r for r in caplog.records if "holds no student/: using its teacher" in r.getMessage()]


def test_a_set_whose_valid_and_test_splits_rate_no_valence_trains_and_scores_its_classes(raw, tmp_path, capsys):
    """Class-only rows (realtime.extract's empty label): evaluation raised ValueError on a
    split with no rated sample, and the validation score would have been NaN."""
    from models.evaluate import main as evaluate_main
    from models.train import main as train_main

    data = _classed(raw, NAMES)
    for split in ("valid", "test"):
        data[split]["valence_weights"] = np.zeros(len(data[split]["regression_labels"]), dtype=np.float32)
    path = save_dataset(tmp_path / "classes_only.npz", data)
    code, err, _ = _run(train_main, capsys, "--data", path, "--out", tmp_path / "o", "--stage", "teacher",
                        "--config", "small", "--epochs", "2", "--device", "cpu", "--quiet")
    assert code == 0, err
    doc = json.loads((tmp_path / "o" / "teacher" / "checkpoint.json").read_text())
    assert doc["provenance"]["best_epoch"] in (1, 2)
    code, err, stdout = _run(evaluate_main, capsys, "--checkpoint", tmp_path / "o", "--data", path, "--device", "cpu")
    assert code == 0, err
    row = json.loads(stdout)
    assert row["MAE"] is None and row["Corr"] is None and 0.0 <= row["Class_acc"] <= 1.0
    assert row["samples"] == len(data["test"]["regression_labels"]) and row["rated"] == 0


def test_overwrite_clears_an_interrupted_runs_state(trained, synthetic_pickle, tmp_path, capsys):
    """An interrupted --resume run's state survived a later --overwrite run; a --resume after
    it took that run's finished teacher for its own and trained over its student."""
    from models.distributed import RESUME_DIR, write_run_file
    from models.train import main

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    state = run / RESUME_DIR
    write_run_file(state, {"identity": {"data": str(synthetic_pickle), "stage": "both", "seed": 0},
                           "done": ["teacher"]})
    (state / "student.safetensors").write_bytes(b"an epoch's state")
    args = ["--data", synthetic_pickle, "--out", run, "--config", "small", "--epochs", "1", "--device", "cpu",
            "--quiet"]
    code, err, _ = _run(main, capsys, *args)
    assert code == 2 and "holds an interrupted run (resume/)" in err[0]
    code, err, _ = _run(main, capsys, *args, "--overwrite", "--seed", "7")
    assert code == 0, err
    assert not state.exists()
    code, err, _ = _run(main, capsys, *args, "--resume")
    assert code == 2 and len(err) == 1 and "finished: nothing to resume" in err[0], err


def test_a_model_that_learned_no_valence_says_so_when_trained_and_served(raw, tmp_path, capsys, caplog):
    from models.train import main
    from realtime.engine import find_checkpoint

    data = _classed(raw, NAMES)
    for split in ("train", "valid", "test"):
        data[split]["valence_weights"] = np.zeros(len(data[split]["regression_labels"]), dtype=np.float32)
    path = save_dataset(tmp_path / "classes_only.npz", data)
    caplog.clear()
    code, err, _ = _run(main, capsys, "--data", path, "--out", tmp_path / "o", "--stage", "teacher", "--config",
                        "small", "--epochs", "1", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert [r for r in caplog.records if "no sample of the train split rates a valence" in r.getMessage()]
    doc = json.loads((tmp_path / "o" / "teacher" / "checkpoint.json").read_text())
    assert doc["provenance"]["rated_samples"] == 0
    caplog.clear()
    find_checkpoint(str(tmp_path / "o"))
    assert [r for r in caplog.records if "learned no valence" in r.getMessage()]
    caplog.clear()
    find_checkpoint(None)  # the bundled model learned valence from rated sentences
    assert not [r for r in caplog.records if "learned no valence" in r.getMessage()]


def test_a_teacher_of_other_data_is_named_and_nothing_to_score_is_refused(classed, raw, tmp_path, capsys, caplog):
    from models.evaluate import main as evaluate_main
    from models.train import main as train_main

    data, out = classed
    run = tmp_path / "run"
    shutil.copytree(out, run)
    other = save_dataset(tmp_path / "other.npz", _classed(raw, NAMES))
    caplog.clear()
    code, err, _ = _run(train_main, capsys, "--data", other, "--out", run, "--stage", "student", "--config", "small",
                        "--epochs", "1", "--device", "cpu", "--quiet")
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if "was trained on" in r.getMessage()]
    assert len(said) == 1 and str(data) in said[0] and str(other) in said[0], said

    # a split that rates no valence, scored by a checkpoint without classes: nothing to score
    none = _classed(raw, NAMES)
    none["test"]["valence_weights"] = np.zeros(len(none["test"]["regression_labels"]), dtype=np.float32)
    none["test"]["class_labels"][:] = -1
    path = save_dataset(tmp_path / "none.npz", none)
    code, err, _ = _run(evaluate_main, capsys, "--checkpoint", run, "--data", path, "--device", "cpu")
    assert code == 2 and len(err) == 1 and "nothing to score: split 'test'" in err[0], err
    # the bundled model, where --help says it is
    from realtime.engine import DEFAULT_CHECKPOINT

    assert DEFAULT_CHECKPOINT.relative_to(ROOT).as_posix() == "realtime/assets/default"
    code, err, stdout = _run(evaluate_main, capsys, "--checkpoint", DEFAULT_CHECKPOINT, "--data", data,
                             "--device", "cpu")
    assert code == 2 and "trained on feature set" in err[0]  # found, and refused for the synthetic features
