"""Benchmark: choose the MARC student recipe on dev data only, and show per student size how close
each recipe gets to its teacher.

Every candidate is ``configs/marc-binary.yaml`` plus ``--set`` overrides, distilled from one teacher
(fine-tuned once, shared) and scored on the kshot256 dev files (``evaluate.split: dev``); no test file
is read. The saved epoch is the recipe's own selection (best English dev accuracy: the unsupervised
protocol), and the recipe chosen is the best by that same English dev accuracy among the candidates
of the benchmark's student size (``bench marc``'s 2 layers: the ~5x speed budget). Larger students
are trained for the per-size table only.

    xdistill bench marc-dev --data-dir ../shared/data [--jobs 4] --out bench/results/marc-dev.json

``--jobs``: candidates trained at once, each in its own process (on a GPU, many fit beside each other;
on 2 CPU cores use 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig, load_config
from ..data.splits import load_test
from ..errors import XdistillError
from ..evaluate.run_eval import evaluate_classifier, machine_info
from ..evaluate.size_speed import count_parameters
from ..io_utils import atomic_write_json
from ..layout import logs_dir, student_dir, teacher_dir
from ..models.classifier import load_classifier
from ..models.e5_import import import_e5_small
from ..pipeline import run_stage
from .marc import STUDENT_LAYERS

# name -> (--set overrides, seeds of extra teachers for multi-teacher distillation)
DEV_CANDIDATES: dict[str, tuple[list[str], list[int]]] = {
    "2 layers [0, 11], alpha 0.1, 3 epochs (the recipe)": ([], []),
    "alpha 0 (soft targets only)": (["distill.alpha=0.0"], []),
    "temperature 1": (["distill.temperature=1.0"], []),
    "lr 4e-4": (["train.lr=4.0e-4"], []),
    "layers [0, 6]": (["student.layers=[0,6]"], []),
    "6 epochs": (["train.epochs=6"], []),
    "hidden-state MSE, weight 1": (["distill.hidden_weight=1.0"], []),
    "multi-teacher (seeds 13, 21, 42)": ([], [21, 42]),
    "3 layers [0, 5, 11]": (["student.layers=[0,5,11]"], []),
    "4 layers [0, 4, 8, 11]": (["student.layers=[0,4,8,11]"], []),
}


def _path_override(key: str, path: Path) -> str:
    """``--set key=path``, quoted so that a path the YAML parser would read otherwise ("builtin:") stays a string."""
    return f"{key}={json.dumps(str(path))}"


def run_dev_selection(
    *,
    config: Path,
    data_dir: Path,
    out: Path,
    work_dir: Path,
    e5_path: Path | None,  # the teacher's base model (None: the config's teacher.path)
    candidates: dict[str, tuple[list[str], list[int]]] | None = None,
    jobs: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    candidates = candidates or DEV_CANDIDATES
    if e5_path is not None and not (e5_path / "config.json").is_file():
        echo(f"importing multilingual-e5-small into {e5_path}")
        import_e5_small(e5_path, progress=progress)
    start = time.perf_counter()
    # Dev only, from first to last: the teacher is selected on English dev, the students are scored on dev.
    base = [
        _path_override("data.dir", data_dir),
        *([_path_override("teacher.path", e5_path)] if e5_path is not None else []),
        "evaluate.split=dev",
        "evaluate.speed=false",
        _path_override("cache_dir", work_dir / "cache"),
    ]

    def trained_teacher(seed: int | None = None) -> RunConfig:
        name = "teacher-run" if seed is None else f"teacher-run-seed{seed}"
        sets = [*base, _path_override("run_dir", work_dir / name), *([f"seed={seed}"] if seed else [])]
        cfg = load_config(config, sets)
        run_stage(cfg, "teacher", progress=progress, echo=echo)
        return cfg

    teacher_cfg = trained_teacher()
    teacher = teacher_dir(teacher_cfg)
    dev = load_test(teacher_cfg, split="dev")
    t_entry, _, _ = evaluate_classifier(teacher_cfg, "teacher", teacher, dev, progress=progress)
    extra_seeds = sorted({s for _, seeds in candidates.values() for s in seeds})
    extra = {seed: teacher_dir(trained_teacher(seed)) for seed in extra_seeds}
    results: dict[str, Any] = {
        "benchmark": "marc-dev",
        "machine": machine_info(),
        "protocol": {
            "recipe": str(config),
            "data": "kshot256 seed13 dev files (512 reviews per class and language); no test file read",
            "selection": "each candidate saves its best English dev epoch; the recipe is chosen by that English "
            f"dev accuracy among candidates of {len(STUDENT_LAYERS)} layers (bench marc's student size)",
            "teacher": "fine-tuned once, shared by every candidate (multi-teacher: + teachers of other seeds)",
        },
        "teacher_dev_accuracy": {lang: m["accuracy"] for lang, m in t_entry["metrics"].items()},
        "candidates": [],
        "recipes_tried": len(candidates),
    }

    def train(index: int, name: str) -> dict[str, Any]:
        overrides, seeds = candidates[name]
        run_dir = work_dir / f"candidate-{index}"
        sets = [
            *base,
            *overrides,
            _path_override("run_dir", run_dir),
            _path_override("teacher.path", teacher),
            "teacher.finetune=false",
            *([f"distill.extra_teachers={json.dumps([str(extra[s]) for s in seeds])}"] if seeds else []),
        ]
        echo(f"[marc-dev] {index + 1}/{len(candidates)} {name}")
        began = time.perf_counter()
        # A process per candidate: several can share a GPU, and each gets torch's state to itself.
        cmd = [sys.executable, "-m", "xdistill", "distill", "--config", str(config)]
        for item in sets:
            cmd += ["--set", item]
        done = subprocess.run(cmd, capture_output=not progress, text=True)
        if done.returncode != 0:
            said = (done.stderr or "")[-500:] if done.stderr is not None else "its messages are above"
            raise XdistillError(f"bench marc-dev: candidate {name!r} ({' '.join(overrides)}) failed: {said}")
        cfg = load_config(config, sets)
        log_path = logs_dir(student_dir(cfg)) / "metrics.jsonl"
        epochs = [r for r in map(json.loads, log_path.read_text(encoding="utf-8").splitlines()) if r["type"] == "eval"]
        chosen = next(r for r in reversed(epochs) if r.get("best"))
        model, _ = load_classifier(student_dir(cfg), flag=name, labels=cfg.data.labels)
        return {
            "name": name,
            "overrides": overrides + [f"extra teachers: seeds {seeds}"] * bool(seeds),
            "layers": list(cfg.student.layers),
            "params_total": count_parameters(model)["params_total"],
            "selected_epoch": chosen["epoch"],
            "selected": {k[4:]: v for k, v in chosen.items() if k.startswith("dev/")},
            "epochs": [
                {"epoch": r["epoch"], **{k[4:]: v for k, v in r.items() if k.startswith("dev/")}} for r in epochs
            ],
            "seconds": round(time.perf_counter() - began, 1),
        }

    names = list(candidates)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for record in pool.map(train, range(len(names)), names):
            results["candidates"].append(record)
            atomic_write_json(out, results)
    eligible = [c for c in results["candidates"] if len(c["layers"]) == len(STUDENT_LAYERS)]
    best = max(eligible, key=lambda c: c["selected"]["en/accuracy"])
    results["chosen"] = {"name": best["name"], "overrides": best["overrides"]}
    results["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(out, results)
    return results


def dev_markdown(results: dict[str, Any]) -> str:
    """One row per candidate: size, the epoch its English dev picked, dev accuracy and agreement per
    language, and the target languages as a percentage of the teacher's dev accuracy."""
    teacher = results["teacher_dev_accuracy"]
    machine = results["machine"]
    lines = [
        f"### MARC binary: recipes on dev ({results['recipes_tried']} tried)",
        "",
        f"{results['protocol']['data']}. {results['protocol']['selection']}. Machine: {machine['cpu']}, "
        f"torch {machine['torch']}, commit {str(machine.get('commit'))[:7]}"
        + (" (uncommitted changes)" if machine.get("dirty") else "")
        + "".join(f". {results[k]}" for k in ("note", "full_run_budget_note") if results.get(k)),
        "",
        "| recipe | layers | params (M) | epoch | en / es / zh dev acc | es / zh agreement | es / zh % of teacher |",
        "| --- | --- | --: | --: | --- | --- | --- |",
        f"| teacher | 12 | – | – | {teacher['en']:.1f} / {teacher['es']:.1f} / {teacher['zh']:.1f} | – | 100 / 100 |",
    ]
    for c in results["candidates"]:
        s = c["selected"]
        params = f"{c['params_total'] / 1e6:.1f}" if c.get("params_total") else "–"
        lines.append(
            f"| {c['name']} | {len(c['layers'])} | {params} | {c['selected_epoch']:g} | "
            f"{s['en/accuracy']:.1f} / {s['es/accuracy']:.1f} / {s['zh/accuracy']:.1f} | "
            f"{s['es/agreement']:.1f} / {s['zh/agreement']:.1f} | "
            f"{100 * s['es/accuracy'] / teacher['es']:.1f} / {100 * s['zh/accuracy'] / teacher['zh']:.1f} |"
        )
    if results.get("chosen"):
        lines += ["", f"Chosen on English dev: **{results['chosen']['name']}**."]
    return "\n".join(lines) + "\n"


