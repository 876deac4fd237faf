"""Shared fixtures: the tiny smoke config, pointed at a temporary run and cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"

os.environ.setdefault("XDISTILL_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each (and the CLIs it starts) on one thread,
    # else two workers of two threads each would fight over two cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# Short reviews in the three demo languages, one of them a single word (tests of classifiers).
MIXED_TEXTS = [
    "Arrived a day early and works perfectly.",
    "Broke after two days, a waste of money.",
    "El producto llegó roto.",
    "质量很好，非常满意。",
    "ok",
]


@pytest.fixture
def tiny_raw(tmp_path: Path) -> dict:
    """configs/tiny.yaml as a dict, writing into tmp_path."""
    data = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    data["run_dir"] = str(tmp_path / "run")
    data["cache_dir"] = str(tmp_path / "cache")
    return data


@pytest.fixture
def tiny_config_path(tmp_path: Path, tiny_raw: dict) -> Path:
    return write_config(tmp_path / "tiny.yaml", tiny_raw)
