"""Training and evaluation CLIs on synthetic data, checkpoints, and bad input."""

import json
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

from models.checkpoint import CheckpointError, load_checkpoint
from models.data import DataError, load_dataset
from models.graph_distill import EDGE_NAMES
from models.metrics import regression_metrics, weighted_f1


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def evaluate(capsys, *args) -> Ran:
    """python -m models.evaluate in this process: what it does with a checkpoint and a
    dataset, not the process, is under test (and each process would import torch again)."""
    from models.evaluate import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


@pytest.fixture(scope="module")
def trained(synthetic_pickle, tmp_path_factory):
    """Teacher + CorrKD student on the small synthetic set, CI-sized (in this process): 3
    epochs each are enough for what the tests below assert (test MAE 0.72 where a constant
    scores 1.50; 6 epochs cost twice as much for 0.55)."""
    from models.train import main

    out = tmp_path_factory.mktemp("run")
    code = main(["--data", str(synthetic_pickle), "--out", str(out), "--config", "small", "--epochs", "3",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    return out


@pytest.mark.slow
def test_student_beats_a_constant_predictor(trained, synthetic_pickle, capsys):
    proc = evaluate(capsys, "--checkpoint", trained, "--data", synthetic_pickle, "--missing-rate", "0", "0.5",
                    "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["missing_rate"] for r in rows] == [0.0, 0.5]
    labels = load_dataset(synthetic_pickle).splits["test"].labels
    constant = regression_metrics(np.full_like(labels, np.median(labels)), labels)
    complete = rows[0]
    assert complete["MAE"] < 0.6 * constant["MAE"]
    assert complete["Non0_acc_2"] > 0.85 > constant["Non0_acc_2"] + 0.2
    assert rows[1]["MAE"] < constant["MAE"]


@pytest.mark.slow
def test_checkpoint_describes_itself(trained, synthetic_pickle):
    ckpt = load_checkpoint(trained)  # the training folder resolves to its student
    assert ckpt.provenance["role"] == "student"
    assert ckpt.feature_set["name"] == "synthetic"
    assert ckpt.feature_set["dims"] == {"L": 24, "A": 8, "V": 12}
    assert {"date", "code_version", "test_metrics", "dataset", "id"} <= set(ckpt.provenance)
    with pytest.raises(CheckpointError, match="feature set"):
        ckpt.check_features("live-v1", ckpt.feature_set["dims"])
    with pytest.raises(CheckpointError, match="dims"):
        ckpt.check_features("synthetic", {"L": 24, "A": 9, "V": 12})


@pytest.mark.slow
def test_learned_edges_say_language_teaches(trained, synthetic_pickle):
    import torch

    from models.loop import batches

    net = load_checkpoint(trained).build("cpu")
    split = load_dataset(synthetic_pickle).splits["test"]
    with torch.no_grad():
        edges = torch.cat([net(b.inputs, b.masks).edges_homo for b in batches(split, 64, torch.device("cpu"))])
    mean = dict(zip(EDGE_NAMES, edges.mean(0).tolist()))
    assert mean["L->A"] > mean["A->L"] and mean["L->V"] > mean["V->L"]


@pytest.mark.slow
def test_evaluate_subsets(trained, synthetic_pickle, capsys):
    proc = evaluate(capsys, "--checkpoint", trained, "--data", synthetic_pickle, "--missing-rate", "0", "--subsets",
                    "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_subset = {r["available"]: r for r in rows if "available" in r}
    assert set(by_subset) == {"L", "A", "V", "LA", "LV", "AV", "LAV"}
    assert by_subset["LAV"]["MAE"] < by_subset["A"]["MAE"]


def _write(path, data):
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return path


def _broken_variants(tmp_path, synthetic_pickle):
    good = pickle.loads(synthetic_pickle.read_bytes())
    no_audio = pickle.loads(synthetic_pickle.read_bytes())
    del no_audio["valid"]["audio"]
    bad_shape = pickle.loads(synthetic_pickle.read_bytes())
    bad_shape["train"]["vision"] = bad_shape["train"]["vision"][:, :, 0]
    nan = pickle.loads(synthetic_pickle.read_bytes())
    nan["test"]["text"][3, 2, 1] = np.nan
    empty = pickle.loads(synthetic_pickle.read_bytes())
    for key in ("text", "audio", "vision"):
        empty["valid"][key] = empty["valid"][key][:0]
    empty["valid"]["regression_labels"] = empty["valid"]["regression_labels"][:0]
    assert good
    not_pickle = tmp_path / "notes.pkl"
    not_pickle.write_text("hello")
    video = tmp_path / "clip.mp4"  # a pickle by its bytes, a video by its name: never unpickled
    video.write_bytes(synthetic_pickle.read_bytes())
    text_npz = tmp_path / "notes.npz"
    text_npz.write_text("hello")
    object_npz = tmp_path / "objects.npz"
    np.savez(object_npz, **{"train.id": np.array([{"a": 1}], dtype=object)})
    half_npz = tmp_path / "half.npz"  # a copy cut short: a zip, but not a whole one
    np.savez(half_npz, **{"train.text": np.zeros((50, 8, 4), np.float32)})
    half_npz.write_bytes(half_npz.read_bytes()[: half_npz.stat().st_size // 2])
    return {
        "not a readable dataset archive": half_npz,
        "a dataset is a .npz": video,
        "not a NumPy archive": text_npz,
        "it holds object arrays": object_npz,
        "lacks key 'audio'": _write(tmp_path / "no_audio.pkl", no_audio),
        "'vision' should have 3 dimensions": _write(tmp_path / "shape.pkl", bad_shape),
        "NaN values": _write(tmp_path / "nan.pkl", nan),
        "split 'valid' is empty": _write(tmp_path / "empty.pkl", empty),
        "not a readable pickle": not_pickle,
        "no such file": tmp_path / "absent.pkl",
    }


def test_bad_datasets_give_one_line_errors(tmp_path, synthetic_pickle, capsys):
    from models.train import main

    for message, path in _broken_variants(tmp_path, synthetic_pickle).items():
        with pytest.raises(DataError, match=message):
            load_dataset(path)
        # python -m models.train, in this process (the process boundary is not what is tested)
        capsys.readouterr()
        code = main(["--data", str(path), "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"])
        stderr = capsys.readouterr().err
        assert code == 2, (message, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message.split("'")[0] in lines[0]


@pytest.mark.slow
def test_bad_checkpoints_and_devices(tmp_path, trained, synthetic_pickle, capsys):
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    student = trained / "student"
    (truncated / "checkpoint.json").write_bytes((student / "checkpoint.json").read_bytes())
    (truncated / "model.safetensors").write_bytes((student / "model.safetensors").read_bytes()[:1000])
    cases = {
        str(tmp_path / "nowhere"): "no such checkpoint",
        str(truncated): "unreadable weights",
    }
    for path, message in cases.items():
        proc = evaluate(capsys, "--checkpoint", path, "--data", synthetic_pickle)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = evaluate(capsys, "--checkpoint", trained, "--data", synthetic_pickle, "--device", "tpu")
    assert proc.returncode == 2 and "unknown device" in proc.stderr


def test_metrics_match_hand_computed_values():
    truth = np.array([-2.0, -0.4, 0.0, 0.6, 2.8, 1.2])
    pred = np.array([-1.6, 0.2, -0.1, 0.4, 3.4, 0.9])
    m = regression_metrics(pred, truth)
    assert m["MAE"] == pytest.approx(np.mean(np.abs(pred - truth)), abs=1e-4)
    assert m["Has0_acc_2"] == pytest.approx(4 / 6, abs=1e-4)  # -0.4 and 0.0 are misjudged
    assert m["Non0_acc_2"] == pytest.approx(4 / 5, abs=1e-4)  # the zero is excluded
    assert m["Mult_acc_7"] == pytest.approx(5 / 6, abs=1e-4)  # only 0.6 -> 1 vs 0.4 -> 0 differs
    assert weighted_f1(np.array([True, True, False]), np.array([True, False, False])) == pytest.approx(
        (2 / 3) * (2 / 3) + (1 / 3) * (2 / 3), abs=1e-6)
    assert m["Corr"] == pytest.approx(np.corrcoef(pred, truth)[0, 1], abs=1e-4)
    # one sample, or a prediction that never moves, has no correlation: NaN (null in JSON), not 0
    assert np.isnan(regression_metrics(pred[:1], truth[:1])["Corr"])
    assert np.isnan(regression_metrics(np.zeros(6), truth)["Corr"])


def test_a_resume_with_other_settings_names_each_one(tmp_path):
    from models.errors import UsageError
    from models.train import _start_or_resume

    settings = {"data": "/d.npz", "stage": "both", "seed": 0, "train": {"epochs": 30, "lr": 0.001}}
    assert _start_or_resume(tmp_path / "resume", False, settings) == []
    changed = {**settings, "seed": 1, "train": {"epochs": 12, "lr": 0.001}}
    with pytest.raises(UsageError, match=r"\(seed: 0 -> 1; train\.epochs: 30 -> 12\)"):
        _start_or_resume(tmp_path / "resume", True, changed)
    assert _start_or_resume(tmp_path / "resume", True, settings) == []  # as it was: resumes
