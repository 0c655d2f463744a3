"""The words' encoder: which one a feature set names, how mpnet's split weights are joined,
and what a wrong model folder gets."""

import subprocess
import sys

import numpy as np
import pytest

from models.errors import ModelNotFoundError, UserError
from realtime.features.text import MPNET_SHA256, TextEmbedder, TextOptions, default_text_model
from realtime.featureset import FeatureSpec
from tests.conftest import ROOT


def test_a_feature_set_names_its_encoder_and_older_checkpoints_keep_minilm():
    for encoder, width in (("mpnet", 768), ("minilm", 384)):
        described = FeatureSpec(text_encoder=encoder).describe()
        assert described["dims"]["L"] == width and described["extractor"]["text_encoder"] == encoder
        assert FeatureSpec.from_checkpoint(described) == FeatureSpec(text_encoder=encoder)
    # made before the choice: no encoder named; the width of L says which
    legacy = FeatureSpec(text_encoder="minilm").describe()
    del legacy["extractor"]["text_encoder"]
    assert FeatureSpec.from_checkpoint(legacy).text_encoder == "minilm"
    legacy["dims"]["L"] = 768
    assert FeatureSpec.from_checkpoint(legacy).text_encoder == "mpnet"
    with pytest.raises(UserError, match="unknown text encoder 'glove'"):
        _ = FeatureSpec(text_encoder="glove").dims


def test_a_feature_set_names_its_words_context_and_older_checkpoints_read_none():
    spec = FeatureSpec(text_context=7)
    assert FeatureSpec.from_checkpoint(spec.describe()) == spec and spec.window_spec(0.5).text_context == 7
    legacy = spec.describe()
    del legacy["extractor"]["text_context"]  # made before the choice: the window's words only
    assert FeatureSpec.from_checkpoint(legacy).text_context == 0


def test_a_feature_set_names_its_voicing_and_older_checkpoints_read_the_level_alone():
    spec = FeatureSpec()
    assert spec.voicing == "speech" and spec.describe()["extractor"]["voicing"] == "speech"
    assert spec.acoustic_options().voicing == "speech"
    legacy = spec.describe()
    del legacy["extractor"]["voicing"]  # made before the voice detector: noise counted as voice
    assert FeatureSpec.from_checkpoint(legacy).voicing == "level"
    with pytest.raises(ValueError, match="voicing must be one of speech, level"):
        FeatureSpec(voicing="loud").acoustic_options()


def test_a_checkpoint_refuses_data_voiced_another_way():
    """Training or evaluating the bundled model ('speech') on a dataset extracted before the
    voice detector ('level', or no voicing named) is refused with what to do; data that
    names no extractor (MMSA's features) is not judged."""
    from models.checkpoint import CheckpointError
    from realtime.engine import find_checkpoint

    ckpt = find_checkpoint(None)
    name, dims, steps = ckpt.feature_set["name"], FeatureSpec().dims, FeatureSpec().steps
    ckpt.check_features(name, dims, steps, {"voicing": "speech"})
    ckpt.check_features(name, dims, steps, None)
    for older in ({"voicing": "level"}, {"window": 4.0}):
        with pytest.raises(CheckpointError, match="voiced by 'speech', the data's are voiced by 'level'; extract the"):
            ckpt.check_features(name, dims, steps, older)


def test_mpnet_is_joined_once_from_its_packages_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_CACHE", str(tmp_path))
    folder = default_text_model("mpnet")
    assert folder.parent == tmp_path and (folder / "config.json").is_file()
    assert MPNET_SHA256[:12] in folder.name
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert default_text_model("mpnet") == folder and weights.stat().st_mtime_ns == stamp  # not joined again
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no half-joined leftovers


