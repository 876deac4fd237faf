"""Process-group helpers for runs launched with several processes (torchrun, accelerate launch).

Under a launcher (``WORLD_SIZE`` > 1 in the environment) accelerate's ``PartialState`` sets up the
process group (gloo on CPU, NCCL on GPUs) once; a plain single-process run never initialises
anything and every helper is a no-op.
"""

from __future__ import annotations

import os
from functools import lru_cache


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def _state():
    from accelerate import PartialState

    return PartialState(cpu=not _cuda())


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
