"""One kind of user error: every entry point reports it on one line with exit code 2,
and a missing model is named before any work starts (issue 14)."""

import json

import pytest

from models.errors import UserError


def test_every_error_a_user_can_fix_is_a_user_error():
    from models.checkpoint import CheckpointError
    from models.data import DataError
    from models.device import DeviceError
    from models.errors import ModelNotFoundError, UsageError
    from realtime.outputs import OutputError
    from realtime.plot import PlotError
    from realtime.service import UsageError as CliUsageError
    from realtime.sources.file import MediaError

    for kind in (CheckpointError, DataError, UsageError, DeviceError, ModelNotFoundError, OutputError, PlotError,
                 MediaError):
        assert issubclass(kind, UserError), kind
    assert CliUsageError is UsageError  # one class, wherever it is imported from
    assert issubclass(DataError, ValueError) and issubclass(ModelNotFoundError, RuntimeError)  # old excepts hold


@pytest.mark.parametrize("workers", [1, 2])
def test_extraction_names_a_missing_model_before_any_clip(tmp_path, capsys, workers):
    """A worker pool whose initializer fails restarts its workers for ever: the models are
    checked in the calling process first."""
    from realtime.extract import main

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b", "c"):
        (clips / f"{name}.mp4").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,split\na.mp4,1.0,train\nb.mp4,0.5,valid\nc.mp4,-1.0,test\n")
    code = main(["--videos", str(clips), "--labels", str(labels), "--out", str(tmp_path / "f.npz"), "--quiet",
                 "--workers", str(workers), "--whisper-model", str(tmp_path / "no-such-whisper")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-whisper" in lines[0]


@pytest.mark.parametrize("config, fragment", [
    ({"model": {"d": 10, "heads": 3}}, "must divide"),
    ({"model": {"no_such_key": 1}}, "no_such_key"),  # a TypeError inside
    ({"train": {"lr": "fast"}}, "config"),
])
def test_a_bad_training_config_is_a_one_line_error(tmp_path, synthetic_pickle, capsys, config, fragment):
    from models.train import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code = main(["--data", str(synthetic_pickle), "--out", str(tmp_path / "o"), "--config", str(path), "--epochs", "1",
                 "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: config ") and fragment in lines[0]
    assert not (tmp_path / "o").exists()  # nothing made before the config is known to be usable


def test_evaluation_reports_a_bad_missing_rate_on_one_line(tmp_path, capsys):
    from models.evaluate import main

    code = main(["--checkpoint", str(tmp_path), "--data", str(tmp_path / "none.npz"), "--missing-rate", "1.5"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == ["error: --missing-rate 1.5: must be within [0, 1]"]


def test_a_training_run_stopped_before_it_saved_leaves_no_empty_folder(tmp_path, synthetic_pickle, capsys,
                                                                       monkeypatch):
    """Ctrl-C during the first stage: exit 130, and the --out folder this run made, still
    empty, is removed; a folder that was there before is kept."""
    import models.train
    from models.train import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(models.train, "fit", interrupted)
    argv = ["--data", str(synthetic_pickle), "--epochs", "1", "--quiet", "--out"]
    assert main(argv + [str(tmp_path / "new")]) == 130
    assert "nothing saved" in capsys.readouterr().err and not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    assert main(argv + [str(tmp_path / "mine")]) == 130
    assert (tmp_path / "mine").is_dir()


def test_sigterm_ends_a_training_run_as_ctrl_c_does(tmp_path, synthetic_pickle):
    """SIGTERM (a scheduler's) ended training with 143 and nothing said; every command's
    README exit code for an interruption is 130."""
    import subprocess
    import sys

    script = ("import os, signal, sys, time\n"
              "import models.train as t\n"
              "def fit(*a, **k):\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(30)\n"
              "t.fit = fit\n"
              f"sys.exit(t.main(['--data', {str(synthetic_pickle)!r}, '--epochs', '1', '--quiet', "
              f"'--out', {str(tmp_path / 'run')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "error: interrupted; nothing saved for the stage in progress"


def test_a_whisper_path_that_is_missing_or_a_file_is_named_as_such(tmp_path):
    """Both read "is not a CTranslate2 Whisper folder (no model.bin)", which sent a user who
    had named model.bin itself looking for a model.bin."""
    from models.errors import ModelNotFoundError
    from realtime.features.speech import whisper_model_path

    with pytest.raises(ModelNotFoundError, match="Whisper folder '.*nowhere' does not exist"):
        whisper_model_path(str(tmp_path / "nowhere"))
    (tmp_path / "model.bin").write_bytes(b"weights")
    with pytest.raises(ModelNotFoundError, match="model.bin' is a file; give the CTranslate2 Whisper folder"):
        whisper_model_path(str(tmp_path / "model.bin"))
    assert whisper_model_path(str(tmp_path)) == tmp_path
    (tmp_path / "model.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="is not a CTranslate2 Whisper folder"):
        whisper_model_path(str(tmp_path))
