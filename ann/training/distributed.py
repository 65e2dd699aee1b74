"""Processes of a run: one, or many started by torchrun (env RANK, WORLD_SIZE, LOCAL_RANK).

CUDA processes talk over NCCL, CPU processes over gloo (what the two-process test uses).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ann.training.state import TrainingError


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    distributed: bool = False  # started by torchrun (even as one process): DDP, SyncBN on CUDA

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but torch sees no GPU (use --set train.device=cpu)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    chosen = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    # torchrun sets RANK and WORLD_SIZE; one process under torchrun still takes the DDP path,
    # which is how the NCCL/SyncBatchNorm code runs on a machine with a single GPU
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=chosen if use_cuda else None)
    return Processes(rank, world, local_rank, chosen, launched)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_error(message: str | None, processes: Processes) -> None:
    """Rank 0 says whether it could prepare the run; every process raises the same error."""
    if processes.distributed:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if message:
        raise TrainingError(message)


def mean_over_processes(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def gather_to_main(value, processes: Processes) -> list | None:
    """[value of rank 0, rank 1, ...] on rank 0 (None elsewhere)."""
    if not processes.distributed:
        return [value]
    gathered = [None] * processes.world if processes.main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if `flag` is true on one (a stop must be taken at the same step)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
