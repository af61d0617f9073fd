"""A training or evaluation batch: normalised targets, validity and hidden masks per modality.

Targets keep every value (NaN replaced by 0 and flagged invalid), so the loss can be taken on
all tokens as in the paper; the model builds its input from ``targets`` and ``hidden`` itself,
so no second copy of the values is stored. Missing values are always hidden and never scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .normalization import NormStats


@dataclass
class Batch:
    """Arrays keyed by modality, [B, L] each; numpy on the data path, torch after :meth:`to_torch`.

    Attributes:
        targets: normalised values, 0 where missing.
        valid: True where the catalog has a value (not NaN).
        hidden: True where the model does not see the value (masked or missing).
        row_ids: global catalog row of each galaxy, [B] (drives keyed masks, checks sample order).
    """

    targets: dict
    valid: dict
    hidden: dict
    row_ids: object

    @property
    def size(self) -> int:
        return len(self.row_ids)

    def to_torch(self, device=None, pin_memory: bool = False) -> Batch:
        import torch

        def conv(a):
            t = torch.from_numpy(np.ascontiguousarray(a))
            if pin_memory:
                t = t.pin_memory()
            return t.to(device, non_blocking=pin_memory) if device is not None else t

        return Batch(
            targets={k: conv(v) for k, v in self.targets.items()},
            valid={k: conv(v) for k, v in self.valid.items()},
            hidden={k: conv(v) for k, v in self.hidden.items()},
            row_ids=conv(self.row_ids),
        )


def make_batch(
    raw: Mapping[str, np.ndarray],
    row_ids: np.ndarray,
    stats: NormStats,
    hidden: Mapping[str, np.ndarray],
) -> Batch:
    """Normalise physical values and combine the draw of hidden values with missing ones.

    Args:
        raw: physical values per modality, [B, L], NaN = missing.
        row_ids: global row index per galaxy, [B].
        stats: training-split normalisation.
        hidden: True where the masker or configuration hides a value, [B, L].
    """
    targets, valid, hid = {}, {}, {}
    for name, x in raw.items():
        z = stats.normalize(name, np.asarray(x, dtype=np.float32))
        v = ~np.isnan(z)
        targets[name] = np.where(v, z, np.float32(0.0)).astype(np.float32, copy=False)
        valid[name] = v
        hid[name] = np.asarray(hidden[name], dtype=bool) | ~v
    return Batch(targets=targets, valid=valid, hidden=hid, row_ids=np.asarray(row_ids, dtype=np.int64))
