"""Which device a process computes on: the one rule training, prediction and the benchmarks share.

``auto`` (or None) takes this rank's GPU when CUDA is available, else the CPU. This rank's GPU is

- the current CUDA device once one is set or in use (training: the distributed init calls
  ``torch.cuda.set_device(LOCAL_RANK mod visible GPUs)`` before the engine asks), else
- ``cuda:(local rank mod visible GPUs)``, the local rank given or read from the launcher's
  environment (:func:`.dist_env.read_dist_env`): Perlmutter's srun shows every rank the node's
  four GPUs, and without the modulus all four ranks would share ``cuda:0``; with one GPU per rank
  (CUDA_VISIBLE_DEVICES) every rank takes its ``cuda:0``.

``cuda`` is the same GPU, asked for explicitly: a ValueError says so when CUDA is absent, as
does ``cuda:N`` (that GPU, checked against the visible count). ``cpu`` is the CPU; other torch
device names (``mps``, ...) are passed to ``torch.device`` as they are.

torch is imported inside the function: ``mosaic-hpc --help`` must not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def choose_device(name: str | torch.device | None = None, local_rank: int | None = None) -> torch.device:
    """'auto' | None | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device) -> torch.device; see the module doc."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "auto"):
        return _rank_gpu(local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: no CUDA device is available on this machine")
        if name == "cuda":
            return _rank_gpu(local_rank)
        index = torch.device(name).index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device("cuda", index)
    return torch.device(name)


def _rank_gpu(local_rank: int | None) -> torch.device:
    import torch

    if local_rank is None:
        if torch.cuda.is_initialized():
            return torch.device("cuda", torch.cuda.current_device())
        from .dist_env import read_dist_env

        local_rank = read_dist_env().local_rank
    return torch.device("cuda", local_rank % torch.cuda.device_count())
