"""Process-group helpers for runs launched with several processes (torchrun, accelerate launch).

Under a launcher (``WORLD_SIZE`` > 1 in the environment) accelerate's ``PartialState`` sets up the
process group (gloo on CPU, NCCL on GPUs) once; a plain single-process run never initialises
anything and every helper is a no-op.
"""

from __future__ import annotations

import os
from functools import lru_cache

from .errors import XdistillError


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def _state():
    from accelerate import PartialState

    if _cuda():
        _check_one_gpu_per_process()
    return PartialState(cpu=not _cuda())


def _check_one_gpu_per_process() -> None:
    """Each process of a launch on GPUs needs a GPU of its own: NCCL refuses two ranks on one GPU, and a
    rank whose local index has no GPU fails with "invalid device ordinal"; say so before either."""
    import torch

    processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise XdistillError(
            f"the launcher started {processes} processes on this machine but {gpus} GPU(s) are visible: "
            f"start at most {gpus} (torchrun --nproc_per_node={gpus}), or run on the CPU with "
            "CUDA_VISIBLE_DEVICES= (gloo)"
        )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def compute_device():
    """Where this process runs frozen models (a teacher whose outputs are cached, evaluation): its own
    GPU under a multi-GPU launch, the GPU when there is one, else the CPU."""
    import torch

    if launched():
        return _state().device
    return torch.device("cuda" if _cuda() else "cpu")


def world_size() -> int:
    return _state().num_processes if launched() else 1


def rank() -> int:
    return _state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if launched():
        _state().wait_for_everyone()
