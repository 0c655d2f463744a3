"""DHMD (models/dhmd.py): shapes, every loss term's gradient, masking of absent channels,
checkpoints, training with classes, serving through python -m realtime, and edges only
among the modalities present."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import MODALITIES, PRESETS, ModelConfig, TrainConfig
from models.corrkd import corrkd_losses, drop_missing
from models.dhmd import DHMD, DHMDOutput, matching_loss, network_for
from models.dmd import DMD
from models.graph_distill import EDGE_NAMES, EDGES, GDUnit
from models.losses import DMDLosses, dmd_losses
from tests.conftest import read_records, run_main


def make_cfg(classes=(), **over):
    return ModelConfig(dims={"L": 24, "A": 8, "V": 10}, steps={"L": 12, "A": 20, "V": 16}, class_names=classes,
                       architecture="dhmd", **{**PRESETS["small"]["model"], **over})


def make_batch(cfg, batch=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(batch, cfg.steps[m], cfg.dims[m], generator=gen) for m in MODALITIES}
    masks = {m: torch.ones(batch, cfg.steps[m]) for m in MODALITIES}
    return inputs, masks


@pytest.mark.parametrize("classes", [(), ("neutral", "happy", "sad")], ids=["regression", "classes"])
def test_shapes(classes):
    torch.manual_seed(0)
    cfg = make_cfg(classes, dict_atoms=12)
    net = network_for(cfg)
    assert isinstance(net, DHMD) and isinstance(network_for(dataclasses.replace(cfg, architecture="dmd")), DMD)
    inputs, masks = make_batch(cfg, batch=5)
    masks["A"][:, 15:] = 0
    out = net(inputs, masks)
    assert isinstance(out, DHMDOutput) and out.sentiment.shape == (5,)
    assert (out.class_logits is None) == (not classes)
    for m in MODALITIES:
        for atoms in (out.atoms_homo[m], out.atoms_hetero[m]):
            assert atoms.shape == (5, 12) and (atoms >= 0).all()
            torch.testing.assert_close(atoms.sum(1), torch.ones(5))
        assert out.dict_error_homo[m].shape == out.dict_error_hetero[m].shape == (5, cfg.steps[m])


def test_every_loss_term_has_gradients():
    """Each term alone moves some weight; the dictionary terms move the atoms they own."""
    torch.manual_seed(0)
    cfg = make_cfg(("neutral", "happy", "sad"))
    net = DHMD(cfg)
    inputs, masks = make_batch(cfg, batch=8)
    labels = torch.tensor([-2.5, -1.0, 0.0, 0.5, 1.5, 2.5, -0.5, 2.0])
    classes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    names = [f.name for f in dataclasses.fields(DMDLosses)]
    for name in names:
        net.zero_grad()
        losses = dmd_losses(net(inputs, masks), labels, TrainConfig(), classes)
        term = getattr(losses, name)
        assert term.requires_grad, name
        term.backward()
        moved = sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)
        assert moved > 0, f"{name} gives no gradient"
        if name == "dict_fit":
            assert net.dict_homo.atoms.grad.abs().sum() > 0 and net.dict_hetero.atoms.grad.abs().sum() > 0
        if name == "dict_match":  # the students' features learn; the edges are the coarse stage's
            assert net.encoder_c.weight.grad.abs().sum() > 0
            assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.gd_homo.parameters())


def test_matching_ignores_absent_channels():
    """An absent modality neither teaches nor learns: its activations change nothing."""
    gen = torch.Generator().manual_seed(1)
    atoms = {m: torch.softmax(torch.randn(4, 8, generator=gen), 1).requires_grad_() for m in MODALITIES}
    edges = torch.softmax(torch.randn(4, 6, generator=gen), 1)
    present = torch.ones(4, 3)
    present[1, MODALITIES.index("V")] = 0  # sample 1: no face
    loss = matching_loss("homo", atoms, edges, present)
    loss.backward()
    assert atoms["V"].grad[1].abs().sum() == 0 and atoms["V"].grad[0].abs().sum() > 0
    changed = {m: v.detach().clone() for m, v in atoms.items()}
    changed["V"][1] = torch.softmax(torch.randn(8, generator=gen), 0)
    torch.testing.assert_close(matching_loss("homo", changed, edges, present), loss.detach())
    # and through the network: a sample whose face is absent adds no matching term
    torch.manual_seed(0)
    cfg = make_cfg()
    net = DHMD(cfg).eval()
    inputs, masks = make_batch(cfg, batch=3)
    masks["V"][:] = 0
    with torch.no_grad():
        out = net(inputs, masks)
        only_la = matching_loss("homo", out.atoms_homo, out.edges_homo, out.present)
        out.atoms_homo["V"] = torch.full_like(out.atoms_homo["V"], 1 / cfg.dict_atoms)
        assert matching_loss("homo", out.atoms_homo, out.edges_homo, out.present) == only_la


def test_edges_only_among_present_modalities():
    torch.manual_seed(0)
    unit = GDUnit("homo", 1, 8, 4, 1.0)
    logits = {m: torch.randn(4, 1) for m in MODALITIES}
    reprs = {m: torch.randn(4, 8) for m in MODALITIES}
    present = torch.tensor([[1.0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]])  # L A V: all, A+V, V, none
    with torch.no_grad():
        edges = unit(logits, reprs, present)
    assert torch.isfinite(edges).all() and (edges >= 0).all()
    for row, have in enumerate(("LAV", "AV", "V", "")):
        kept = {name for name, (t, s) in zip(EDGE_NAMES, EDGES) if t in have and s in have}
        for x, name in enumerate(EDGE_NAMES):
            assert (edges[row, x] > 0) == (name in kept), (row, name)
        assert float(edges[row].sum()) == pytest.approx(1.0 if kept else 0.0, abs=1e-6)


def test_student_trains_on_missing_data():
    """The CorrKD student path: dropped modalities, DHMD losses and the three CorrKD terms."""
    torch.manual_seed(0)
    cfg = make_cfg(("neutral", "happy"))
    teacher, student = DHMD(cfg).eval(), DHMD(cfg)
    student.load_state_dict(teacher.state_dict())
    inputs, masks = make_batch(cfg, batch=8)
    dropped = drop_missing(masks, 0.7, torch.Generator().manual_seed(0))
    labels, classes = torch.linspace(-2, 2, 8), torch.tensor([0, 1] * 4)
    out = student(inputs, dropped)
    with torch.no_grad():
        t_out = teacher(inputs, masks)
    loss = dmd_losses(out, labels, TrainConfig(), classes).total
    loss = loss + corrkd_losses(out, t_out, labels, classes, 0.5).total((1.0, 1.0, 1.0))
    assert torch.isfinite(loss)
    loss.backward()
    assert student.dict_homo.atoms.grad is not None


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = make_cfg(("neutral", "happy"), dict_atoms=10, dict_tau=0.2)
    net = DHMD(cfg).eval()
    spec = {"name": "synthetic", "dims": cfg.dims, "steps": cfg.steps}
    save_checkpoint(tmp_path / "dhmd", net, cfg, spec, {"name": "dhmd-test"})
    ckpt = load_checkpoint(tmp_path / "dhmd")
    assert ckpt.model == cfg and ckpt.model.architecture == "dhmd"
    rebuilt = ckpt.build("cpu")
    assert isinstance(rebuilt, DHMD)
    inputs, masks = make_batch(cfg)
    with torch.no_grad():
        a, b = net(inputs, masks), rebuilt(inputs, masks)
    torch.testing.assert_close(a.sentiment, b.sentiment)
    torch.testing.assert_close(a.atoms_hetero["L"], b.atoms_hetero["L"])
    # a DMD checkpoint's config has no architecture key and still builds a DMD
    doc = ckpt.model.to_dict()
    for key in ("architecture", "decouple", "dict_atoms", "dict_tau"):
        doc.pop(key)
    assert type(network_for(ModelConfig.from_dict(doc))) is DMD


@pytest.mark.parametrize("field, value, reason", [
    ("architecture", "dmd2", "architecture must be one of dmd, dhmd"),
    ("dict_atoms", 0, "dict_atoms must be a positive integer"),
    ("dict_tau", 0.0, "dict_tau must be above 0"),
    ("decouple", "no", "decouple must be true or false"),
])
def test_a_bad_dhmd_config_is_one_line(field, value, reason):
    from models.checkpoint import config_problem

    doc = make_cfg().to_dict()
    doc[field] = value
    assert reason in config_problem({"model": doc})


def test_train_cli_dhmd_with_classes(tmp_path):
    """python -m models.train --model dhmd: teacher and student, emotion classes and valence."""
    from models.synthetic import SyntheticSpec, make_synthetic
    from models.train import main

    data = make_synthetic(SyntheticSpec(train=48, valid=16, test=16, seed=5, steps=(6, 8, 7)))
    data["meta"]["class_names"] = ["negative", "positive"]
    for split in ("train", "valid", "test"):
        data[split]["class_labels"] = (np.asarray(data[split]["regression_labels"]) >= 0).astype(np.int64)
    path = tmp_path / "classes.pkl"
    path.write_bytes(pickle.dumps(data))
    code = main(["--data", str(path), "--out", str(tmp_path / "run"), "--config", "small", "--model", "dhmd",
                 "--epochs", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    for role in ("teacher", "student"):
        ckpt = load_checkpoint(tmp_path / "run" / role)
        assert ckpt.model.architecture == "dhmd" and ckpt.model.class_names == ("negative", "positive")
        assert ckpt.provenance["name"] == f"dhmd-{role}"
    # a student must match its teacher's architecture
    assert main(["--data", str(path), "--out", str(tmp_path / "run"), "--stage", "student", "--overwrite",
                 "--model", "dmd", "--device", "cpu", "--quiet"]) == 2


@pytest.fixture(scope="module")
def dhmd_components(components, tmp_path_factory):
    """The suite's extractors with an untrained DHMD checkpoint of the bundled model's feature set."""
    from realtime.featureset import FeatureSpec
    from tests.conftest import with_checkpoint

    torch.manual_seed(0)
    served = components.engine.checkpoint
    spec = FeatureSpec.from_checkpoint(served.feature_set)
    cfg = ModelConfig(dims=spec.dims, steps=spec.steps, class_names=served.model.class_names, architecture="dhmd",
                      dict_atoms=8, **PRESETS["small"]["model"])
    folder = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "dhmd", DHMD(cfg), cfg, spec.describe(),
                             {"name": "untrained-dhmd"})
    return with_checkpoint(components, folder)


def test_serving_a_dhmd_checkpoint(dhmd_components, tmp_path, capsys, caplog):
    """python -m realtime serves a DHMD checkpoint: records carry each present modality's
    activations, and edges only among the present modalities."""
    out = tmp_path / "talk.jsonl"
    from tests.conftest import TALKING_FACES

    proc = run_main(dhmd_components, capsys, caplog, "--source", TALKING_FACES / "face_5.mp4", "--out", out,
                    "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_records(out)
    assert records
    for rec in records:
        present = [m for m, ch in (("L", "text"), ("A", "audio"), ("V", "face")) if rec["modalities"][ch] > 0]
        assert rec["edges_among"] == (present if len(present) >= 2 else [])
        for space in ("homo", "hetero"):
            assert sorted(rec["atoms"][space]) == sorted(present)
            for acts in rec["atoms"][space].values():
                assert len(acts) == 8 and abs(sum(acts) - 1) < 1e-3
            edges = rec["edges"][space]
            assert {n for n in edges} == {f"{t}->{s}" for t in rec["edges_among"] for s in rec["edges_among"]
                                          if t != s}
    assert any(len(r["edges_among"]) >= 2 for r in records), "the clip should give windows with two channels"


def test_face_only_windows_have_no_edges(dhmd_components, media, tmp_path, capsys, caplog):
    """With only the face present there is no edge to report (issue 16: V->L 0.50 was)."""
    out = tmp_path / "face.csv"
    proc = run_main(dhmd_components, capsys, caplog, "--source", media["video_no_audio"], "--out",
                    tmp_path / "face.jsonl", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_records(tmp_path / "face.jsonl")
    assert records and all(r["edges"] == {"homo": {}, "hetero": {}} and r["edges_among"] == [] for r in records)
    assert all(set(r["atoms"]["homo"]) == {"V"} for r in records if r["modalities"]["face"] > 0)
    # a table keeps every edge column, empty when the pair is absent
    proc = run_main(dhmd_components, capsys, caplog, "--source", media["video_no_audio"], "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    import csv

    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(row[f"edges.homo.{name}"] == "" for row in rows for name in EDGE_NAMES)
    assert "atoms.homo.L" in rows[0] and all(row["atoms.homo.L"] == "" for row in rows)


def test_window_shows_activations_beside_the_edges(qtbot, dhmd_components, tmp_path):
    """The GUI draws each present modality's activations under each GD-Unit's graph."""
    from gui.session import Session, SessionOptions
    from gui.window import MainWindow, running_threads
    from tests.conftest import TALKING_FACES

    options = SessionOptions(source=str(TALKING_FACES / "face_5.mp4"), pace="asap")
    session = Session()  # the DHMD engine on the suite's extractors, loaded already
    session._components, session._components_key = dhmd_components, options.models_key()
    window = MainWindow(options, session=session)
    qtbot.addWidget(window)
    window.show()
    record = tmp_path / "r.jsonl"
    window.record_to(record)
    window.start()
    qtbot.waitUntil(lambda: not window.session.running, timeout=240_000)
    qtbot.wait(100)  # queued signals from the run's last moments
    window.stop_recording()
    last = read_records(record)[-1]
    for space, view in window.atom_views.items():
        assert view.isVisible()
        assert set(view.activations) == set(last["atoms"][space])
        for m, acts in last["atoms"][space].items():
            assert view.activations[m] == pytest.approx(acts, abs=1e-3)
        assert set(window.graphs[space].weights) == set(last["edges"][space])
    window.close()
    qtbot.waitUntil(lambda: not running_threads(), timeout=10_000)
    session._components = None  # the suite's extractors: closed by their own fixture
    session.close()
