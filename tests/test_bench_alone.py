"""bench.alone: each stage of a file run alone on the same media (issue 15's 1.3x measure);
and the bench's command line."""

import pytest

from tests.conftest import EXAMPLE, in_file_steps, read_records


@pytest.mark.slow
def test_each_stage_alone_sees_what_a_file_run_gives_it(components, example_run):
    from bench.alone import stages_alone
    from realtime.sources.file import FileSource
    from realtime.types import VideoFrame

    out = stages_alone(EXAMPLE, components=components)
    frames = sum(isinstance(item, VideoFrame) for item in FileSource(EXAMPLE))
    assert out["face_frames"] == frames and out["face_found"] >= 0.9 * frames  # a real face in every frame
    assert out["speech_words"] >= 40, out  # the example says 47 words
    # the model stage scores as many windows as a file run of the same media writes, and
    # embeds more than one word list (its memory of earlier lists was cleared)
    records = read_records(example_run[0])
    assert out["model_windows"] == len(records)
    assert 1 < out["model_lists"] <= out["model_windows"]
    stages = ("decode", "face", "acoustic", "speech", "model")
    assert all(out[name] > 0 for name in stages)
    assert out["slowest"] in stages
    assert abs(out["media_s"] - 22.5) < 0.5
    assert not components.face.closed  # models it was given are the caller's to close


@pytest.mark.slow
def test_the_model_stage_scores_the_windows_a_file_run_writes(components, example_run):
    """Its windows end where the run's records end and hold the same words."""
    from bench.alone import word_windows
    from realtime.sources.file import FileSource
    from realtime.types import AudioChunk

    source = FileSource(EXAMPLE)
    words = in_file_steps(components.whisper, [item for item in source if isinstance(item, AudioChunk)])
    windows = word_windows(components.engine, words, source.end_time)
    records = read_records(example_run[0])
    assert [round(w.t_end, 3) for w in windows] == [round(r["t_end"], 3) for r in records]
    assert [[word.text for word in w.words] for w in windows] == [r["words"] for r in records]
    assert sum(bool(r["words"]) for r in records) > 0.8 * len(records)  # the example talks throughout


def test_the_varied_bench_speech_never_repeats_a_sentence():
    from bench.e2e import varied_sentences

    sentences = varied_sentences(300)
    assert len({text for text, _ in sentences}) == 300  # 5 minutes need about 120
    assert sentences == varied_sentences(300) and sentences != varied_sentences(300, seed=1)


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_the_bench_refuses_an_unwritable_json_before_measuring(where, tmp_path, capsys):
    from bench.__main__ import main

    (tmp_path / "notes").write_text("a file")
    target = tmp_path / "notes" / "r.json" if where == "under_a_file" else tmp_path
    assert main(["--only", "file", "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # one line, and no part begun ("bench: file ...")
    assert len(err) == 1 and err[0].startswith("error: cannot write --json"), err


def test_a_json_that_cannot_be_written_after_measuring_is_an_output_error(capsys):
    """/proc takes no new file, though its folder looks writable (to root): the figures are
    printed, then one line and exit 2 (it was 1, the code of a bug)."""
    from bench.__main__ import main

    assert main(["--only", "reference", "--json", "/proc/bench.json"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: cannot write --json '/proc/bench.json'"), err


@pytest.mark.parametrize("copy", ["missing", "not_theirs", "broken", "another_class"])
def test_the_bench_refuses_a_reference_that_is_not_the_authors_dmd(copy, tmp_path, capsys):
    """--reference-dmd names a folder that is not there, lacks their files, or whose dmd.py
    does not build their DMD (a fork, another version): one line, exit 2, before measuring
    (the last two had ended in a traceback after the parts before it)."""
    from bench.__main__ import main

    root = tmp_path / "DMD"
    if copy != "missing":
        (root / "trains/subNets/transformers_encoder").mkdir(parents=True)
        (root / "trains/subNets/transformers_encoder/transformer.py").write_text("")
    if copy in ("broken", "another_class"):
        (root / "trains/singleTask/model").mkdir(parents=True)
        (root / "trains/singleTask/model/dmd.py").write_text(
            "def broken(:\n" if copy == "broken" else "class DMD:\n    pass\n")
    assert main(["--only", "reference", "--reference-dmd", str(root), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"missing": "does not exist", "not_theirs": "is not a copy of mdswyz/DMD",
                "broken": "cannot be built (SyntaxError", "another_class": "cannot be built (TypeError"}[copy]
    assert len(err) == 1 and err[0].startswith("error: --reference-dmd: ") and expected in err[0], err
