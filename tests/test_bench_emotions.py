"""bench.emotions --score-only: scores the records a run left, and only that checkpoint's."""

import json

import numpy as np

from models.emotions import EMOTIONS


def _record(checkpoint: str, emotion: str) -> dict:
    probs = {e: (0.94 if e == emotion else 0.01) for e in EMOTIONS}
    return {"t_start": 0.0, "t_end": 3.0, "checkpoint": checkpoint, "emotions": probs, "sentiment": 1.5,
            "channels": {"face": {"emotions": probs, "sentiment": 1.5}}}


def test_score_only_reads_the_records_of_the_same_checkpoint_and_refuses_others(tmp_path, capsys):
    import cv2
    from skimage import data

    from bench.emotions import main
    from realtime.engine import find_checkpoint

    faces = tmp_path / "ck"
    for name, seq in (("happy", "S001_001"), ("sadness", "S002_001")):
        (faces / name).mkdir(parents=True)
        cv2.imwrite(str(faces / name / f"{seq}_00000001.png"), data.astronaut()[::4, ::4, ::-1])
    work, out = tmp_path / "work", tmp_path / "emotions.json"
    args = ["--faces", str(faces), "--work", str(work), "--json", str(out), "--score-only"]

    assert main(args) == 2  # nothing run yet
    assert "no records in" in capsys.readouterr().err

    records = work / "faces-out"
    records.mkdir(parents=True)
    for seq, emotion in (("S001_001", "happy"), ("S002_001", "happy")):
        (records / f"{seq}.jsonl").write_text(json.dumps(_record("someone-else", emotion)) + "\n")
    assert main(args) == 2
    assert "come from someone-else, not from " in capsys.readouterr().err and not out.exists()

    ours = find_checkpoint(None).id
    for seq, emotion in (("S001_001", "happy"), ("S002_001", "happy")):
        (records / f"{seq}.jsonl").write_text(json.dumps(_record(ours, emotion)) + "\n")
    assert main(args) == 0
    result = json.loads(out.read_text())["faces"]
    assert result["clips"] == 2 and result["seconds"] is None
    assert result["fused"]["accuracy"] == 0.5 and result["fused"]["confusion"]["sad"]["happy"] == 1
    assert np.isclose(result["mean_valence"]["happy"], 1.5)
