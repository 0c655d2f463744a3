"""The default model's training recipe: the corpora it learns from and its cross-corpus pairs.

``SOURCES`` names each corpus ``realtime.corpus`` builds a part from (its channel, the
prefix of its sample ids, its licence and split) for the model's provenance;
``add_pairs`` joins samples of one emotion from different corpora into complete samples.
``tools/build_default_model.py`` trains with both, ``bench.ablation`` reuses the pairing.
"""

from __future__ import annotations

import numpy as np

SOURCES = {
    "faces": {"modality": "V", "prefix": "fer/", "corpus": "FER2013 (48x48 web photographs, 7 expressions)",
              "licence": "unresolved: FER2013's original terms were never published with the data (ICML 2013 "
                         "challenge); the copy used (RecepTahirGunlu/Duygu-Tanima) states no licence",
              "split": "the corpus's own Training / PublicTest / PrivateTest folders (no subject ids exist)"},
    "voice": {"modality": "A", "prefix": "emodb/", "corpus": "EmoDB (Berlin, 10 actors, German sentences)",
              "licence": "CC0 per audEERING's republication; copy from sylaschacko/voice-emotion-analysis",
              "split": "by speaker: test 03 and 08, valid 09 and 10, train the other six"},
    "texts": {"modality": "L", "prefix": "goemotions/", "corpus": "GoEmotions, Ekman grouping (Reddit comments)",
              "licence": "Apache-2.0 (monologg/GoEmotions-pytorch, data from google-research)",
              "split": "the corpus's own train / dev / test files; single-label comments only"},
    "sentences": {"modality": "L", "prefix": "vader/", "corpus": "VADER human-rated sentences (valence only)",
                  "licence": "MIT (Hutto & Gilbert 2014)", "split": "by sentence id hash, 80/10/10"},
    "subtitles": {"modality": "L", "prefix": "xed/",
                  "corpus": "XED, English movie subtitle lines (Plutchik annotations; anticipation and trust left out)",
                  "licence": "CC BY 4.0 (Helsinki-NLP/XED; Öhman et al., COLING 2020)",
                  "split": "by a hash of the line's text, 80/10/10; single-label lines only, each text once"},
}


def source_of(ids: list[str]) -> np.ndarray:
    names = np.full(len(ids), "", dtype=object)
    for name, info in SOURCES.items():
        names[[i for i, ident in enumerate(ids) if ident.startswith(info["prefix"])]] = name
    return names


def add_pairs(split, n: int, seed: int, bystanders: float = 0.0):
    """``n`` complete samples, each a face, a voice and a text of one emotion drawn from
    different corpora.

    Where a corpus lacks the emotion (EmoDB has no surprise), and in a share ``bystanders``
    of the other non-neutral pairs for one channel drawn at random, that channel takes a
    *neutral* sample instead, marked as a bystander (``Split.channel_weights`` 0): the
    fused reading learns that a channel showing nothing does not veto what another shows,
    and the bystander's own head is not taught the pair's emotion."""
    from models.config import MODALITIES
    from models.data import Split
    from models.emotions import EMOTIONS, VALENCE
    from realtime.corpus import WORDS

    if n <= 0:
        return split
    rng = np.random.default_rng(seed)
    sources = source_of(split.ids)
    neutral = EMOTIONS.index("neutral")
    pools = {}
    for names, m in ((["faces"], "V"), (["voice"], "A"), (WORDS, "L")):
        for c in range(len(EMOTIONS)):
            pools[(m, c)] = np.flatnonzero(np.isin(sources, names) & (split.class_labels == c))
    classes = [c for c in range(len(EMOTIONS)) if len(pools[("V", c)]) and len(pools[("L", c)])]
    picks = rng.choice(classes, n)
    inputs = {m: np.zeros((n,) + v.shape[1:], np.float32) for m, v in split.inputs.items()}
    masks = {m: np.zeros((n,) + v.shape[1:], np.float32) for m, v in split.masks.items()}
    weights = np.ones((n, len(MODALITIES)), np.float32)
    for row, c in enumerate(picks):
        quiet = MODALITIES[rng.integers(len(MODALITIES))] if c != neutral and rng.random() < bystanders else None
        for m in ("V", "A", "L"):
            pool = pools[(m, c)]
            if c != neutral and (m == quiet or not len(pool)):
                pool = pools[(m, neutral)]
                weights[row, MODALITIES.index(m)] = 0.0
            if len(pool):
                j = rng.choice(pool)
                inputs[m][row] = split.inputs[m][j]
                masks[m][row] = split.masks[m][j]
    paired = Split(inputs=inputs, masks=masks,
                   labels=np.array([VALENCE[EMOTIONS[c]] for c in picks], np.float32),
                   class_labels=picks.astype(np.int64), ids=[f"pair/{EMOTIONS[c]}/{i}" for i, c in enumerate(picks)],
                   channel_weights=weights)
    own = split.channel_weights if split.channel_weights is not None else np.ones((len(split), len(MODALITIES)),
                                                                                   np.float32)
    return Split(inputs={m: np.concatenate([split.inputs[m], paired.inputs[m]]) for m in split.inputs},
                 masks={m: np.concatenate([split.masks[m], paired.masks[m]]) for m in split.masks},
                 labels=np.concatenate([split.labels, paired.labels]),
                 class_labels=np.concatenate([split.class_labels, paired.class_labels]),
                 ids=split.ids + paired.ids, channel_weights=np.concatenate([own, weights]),
                 valence_weights=None if split.valence_weights is None
                 else np.concatenate([split.valence_weights, np.ones(n, np.float32)]))
