"""How fast a MARC student of each depth is next to its teacher (the speed half of the per-size table).

`bench marc` reports students of 2 layers; `bench marc-dev` (bench/results/marc-dev.json) scored 2-, 3- and
4-layer students on dev. This measures, for each depth, the batch-32 and batch-1 speed-up over the teacher with
the benchmark's protocol (teacher and students interleaved in one window, the same inputs drawn from every test
language, median of `evaluate.repeats` timed runs, 2 threads), repeated over several windows.

Speed depends on the architecture and the vocabulary, not on the weights, so each depth is the trained
2-layer student (its trimmed vocabulary and head) with its encoder layers replaced by copies of the teacher's
layers at that depth: exactly the shape `student.layers` gives. Its accuracy is not measured here (it is
untrained); the dev accuracy of the trained students of each depth is copied from marc-dev.json beside it.

    python scripts/speed_per_size.py --data-dir ../shared/data \
        --run runs/bench-marc/full/binary --out bench/results/marc-speed-per-size.json
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from xdistill.bench.marc import BUDGETS, base_config, row_config, teacher_config
from xdistill.data.splits import load_test
from xdistill.evaluate.run_eval import classifier_speeds, machine_info
from xdistill.evaluate.size_speed import count_parameters, speedups
from xdistill.io_utils import atomic_write_json
from xdistill.models.folder import read_model_info, write_model_info

DEPTHS = {2: [0, 11], 3: [0, 5, 11], 4: [0, 4, 8, 11], 6: [0, 2, 4, 7, 9, 11]}


def student_of_depth(student: Path, source, layers: list[int], out: Path) -> Path:
    """A copy of ``student`` whose encoder layers are the teacher model ``source``'s ``layers`` (weights copied)."""
    shutil.copytree(student, out)
    model = AutoModelForSequenceClassification.from_pretrained(student)
    model.bert.encoder.layer = torch.nn.ModuleList(copy.deepcopy(source.bert.encoder.layer[i]) for i in layers)
    model.config.num_hidden_layers = len(layers)
    model.save_pretrained(out)
    write_model_info(out, {**read_model_info(out), "student_teacher_layers": layers})  # new weight checksums
    return out


def dev_figures(marc_dev: Path) -> dict[int, dict]:
    """Per depth, marc-dev.json's recipe candidate (alpha 0.1, 3 epochs) as % of the teacher on dev."""
    if not marc_dev.is_file():
        return {}
    results = json.loads(marc_dev.read_text(encoding="utf-8"))
    teacher = results["teacher_dev_accuracy"]
    out = {}
    for c in results["candidates"]:
        depth = len(c["layers"])
        if depth in out or not (c["name"].startswith(f"{depth} layers")):
            continue
        acc = {lang: c["selected"][f"{lang}/accuracy"] for lang in teacher}
        out[depth] = {
            "candidate": c["name"],
            "dev_accuracy": acc,
            "dev_pct_of_teacher": {lang: 100 * acc[lang] / teacher[lang] for lang in teacher},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--run", type=Path, default=Path("runs/bench-marc/full/binary"))
    parser.add_argument("--teacher-base", type=Path, default=Path("models/e5-small"))
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--marc-dev", type=Path, default=Path("bench/results/marc-dev.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/marc-speed-per-size.json"))
    args = parser.parse_args()

    work = args.run.parent.parent  # runs/bench-marc (the layout bench marc writes)
    base = base_config(args.data_dir.resolve(), work / "full", args.teacher_base.resolve(), "binary", BUDGETS["full"])
    t_cfg = teacher_config(base, work / "full", "binary")
    teacher = args.run / "teacher-run" / "teacher"
    student = args.run / "student-unsupervised" / "seed13" / "student"
    for folder in (teacher, student):
        if not (folder / "config.json").is_file():
            raise SystemExit(
                f"{folder}: no trained model there; run `xdistill bench marc --variant binary` first, or pass "
                "--run pointing at its runs/bench-marc/full/binary folder"
            )
    cfg = row_config(base, "student-unsupervised", 13, work / "full", "binary", teacher)
    test = load_test(t_cfg)
    params = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"teacher": teacher}
        source = AutoModelForSequenceClassification.from_pretrained(teacher)  # loaded once for every depth
        for depth, layers in DEPTHS.items():
            folders[f"{depth} layers"] = student_of_depth(student, source, layers, Path(tmp) / f"d{depth}")
        for name, folder in folders.items():
            model = AutoModelForSequenceClassification.from_pretrained(folder)
            params[name] = count_parameters(model)["params_total"]
        windows = []
        for window in range(args.windows):
            speeds = classifier_speeds(cfg, folders, test)
            windows.append({"speeds": speeds, "speedups": speedups(speeds, "teacher")})
            print(
                f"window {window + 1}: "
                + ", ".join(f"{n} {s['speedup_b32']:.2f}x" for n, s in windows[-1]["speedups"].items())
            )
    dev = dev_figures(args.marc_dev)
    rows = []
    for depth, layers in DEPTHS.items():
        name = f"{depth} layers"
        row = {
            "depth": depth,
            "layers": layers,
            "params_total": params[name],
            "params_ratio": params[name] / params["teacher"],
        }
        for key in ("speedup_b32", "speedup_b1"):
            values = [w["speedups"][name][key] for w in windows]
            row[key], row[f"{key}_std"] = (
                statistics.median(values),
                (statistics.stdev(values) if len(values) > 1 else None),
            )
            row[f"{key}_per_window"] = values
        row.update(dev.get(depth, {}))
        rows.append(row)
    atomic_write_json(
        args.out,
        {
            "benchmark": "marc-speed-per-size",
            "machine": machine_info(),
            "protocol": (
                f"binary MARC teacher vs students of each depth, timed interleaved in one window ({args.windows} "
                f"windows), the same inputs drawn from every test language, median of {cfg.evaluate.repeats} timed "
                f"runs at batch 1 and 32, {cfg.evaluate.threads} threads; students: the seed-13 unsupervised "
                "student with the teacher's layers at each depth (speed only; dev accuracy from marc-dev.json)"
            ),
            "target": "student >= teacher in es and zh at >= 5x batch-32 throughput and <= 20% of its parameters",
            "rows": rows,
            "windows": windows,
        },
    )
    for row in rows:
        pct = row.get("dev_pct_of_teacher")
        pct_text = " / ".join(f"{pct[lang]:.1f}" for lang in ("es", "zh")) if pct else "–"
        print(
            f"{row['depth']} layers: {row['speedup_b32']:.2f}x b32, {row['speedup_b1']:.2f}x b1, "
            f"{100 * row['params_ratio']:.1f}% params, dev es/zh % of teacher {pct_text}"
        )


if __name__ == "__main__":
    main()
