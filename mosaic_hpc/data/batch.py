"""A training or evaluation batch: normalised targets, validity and hidden masks per modality.

Targets keep every value (NaN replaced by 0 and flagged invalid), so the loss can be taken on
all tokens as in the paper; the model builds its input from ``targets`` and ``hidden`` itself,
so no second copy of the values is stored. Missing values are always hidden and never scored.

Building a batch is on the data loader's hot path (millions of values per second per rank), so
:func:`make_batch` and :func:`gather_batch` write every result straight into one buffer per
kind (targets, valid, hidden) with ``out=`` arguments, each modality a C-contiguous [B, L]
view: no temporaries, and the NaN test and the valid flags are one numpy call for all
modalities. The values are those of the plain expressions ``z = normalize(float32 x)``,
``valid = ~isnan(z)``, ``targets = where(valid, z, 0)``, ``hidden = hidden | ~valid``, bit for
bit (tests/unit/test_batch_prep.py), and ``absent = ~valid & ~hidden``.

Missing is not the same as masked. A value the masker or an input configuration hides exists
and is to be predicted; a value that is missing from the catalog does not exist (an SFH bin
after the galaxy's cosmic time, a non-detected band), and that it is missing is information:
where a given SFH stops tells the galaxy's epoch. ``absent`` marks missing values the mask did
not hide, so a model can be told "no value here" apart from "hidden here"; a missing value the
mask hides stays plain hidden, so a hidden modality never leaks its pattern of missing values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        absent: True where the value is missing and was not masked (see the module docstring);
            None when the batch does not track it (then the model is told nothing about it).
    """

    targets: dict
    valid: dict
    hidden: dict
    row_ids: object
    absent: dict | None = None

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
            absent=None if self.absent is None else {k: conv(v) for k, v in self.absent.items()},
        )


def make_batch(
    raw: Mapping[str, np.ndarray],
    row_ids: np.ndarray,
    stats: NormStats,
    hidden: Mapping[str, np.ndarray],
) -> Batch:
    """Normalise physical values and combine the draw of hidden values with missing ones.

    The inputs are left unchanged.

    Args:
        raw: physical values per modality, [B, L], NaN = missing.
        row_ids: global row index per galaxy, [B].
        stats: training-split normalisation.
        hidden: True where the masker or configuration hides a value, [B, L].
    """
    shapes = {name: np.shape(x) for name, x in raw.items()}

    def fill(name: str, out: np.ndarray) -> None:
        stats.normalize_into(name, np.asarray(raw[name]), out)  # rounded to float32 first, as stored

    return _build(shapes, fill, row_ids, hidden)


def gather_batch(
    data: Mapping[str, np.ndarray],
    rows: np.ndarray,
    row_ids: np.ndarray,
    stats: NormStats,
    hidden: Mapping[str, np.ndarray] | None,
) -> Batch:
    """:func:`make_batch` of ``{name: x[rows]}`` without the gathered copy: rows go straight into the batch.

    Args:
        data: physical values per modality, [N, L] (a read window or the in-memory rows).
        rows: indices into ``data``'s first axis, [B], in batch order.
        row_ids: global row index per galaxy, [B].
        stats: training-split normalisation.
        hidden: as for :func:`make_batch`; None hides only missing values.
    """
    rows = np.asarray(rows, dtype=np.intp)
    shapes = {name: (len(rows), *np.shape(x)[1:]) for name, x in data.items()}
    # take(mode="clip") writes into ``out`` directly (mode="raise" goes through a temporary buffer,
    # 3x slower); it is used only when every index is in range, so clipping never happens.
    lowest, highest = (int(rows.min()), int(rows.max())) if len(rows) else (0, -1)

    def fill(name: str, out: np.ndarray) -> None:
        x = data[name]
        if x.dtype == np.float32 and 0 <= lowest and highest < len(x):
            np.take(x, rows, axis=0, out=out, mode="clip")  # one row copy per galaxy, into the batch
            stats.normalize_into(name, out, out)
        else:  # indexing semantics (negative indices, IndexError) and any dtype
            stats.normalize_into(name, x[rows], out)

    return _build(shapes, fill, row_ids, hidden)


def _build(
    shapes: Mapping[str, tuple[int, ...]],
    fill: Callable[[str, np.ndarray], None],
    row_ids: np.ndarray,
    hidden: Mapping[str, np.ndarray] | None,
) -> Batch:
    """Allocate the batch buffers, let ``fill`` write each modality's normalised values, finish.

    ``fill(name, out)`` must write the float32 normalised values (NaN = missing) into ``out``.
    """
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes.values()]
    ends = np.cumsum([0, *sizes])
    values = np.empty(int(ends[-1]), dtype=np.float32)
    flags = np.empty(int(ends[-1]), dtype=bool)  # True where missing, inverted into valid at the end
    hid = np.empty(int(ends[-1]), dtype=bool)
    shown_missing = np.empty(int(ends[-1]), dtype=bool)

    def views(buffer: np.ndarray) -> dict[str, np.ndarray]:
        return {name: buffer[ends[i] : ends[i + 1]].reshape(s) for i, (name, s) in enumerate(shapes.items())}

    targets, valid, hidden_out, absent = views(values), views(flags), views(hid), views(shown_missing)
    for name, t in targets.items():
        fill(name, t)
    np.isnan(values, out=flags)  # every modality in one call
    for name, missing in valid.items():  # still the missing flags here
        if hidden is None:
            np.copyto(hidden_out[name], missing)
            np.copyto(absent[name], missing)
        else:
            h = np.asarray(hidden[name], dtype=bool)
            np.greater(missing, h, out=absent[name])  # missing and not masked
            if h.shape == missing.shape:
                np.logical_or(h, missing, out=hidden_out[name])
            else:  # a mask that broadcasts against the values gets its own array, as ``h | missing`` would
                hidden_out[name] = h | missing
        if missing.any():  # most modalities have no missing value: skip the masked store
            np.copyto(targets[name], np.float32(0.0), where=missing)
    np.logical_not(flags, out=flags)
    return Batch(
        targets=targets, valid=valid, hidden=hidden_out, row_ids=np.asarray(row_ids, dtype=np.int64), absent=absent
    )
