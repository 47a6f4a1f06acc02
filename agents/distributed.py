"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts the ranks, ``torch.distributed`` joins them.

Each rank owns a batched environment on its own device and its own stream of episodes; after every backward pass
the gradients are averaged over the ranks (:func:`average_gradients`), so that every rank takes the same step
and holds the same weights. Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) every function here
is a no-op for one process.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher that sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(device: str = "auto") -> torch.device:
    """Join the process group of a ``torchrun`` launch (NCCL on GPUs, gloo on CPUs) and return this rank's
    device: ``cuda:LOCAL_RANK`` when CUDA is asked for (or ``auto`` finds it), else the CPU."""
    use_cuda = device == "cuda" or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device here; use --device cpu")
    if not launched():
        return torch.device("cuda" if use_cuda else "cpu") if device == "auto" else torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, the one that writes logs, checkpoints and the model (and every single process)."""
    return rank() == 0


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of all of them, flattened)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every rank rank 0's weights (they start alike from one seed; this makes sure)."""
    if world_size() == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, 0)


def global_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) standard deviation of ``x``'s values over all ranks, as one process would take them."""
    stats = torch.stack([x.sum(), x.square().sum(), torch.tensor(float(x.numel()), device=x.device)]).double()
    if world_size() > 1:
        dist.all_reduce(stats)
    total, squares, n = stats
    mean = total / n
    var = (squares - n * mean * mean) / (n - 1)
    return mean.to(x.dtype), var.clamp_min(0).sqrt().to(x.dtype)


def gather(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (on every rank; ``[value]`` in one process)."""
    if world_size() == 1:
        return [value]
    values: list[object] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
