"""The one device rule (mosaic_hpc/devices.py), on a CPU machine with CUDA faked where needed."""

import pytest
import torch

from mosaic_hpc.devices import choose_device


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused(no_gpu):
    assert choose_device() == choose_device("auto") == choose_device("cpu") == torch.device("cpu")
    assert choose_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="no CUDA device"):
            choose_device(name)


def test_auto_takes_the_ranks_gpu_from_the_given_local_rank(four_gpus):
    assert [choose_device(local_rank=r) for r in range(6)] == [torch.device("cuda", i) for i in (0, 1, 2, 3, 0, 1)]
    assert choose_device("cuda", local_rank=5) == torch.device("cuda", 1)


def test_auto_reads_the_local_rank_of_the_launcher(four_gpus, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    assert choose_device() == torch.device("cuda", 0)
    monkeypatch.setenv("SLURM_PROCID", "6")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "6")
    assert choose_device() == torch.device("cuda", 2)


def test_a_device_already_set_is_kept(four_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert choose_device() == choose_device("cuda") == torch.device("cuda", 3)
    assert choose_device(local_rank=1) == torch.device("cuda", 1)  # an explicit rank wins


def test_an_explicit_gpu_is_checked_against_the_visible_count(four_gpus):
    assert choose_device("cuda:3") == choose_device(torch.device("cuda", 3)) == torch.device("cuda", 3)
    with pytest.raises(ValueError, match="only 4 CUDA device"):
        choose_device("cuda:4")