def test_tokens_keep_the_start_and_the_most_recent_words():
    import torch

    embedder = TextEmbedder(TextOptions(encoder="minilm", max_tokens=8))
    short = "what a lovely day".split()
    long = ("the meeting ran long and nobody listened " * 3 + "what a lovely day").split()
    x, mask = embedder.embed_many([short, [], long])
    assert x.shape == (3, 8, 384) and mask.sum(1).tolist() == [6.0, 0.0, 8.0]
    assert not x[1].any()
    with torch.inference_mode():  # the whole long text alone: its start token, then its last 7
        full = embedder.model(**embedder.tokenizer(" ".join(long), return_tensors="pt")).last_hidden_state[0]
    assert np.allclose(x[2], np.concatenate([full[:1], full[-7:]]), atol=1e-4)


def test_a_model_folder_of_another_width_is_refused_in_one_line():
    minilm = default_text_model("minilm")
    with pytest.raises(ModelNotFoundError, match="gives 384-d tokens; the mpnet encoder gives 768-d"):
        TextEmbedder(TextOptions(model_path=str(minilm), encoder="mpnet"))


def test_the_extraction_cache_is_kept_apart_per_encoder(tmp_path):
    from realtime.extract import Clip, cache_path

    clip_file = tmp_path / "a.mp4"
    clip_file.write_bytes(b"x")
    clip = Clip(path=clip_file, label=0.0, split=None, group="a")
    assert cache_path(tmp_path, clip, "mpnet") != cache_path(tmp_path, clip, "minilm")


def test_an_unknown_encoder_on_the_command_line_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "realtime.corpus", "--out", str(tmp_path / "c.npz"), "--texts",
                           str(tmp_path), "--text-encoder", "glove"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'glove'" in proc.stderr


def test_repeated_word_lists_are_embedded_once_and_the_memory_is_bounded():
    embedder = TextEmbedder(TextOptions(encoder="minilm"))
    calls = []
    forward = embedder.model.forward
    embedder.model.forward = lambda *a, **k: calls.append(k["input_ids"].shape[0]) or forward(*a, **k)
    first, second = "I am so happy today".split(), "this is awful".split()
    x, mask = embedder.embed_many([first, second, first, []])
    again, _ = embedder.embed_many([second, first])
    assert calls == [2]  # two distinct lists, one batch; the second call computed nothing
    assert np.array_equal(again[0], x[1]) and np.array_equal(again[1], x[0]) and not x[3].any()
    alone = TextEmbedder(TextOptions(encoder="minilm")).embed_many([first])[0]
    assert np.allclose(alone[0], x[0], atol=1e-5)  # batching does not change a list's tokens
    embedder.CACHE = 2
    embedder.embed_many([["one"], ["two"], ["three"]])
    assert len(embedder._cache) == 2
    # a remembered list asked for after new ones in one batch, whose remembering evicts it
    old = embedder.embed_many([["two"]])[0]
    mixed, _ = embedder.embed_many([["four"], ["five"], ["two"]])
    assert np.array_equal(mixed[2], old[0]) and len(embedder._cache) == 2


LISTS = [["hello", "there"], [], "the meeting ran long and nobody listened to what a lovely day it was".split()]


