"""A small fit() run for the reliability tests, started as its own process (plain, torchrun, killed).

    python fit_job.py OUT_DIR [--resume] [--pause-at STEP]

Trains an MLP with dropout on fixed synthetic data through xdistill's fit() (checkpoint every 3
steps, dev evaluation and best-model saving each epoch), then writes each rank's final parameters
to OUT_DIR/final-rank{R}.safetensors and how many times it called save_fn to OUT_DIR/saves-rank{R}.txt.
``--pause-at N`` writes OUT_DIR/reached when step N starts and then sleeps, so the test can SIGKILL it
in the middle of an epoch.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from xdistill.config import TrainConfig
from xdistill.distill.fit import fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause-at", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))

    data_gen = torch.Generator().manual_seed(0)
    x = torch.randn(90, 8, generator=data_gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    items = [{"x": x[i], "y": y[i]} for i in range(len(x))]
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    calls = {"steps": 0, "saves": 0}

    def collate(batch):
        return {"x": torch.stack([b["x"] for b in batch]), "y": torch.stack([b["y"] for b in batch])}

    def step(batch, trained):
        calls["steps"] += 1
        if args.pause_at is not None and calls["steps"] == args.pause_at:
            (args.out / "reached").write_text("x")
            time.sleep(120)
        loss = nn.functional.cross_entropy(trained(batch["x"]), batch["y"])
        return {"loss": loss}

    def evaluate():
        device = next(model.parameters()).device  # fit() moved the model to the GPU if there is one
        return {"accuracy": 100.0 * float((model(x.to(device)).argmax(-1).cpu() == y).float().mean())}

    def save():
        calls["saves"] += 1
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / "run" / "best.safetensors")
        )

    cfg = TrainConfig(
        epochs=3, batch_size=10, lr=1e-2, warmup_ratio=0.1, log_every=2, checkpoint_every=3, group_by_length=False
    )
    fit(
        model,
        items,
        collate,
        step,
        cfg=cfg,
        seed=7,
        run_dir=args.out / "run",
        evaluate_fn=evaluate,
        select_key="accuracy",
        save_fn=save,
        progress=False,
        resume=args.resume,
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / f"final-rank{rank}.safetensors")
    )
    (args.out / f"saves-rank{rank}.txt").write_text(str(calls["saves"]))


if __name__ == "__main__":
    main()
