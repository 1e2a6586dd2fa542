"""Data-parallel training on PyTorch's own engine: torchrun, DistributedDataParallel.

With ``train.nproc > 1`` the train stage relaunches itself under ``torchrun --standalone``;
on several machines, start ``torchrun --nnodes ... -m stages.train <model>`` yourself (see the
README) and the stage sees the WORLD_SIZE that torchrun sets.  Each process takes every
``world_size``-th document of the shared shuffled order, so its batches of
``batch_size / world_size`` documents together form exactly the single-process batch.
"""
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stages.errors import PipelineError


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0


def under_torchrun():
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def relaunch(nproc, argv):
    """Run this stage again as ``nproc`` local processes under torchrun; return its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "stages.train", *argv]
    return subprocess.run(command).returncode


def join(device, batch_size):
    """Join the process group that torchrun set up; return this process's place in it."""
    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    if batch_size % world_size:
        raise PipelineError(f"params.yaml: train.batch_size ({batch_size}) must be a multiple of "
                            f"the number of processes ({world_size})")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise PipelineError(f"params.yaml: distributed training runs on cuda or cpu, not {device}")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(rank, world_size, device)


def leave():
    if dist.is_initialized():
        dist.destroy_process_group()


def total(tensor, group):
    """Sum of ``tensor`` over all processes (itself when training alone)."""
    if group.world_size > 1:
        dist.all_reduce(tensor)
    return tensor
