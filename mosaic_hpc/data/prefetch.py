"""Batches already on the training device: pinned host memory and copies ahead of the step.

:class:`DevicePrefetcher` wraps a :class:`~mosaic_hpc.data.reader.ShardedReader` with the same
interface the training loop uses (``batches_per_epoch``, ``iter_epoch``, ``iter_from``) and
yields :class:`DeviceBatch` objects. The reader's worker threads turn each numpy batch into
torch tensors (pinned on CUDA, so the host-to-device copy is a DMA that does not block the
CPU); the wrapper then issues the copy of batch k+1 on a side CUDA stream while the model
computes on batch k. ``DeviceBatch.to_torch(device)`` is a no-op for its own device, so a loop
written for numpy batches (``batch.to_torch(engine.device)``) runs unchanged. On a CPU device
the conversion is a zero-copy ``torch.from_numpy`` done in the worker threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .batch import Batch
from .reader import ReaderPosition, ShardedReader


@dataclass
class DeviceBatch(Batch):
    """A :class:`Batch` of torch tensors that already live on ``device``."""

    device: Any = None

    def to_torch(self, device=None, pin_memory: bool = False) -> Batch:
        """Self when asked for the device the tensors are on; otherwise a moved copy."""
        import torch

        if device is None or _same_device(torch.device(device), self.device):
            return self
        return DeviceBatch(**_map_tensors(self, lambda t: t.to(device)), device=torch.device(device))


def _same_device(a, b) -> bool:
    import torch

    def norm(d):
        if d.type == "cuda" and d.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return d

    return norm(a) == norm(b)


def _map_tensors(batch: Batch, fn) -> dict[str, Any]:
    return {
        "targets": {k: fn(v) for k, v in batch.targets.items()},
        "valid": {k: fn(v) for k, v in batch.valid.items()},
        "hidden": {k: fn(v) for k, v in batch.hidden.items()},
        "row_ids": fn(batch.row_ids),
        "absent": None if batch.absent is None else {k: fn(v) for k, v in batch.absent.items()},
    }


class DevicePrefetcher:
    """Opt-in wrapper: the reader's batches as tensors on ``device``, copied one batch ahead.

    Args:
        reader: the sharded reader to wrap (its worker threads do the numpy -> torch step).
        device: the training device (``engine.device``).
    """

    def __init__(self, reader: ShardedReader, device) -> None:
        import torch

        self.reader = reader
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    @property
    def batches_per_epoch(self) -> int:
        return self.reader.batches_per_epoch

    def _host(self, batch: Batch) -> DeviceBatch:
        """Worker-thread step: numpy -> torch (pinned when a CUDA copy follows)."""
        import torch

        cpu = torch.device("cpu")
        if self.cuda:
            return DeviceBatch(**_map_tensors(batch, lambda a: torch.from_numpy(a).pin_memory()), device=cpu)
        return DeviceBatch(**_map_tensors(batch, torch.from_numpy), device=cpu)

    def _to_device(self, items: Iterator[tuple[Any, DeviceBatch]]) -> Iterator[tuple[Any, DeviceBatch]]:
        """Copy item k+1 on a side stream while item k is used on the compute stream."""
        if not self.cuda:
            yield from items
            return
        import torch

        copy_stream = torch.cuda.Stream(self.device)

        def start(item: tuple[Any, DeviceBatch]) -> tuple[Any, DeviceBatch]:
            key, host = item
            with torch.cuda.stream(copy_stream):
                moved = _map_tensors(host, lambda t: t.to(self.device, non_blocking=True))
            return key, DeviceBatch(**moved, device=self.device)

        def finish(item: tuple[Any, DeviceBatch]) -> tuple[Any, DeviceBatch]:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(copy_stream)
            # the tensors were allocated on the copy stream: tell the caching allocator they are
            # used on the compute stream, so their memory is not reused before that work is done
            _map_tensors(item[1], lambda t: t.record_stream(compute))
            return item

        ahead = None
        for item in items:
            nxt = start(item)
            if ahead is not None:
                yield finish(ahead)
            ahead = nxt
        if ahead is not None:
            yield finish(ahead)

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[DeviceBatch]:
        """As :meth:`ShardedReader.iter_epoch`, with batches on the device."""
        items = ((None, b) for b in self.reader.iter_epoch(epoch, start_batch, transform=self._host))
        for _, batch in self._to_device(items):
            yield batch

    def __iter__(self) -> Iterator[DeviceBatch]:
        return self.iter_epoch(0)

    def iter_from(self, position: ReaderPosition) -> Iterator[tuple[ReaderPosition, DeviceBatch]]:
        """As :meth:`ShardedReader.iter_from`, with batches on the device."""
        yield from self._to_device(self.reader.iter_from(position, transform=self._host))
