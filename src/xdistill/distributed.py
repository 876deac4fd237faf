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


def world_size() -> int:
    return _state().num_processes if launched() else 1


def rank() -> int:
    return _state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if launched():
        _state().wait_for_everyone()