def speed_per_size_markdown(results: dict[str, Any]) -> str:
    """scripts/speed_per_size.py's JSON: per student depth, its size and speed-up over the teacher
    beside the dev accuracy of the trained student of that depth (marc-dev.json)."""
    machine = results["machine"]
    lines = [
        "### MARC binary: speed per student size",
        "",
        f"{results['protocol']}. Machine: {machine['cpu']}, torch {machine['torch']}, commit "
        f"{str(machine.get('commit'))[:7]}" + (" (uncommitted changes)" if machine.get("dirty") else "") + ". "
        f"Target: {results['target']}.",
        "",
        "| layers | teacher layers | params (% of teacher) | × teacher b32 | × teacher b1 | es / zh dev % of teacher |",
        "| --: | --- | --: | --- | --- | --- |",
    ]
    for row in results["rows"]:
        pct = row.get("dev_pct_of_teacher")
        dev = f"{pct['es']:.1f} / {pct['zh']:.1f}" if pct else "not trained"
        lines.append(
            f"| {row['depth']} | {row['layers']} | {100 * row['params_ratio']:.1f}% | "
            f"{row['speedup_b32']:.2f} ± {row['speedup_b32_std']:.2f} | {row['speedup_b1']:.2f} ± "
            f"{row['speedup_b1_std']:.2f} | {dev} |"
        )
    return "\n".join(lines) + "\n"
