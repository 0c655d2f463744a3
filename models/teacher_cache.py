"""The frozen teacher's responses to the complete training samples, computed once per stage.

CorrKD compares the student on missing data with the teacher on the *complete* batch. The
teacher is frozen and in eval mode (no dropout), and a sample's response does not depend on
the other samples of its batch, so the response to each training sample is the same in
every epoch: the student stage computed it again for every batch of every epoch (issue 15).
Here each sample passes the teacher once per stage.

The samples are forwarded in fixed blocks of the split (samples 0..n-1, n..2n-1, ...),
whichever batch asks for them first, so the kept responses do not depend on the order
batches came in: a resumed stage gets the same numbers as an uninterrupted one. A response
computed in a block equals the one computed in the batch of the old path up to float
rounding (measured: at most 6e-8 apart; tests/test_teacher_cache.py allows 1e-6).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from models.corrkd import TeacherResponse
from models.data import Split
from models.loop import Batch, batch_of

logger = logging.getLogger(__name__)

MAX_BYTES = 1 << 30
"""Kept responses beyond this size (a very large training split) are not kept: each batch
then forwards the teacher as before."""


class TeacherCache:
    """``cache(batch, rows)``: the teacher's response to the complete samples ``rows`` of the split.

    ``rows``: the batch's sample indices in ``split`` (the whole training split, not an
    epoch's draw of it); ``batch`` holds those samples (used only when nothing is kept).
    ``forwards`` and ``samples_forwarded`` count the teacher's work.
    """

    def __init__(self, teacher: torch.nn.Module, split: Split, device: torch.device, block: int,
                 max_bytes: int | None = None):
        self.teacher = teacher
        self.split = split
        self.device = device
        self.block = block
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes
        self.forwards = 0
        self.samples_forwarded = 0
        self._done = np.zeros(-(-len(split) // block), dtype=bool)  # per block
        self._kept: TeacherResponse | None = None
        self._keeping = True

    def __call__(self, batch: Batch, rows: np.ndarray) -> TeacherResponse:
        if not self._keeping:
            return self._forward(batch)
        for k in np.unique(rows // self.block):
            if not self._done[k]:
                self._fill(int(k))
                if not self._keeping:  # found too large at the first block
                    return self._forward(batch)
        kept = self._kept
        assert kept is not None
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        return TeacherResponse(
            fused=kept.fused[index], sentiment=kept.sentiment[index],
            class_logits=None if kept.class_logits is None else kept.class_logits[index])

    def _forward(self, batch: Batch) -> TeacherResponse:
        self.forwards += 1
        self.samples_forwarded += len(batch.labels)
        with torch.no_grad():
            out = self.teacher(batch.inputs, batch.masks)
        return TeacherResponse(fused=out.fused, sentiment=out.sentiment, class_logits=out.class_logits)

    def _fill(self, k: int) -> None:
        start = k * self.block
        idx = np.arange(start, min(start + self.block, len(self.split)))
        out = self._forward(batch_of(self.split, idx, self.device))
        if self._kept is None:
            n = len(self.split)
            width = out.fused.size(1) + 1 + (0 if out.class_logits is None else out.class_logits.size(1))
            size = n * width * out.fused.element_size()
            if size > self.max_bytes:
                logger.info("student: the teacher's responses to %d samples would take %.0f MiB; forwarding "
                            "the teacher for every batch instead", n, size / 2**20)
                self._keeping = False
                return
            self._kept = TeacherResponse(
                fused=out.fused.new_empty((n, out.fused.size(1))), sentiment=out.sentiment.new_empty(n),
                class_logits=None if out.class_logits is None else out.class_logits.new_empty(
                    (n, out.class_logits.size(1))))
        at = torch.from_numpy(idx).to(self.device)
        self._kept.fused[at] = out.fused
        self._kept.sentiment[at] = out.sentiment
        if self._kept.class_logits is not None:
            self._kept.class_logits[at] = out.class_logits
        self._done[k] = True