def test_the_live_encoder_runs_in_onnx_runtime_with_torchs_numbers_exported_once(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_CACHE", str(tmp_path))
    cache = tmp_path / "text-onnx"
    cache.mkdir()
    stale = cache / f"{default_text_model('minilm').name}-0123456789abcdef.onnx"  # exported by older versions
    other = cache / "another-model-0123456789abcdef.onnx"
    stale.write_bytes(b"old")
    other.write_bytes(b"kept")
    fast = TextEmbedder(TextOptions(encoder="minilm"), onnx=True)
    assert fast.runtime == "onnxruntime" and fast.model is None  # torch's copy of the weights let go
    assert not stale.exists() and other.exists()  # one graph per model in the cache
    graphs = [p for p in cache.iterdir() if p != other]
    assert len(graphs) == 1 and graphs[0].suffix == ".onnx"  # no temporary leftovers
    x, mask = fast.embed_many(LISTS)
    y, torch_mask = TextEmbedder(TextOptions(encoder="minilm")).embed_many(LISTS)
    assert (mask == torch_mask).all() and np.abs(x - y).max() < 1e-4 and x[2].any()
    stamp = graphs[0].stat().st_mtime_ns
    again = TextEmbedder(TextOptions(encoder="minilm"), onnx=True)
    assert again.runtime == "onnxruntime"
    assert graphs[0].stat().st_mtime_ns == stamp  # the next run opens it: not exported again
    again.embed_many(LISTS[:1])
    again.close()
    again.close()  # idempotent
    assert again.runtime == "closed" and again.embed_many(LISTS[:1])[1].sum() == 4  # remembered: still read
    with pytest.raises(RuntimeError, match="closed"):
        again.embed_many([["new", "words"]])


def test_a_damaged_cached_graph_leaves_the_words_in_torch_and_is_exported_afresh_next_time(tmp_path, monkeypatch,
                                                                                         caplog):
    from realtime.features.text_onnx import graph_name

    monkeypatch.setenv("REALTIME_CACHE", str(tmp_path))
    folder = default_text_model("minilm")
    graph = tmp_path / "text-onnx" / graph_name(folder)
    graph.parent.mkdir()
    graph.write_bytes(b"half a graph")  # a disk that filled up, a killed writer of an older version
    from realtime.features import text

    monkeypatch.setattr(text, "native_bfloat16", lambda: True)  # auto would choose bfloat16 for torch
    slow = TextEmbedder(TextOptions(encoder="minilm"), onnx=True, precision="auto")
    assert slow.runtime == "torch" and "the text encoder stays in torch" in caplog.text
    assert slow.precision == "float32"  # a live run's words stay float32 where torch serves them
    x, _ = slow.embed_many(LISTS)
    y, _ = TextEmbedder(TextOptions(encoder="minilm")).embed_many(LISTS)
    assert np.array_equal(x, y)  # the same words, served as before
    assert TextEmbedder(TextOptions(encoder="minilm"), onnx=True).runtime == "onnxruntime"


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it_and_torch_runs_the_words(monkeypatch):
    from realtime.features import text

    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(text, "native_bfloat16", lambda native=native: native)
        assert text.text_precision("auto", "cpu", onnx=False) == expected
        assert text.text_precision("auto", "cuda:0", onnx=False) == "float32"  # not measured on a GPU yet
        assert text.text_precision("auto", "cpu", onnx=True) == "float32"  # ONNX Runtime serves float32
        assert text.text_precision("float32", "cpu", onnx=False) == "float32"
        assert text.text_precision("bfloat16", "cpu", onnx=False) == "bfloat16"  # asked for: honoured
    with pytest.raises(ValueError, match="unknown text precision 'half'"):
        TextEmbedder(TextOptions(encoder="minilm"), precision="half")


def test_a_lists_bfloat16_tokens_do_not_depend_on_the_lists_embedded_beside_it(request):
    """Padded to its batch's longest list, a list's bfloat16 tokens moved by up to 0.004 with
    the lists beside it (so a window's reading with how windows were batched: the GUI and a
    file run of the same media differed); each is padded by its own length instead."""
    words = "the meeting ran long and nobody listened to what a lovely day it was outside".split()
    lists = [words[i: i + n] for i, n in zip(range(12), [3, 7, 11, 5, 9, 2] * 2)]
    embedder = TextEmbedder(TextOptions(encoder="minilm"), precision="bfloat16")
    request.addfinalizer(embedder.close)
    together, mask = embedder.embed_many(lists)
    embedder.clear_cache()
    alone = [embedder.embed_many([one])[0][0] for one in lists]
    assert all(np.abs(together[i] - alone[i]).max() < 1e-5 for i in range(len(lists)))
    assert mask.sum(1).min() < mask.sum(1).max()  # lists of several lengths, padded in one batch before


def test_bfloat16_linear_weights_stored_cast_give_what_autocast_gave_from_float32_weights(request):
    """In bfloat16 the linear layers keep their weights cast once (autocast had cast them from
    float32 on every call): the tokens must stay the same to the bit. MiniLM (a BERT) stands
    in for mpnet, whose two copies would cost 840 MB and seconds to load; both are
    transformers' linear layers under the same autocast (mpnet checked by hand: equal)."""
    import torch

    words = "the meeting ran long and nobody listened to what a lovely day it was outside".split()
    lists = [words[i: i + n] for i, n in zip(range(12), [3, 7, 11, 5, 9, 2] * 2)]
    stored = TextEmbedder(TextOptions(encoder="minilm"), precision="bfloat16")
    request.addfinalizer(stored.close)
    cast_each_call = TextEmbedder(TextOptions(encoder="minilm"), precision="float32")
    request.addfinalizer(cast_each_call.close)
    cast_each_call.precision = "bfloat16"  # autocast over float32 weights, as before
    dtypes = {m.weight.dtype for m in stored.model.modules() if isinstance(m, torch.nn.Linear)}
    assert dtypes == {torch.bfloat16}
    assert {p.dtype for p in cast_each_call.model.parameters()} == {torch.float32}
    kept = {p.dtype for n, p in stored.model.named_parameters() if "LayerNorm" in n or "embeddings" in n}
    assert kept == {torch.float32}
    new, mask = stored.embed_many(lists)
    old, old_mask = cast_each_call.embed_many(lists)
    assert np.array_equal(mask, old_mask) and mask.sum() > 0
    assert np.array_equal(new, old)


def test_bfloat16_words_keep_float32s_tokens_and_the_models_readings(components, request):
    """The bfloat16 encoder (file runs' default on a CPU with bfloat16 instructions) against
    float32 on real sentences (one of the two is the session's, whichever this CPU chose):
    every token within a cosine of 0.999, and the bundled model's readings of text-only
    windows within 0.03 (probabilities) and 0.1 (sentiment, -3..3)."""
    import copy
    import json

    from bench.e2e import varied_sentences
    from realtime.engine import InferenceEngine, find_checkpoint
    from realtime.featureset import FeatureSpec
    from realtime.types import Window, Word

    script = json.loads((ROOT / "examples" / "talking.json").read_text())["sentences"]
    words = " ".join([s["text"] for s in script] + [s for s, _ in varied_sentences(12)]).split()
    lists = [words[i: i + n] for i, n in zip(range(0, len(words) - 14, 5), [4, 9, 14] * 40)]
    spec = FeatureSpec.from_checkpoint(find_checkpoint(None).feature_set)
    shared = components.engine.text
    other = TextEmbedder(spec.text_options(), precision="float32" if shared.precision == "bfloat16" else "bfloat16")
    request.addfinalizer(other.close)
    exact, half = (other, shared) if shared.precision == "bfloat16" else (shared, other)
    assert (exact.precision, half.precision, half.options) == ("float32", "bfloat16", exact.options)
    x, mask = exact.embed_many(lists)
    y, half_mask = half.embed_many(lists)
    assert np.array_equal(mask, half_mask)
    keep = mask.astype(bool)
    cos = (x[keep] * y[keep]).sum(1) / np.linalg.norm(x[keep], axis=1) / np.linalg.norm(y[keep], axis=1)
    assert cos.min() > 0.999, cos.min()
    assert np.abs(x - y).max() > 0  # bfloat16 did compute: not float32 under another name

    import torch

    engine = InferenceEngine(find_checkpoint(None), torch.device("cpu"), exact, runtime="torch")
    other = copy.copy(engine)
    other.text = half
    windows = [Window(index=i, t_start=0.0, t_end=spec.window,
                      face=np.zeros((spec.face_steps, spec.dims["V"]), np.float32),
                      face_mask=np.zeros(spec.face_steps, np.float32),
                      audio=np.zeros((spec.audio_steps, spec.dims["A"]), np.float32),
                      audio_mask=np.zeros(spec.audio_steps, np.float32),
                      words=[Word(start=0.1 * k, end=0.1 * k + 0.1, text=w) for k, w in enumerate(ws)])
               for i, ws in enumerate(lists)]
    probs, sentiment = [], []
    for a, b in zip(engine(windows), other(windows)):
        probs.append(max(abs(a.emotions[k] - b.emotions[k]) for k in a.emotions))
        sentiment.append(abs(a.sentiment - b.sentiment))
    assert max(probs) < 0.03 and max(sentiment) < 0.1, (max(probs), max(sentiment))
