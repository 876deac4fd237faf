"""Benchmark: translation distillation, en->es from a black box (Apertium) and en->zh from a trained teacher.

    xdistill bench mt --data-dir ../shared/data [--quick] [--pair en-es --pair en-zh] [--out bench/results/mt.json]

Per pair, from the shipped recipes (``configs/mt-en-es-apertium.yaml``, ``configs/mt-en-zh-teacher.yaml``):
- ``teacher``: Apertium, or the Marian-style teacher trained on the decontaminated references;
- ``student-seqkd``: the small student trained on the teacher's translations (seq-KD);
- ``student-seqkd-wordkd`` (en-zh): plus word-level KD against the white-box teacher;
- ``student-ref``: the same student trained on the references alone, no teacher.
Every row: BLEU, chrF (sacrebleu, signatures recorded), params, disk MB, sentences/s (batch 32,
2 threads; the student's at its evaluation beam). ``--quick`` caps data and epochs (same JSON shape).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import RunConfig, from_dict
from ..data.mt_data import load_test_sets
from ..errors import XdistillError
from ..evaluate.mt_eval import SPEED_BATCH, speed_batch
from ..evaluate.run_eval import machine_info
from ..evaluate.size_speed import disk_mb, measure_speed
from ..export.exporter import export_model
from ..export.runtime import load_model
from ..io_utils import atomic_write_json
from ..layout import student_dir
from ..metrics.translation import translation_scores
from ..models.folder import read_model_info
from ..pipeline import run_all, run_stage, stage_done

RECIPES = {"en-es": "configs/mt-en-es-apertium.yaml", "en-zh": "configs/mt-en-zh-teacher.yaml"}
# Student variants per pair: name -> overrides on top of the recipe.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "en-es": {"student-seqkd": {}, "student-ref": {"distill": {"use_teacher": False}}},
    # Word-level KD last: it runs the teacher beside the student, the slowest row.
    # en-zh: the seq-KD students train on teacher translations + references for 1 epoch, the
    # reference student on the references for 2: the same number of steps (pairs x epochs).
    "en-zh": {
        "student-seqkd": {},
        "student-ref": {"distill": {"use_teacher": False}, "train": {"epochs": 2}},
        "student-seqkd-wordkd": {"mt": {"word_kd_weight": 0.5}},
    },
}
QUICK = {
    "max_pairs": 400,
    "max_lines": 300,
    "max_eval_pairs": 50,
    "epochs": 1,
    "teacher_epochs": 1,
    "dev_pairs": 50,
    "repeats": 1,
    "max_length": 64,
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def pair_config(
    pair: str, variant: str, *, data_dir: Path, work_dir: Path, quick: bool, speed: bool = True
) -> RunConfig:
    recipe = Path(RECIPES[pair])
    if not recipe.is_file():
        raise XdistillError(f"benchmark recipe not found: {recipe} (run from the project root)")
    raw = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    raw["data"]["dir"] = str(data_dir)
    # One run folder per pair: the trained teacher (teacher stage) is shared by its students.
    raw["run_dir"] = str(work_dir / pair / variant)
    raw["cache_dir"] = str(work_dir / "cache")
    if not raw["teacher"].get("command") and not raw["teacher"].get("path"):
        raw["teacher"]["path"] = str(work_dir / pair / "teacher-run" / "teacher")
    if quick:
        for par in raw["data"]["parallel"]:
            par["max_pairs"] = min(par.get("max_pairs") or QUICK["max_pairs"], QUICK["max_pairs"])
        for mono in raw["mt"].get("monolingual", []):
            mono["max_lines"] = QUICK["max_lines"]
        raw["mt"]["max_eval_pairs"] = QUICK["max_eval_pairs"]
        raw["mt"]["dev_pairs"] = QUICK["dev_pairs"]
        raw["mt"]["max_length"] = QUICK["max_length"]
        raw["train"]["epochs"] = QUICK["epochs"]
        raw["teacher"].setdefault("train", {})["epochs"] = QUICK["teacher_epochs"]
        raw.setdefault("evaluate", {})["repeats"] = QUICK["repeats"]
    if not speed:
        # Scores only: a later run with speed re-evaluates from the cached translations and times
        # every model then (on a quiet machine), reusing all the training.
        raw.setdefault("evaluate", {})["speed"] = False
    raw = _merge(raw, VARIANTS[pair][variant])
    return from_dict(RunConfig, raw, source=str(recipe))


def teacher_config(pair: str, *, data_dir: Path, work_dir: Path, quick: bool) -> RunConfig | None:
    """The run that trains the pair's teacher, or None when the recipe's teacher is given."""
    cfg = pair_config(pair, "student-seqkd", data_dir=data_dir, work_dir=work_dir, quick=quick)
    if cfg.teacher.command:
        return None
    raw = cfg.to_dict()
    raw["teacher"]["path"] = ""
    raw["run_dir"] = str(work_dir / pair / "teacher-run")
    return from_dict(RunConfig, raw, source=RECIPES[pair])


def training_cost(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """Steps and seconds the stage's training took, from its marker (also when an earlier
    invocation trained it and this one reused it)."""
    marker = Path(cfg.run_dir) / ".stages" / f"{stage}.json"
    done = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    return {f"train_{k}": done[k] for k in ("steps", "seconds") if k in done}


def keep_other_pairs(results: dict[str, Any], out: Path, pairs: list[str]) -> None:
    """A run of some pairs keeps the rows ``out`` already holds for the others (with where and
    how they were measured), so one pair can be re-run without redoing the other."""
    if not out.is_file():
        return
    try:
        old = json.loads(out.read_text(encoding="utf-8"))
    except ValueError:
        raise XdistillError(f"{out} is not valid JSON; move it away or pass another --out") from None
    if old.get("quick") != results["quick"]:
        return
    for pair in sorted({r["pair"] for r in old.get("rows", [])} - set(pairs)):
        results["rows"].extend(r for r in old["rows"] if r["pair"] == pair)
        if pair in old.get("data", {}):
            results["data"][pair] = old["data"][pair]
        results["runs"][pair] = old.get("runs", {}).get(pair) or {
            "machine": old.get("machine"),
            "wall_seconds_whole_run": old.get("wall_seconds"),
            "skipped": old.get("skipped", []),
        }
        results["runs"][pair]["kept_from_an_earlier_run"] = True


def _rows(pair: str, name: str, model: dict[str, Any], cost: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "pair": pair,
            "testset": test,
            "bleu": s["bleu"],
            "chrf": s["chrf"],
            "bleu_signature": s["bleu_signature"],
            "chrf_signature": s["chrf_signature"],
            "beam": model["beam"],
            "params_total": model.get("params_total"),
            "disk_mb": model.get("disk_mb"),
            "sentences_per_s": model.get("sentences_per_s"),
            **(cost or {}),
            **{k: v for k, v in model.items() if k.startswith(("sentences_per_s_", "tokens_per_s_"))},
        }
        for test, s in model["tests"].items()
    ]


def ct2_int8_model(cfg: RunConfig, folder: Path, pytorch: dict[str, Any]) -> dict[str, Any]:
    """The seq-KD student exported to CTranslate2 int8, scored and timed like the PyTorch one
    (same test sets, beam and batch; the parameter count is the PyTorch model's)."""

    export_model(student_dir(cfg), "ctranslate2", folder, quantize="int8")
    model = load_model(folder, threads=cfg.evaluate.threads)
    beam, target = cfg.mt.eval_beam, cfg.data.target_langs[0]
    entry: dict[str, Any] = {
        "beam": beam,
        "tests": {},
        "params_total": pytorch.get("params_total"),
        "disk_mb": disk_mb(folder),
    }
    tests = load_test_sets(cfg)
    for name, pairs in tests.items():
        hyps = model.translate([p.source for p in pairs], beam=beam, batch_size=cfg.mt.eval_batch_size)
        entry["tests"][name] = {"sentences": len(pairs), **translation_scores(hyps, [p.target for p in pairs], target)}
    pool = speed_batch([p.source for p in next(iter(tests.values()))])
    timing = measure_speed(
        lambda bs: model.translate(pool[:bs], beam=beam, batch_size=SPEED_BATCH),
        batch_sizes=(SPEED_BATCH,),
        threads=cfg.evaluate.threads,
        repeats=cfg.evaluate.repeats,
    )
    entry["sentences_per_s"] = timing[f"throughput_b{SPEED_BATCH}"]
    return entry


def run_benchmark(
    *,
    data_dir: Path,
    out: Path,
    work_dir: Path,
    pairs: list[str],
    quick: bool = False,
    skip: list[str] = (),
    speed: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    if "en-es" in pairs and not shutil.which("apertium"):
        raise XdistillError(
            "the en-es benchmark needs Apertium: `apt-get install apertium-eng-spa` (or run only --pair en-zh)"
        )
    start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "mt",
        "quick": quick,
        "machine": machine_info(),
        "rows": [],
        "data": {},
        "runs": {},
        "skipped": list(skip),
        "speed_measured": speed,
        "complete": False,
    }
    keep_other_pairs(results, out, pairs)

    def save() -> None:
        results["wall_seconds"] = time.perf_counter() - start
        atomic_write_json(out, results)

    for pair in pairs:
        pair_start = time.perf_counter()
        t_cfg = teacher_config(pair, data_dir=data_dir, work_dir=work_dir, quick=quick)
        if t_cfg is not None and not stage_done(t_cfg, "teacher"):
            echo(f"[{pair}] training the teacher")
            run_stage(t_cfg, "teacher", force=True, progress=progress, echo=echo)
        teacher_row_done = False
        for variant in [v for v in VARIANTS[pair] if v not in skip]:
            cfg = pair_config(pair, variant, data_dir=data_dir, work_dir=work_dir, quick=quick, speed=speed)
            echo(f"[{pair}] {variant}")
            run_all(cfg, progress=progress, echo=echo)
            # From the run folder: a re-run skips finished stages (and returns nothing for them).
            res = json.loads((Path(cfg.run_dir) / "results.json").read_text(encoding="utf-8"))
            if "teacher" in res["models"] and not teacher_row_done:
                teacher_cost = training_cost(t_cfg, "teacher") if t_cfg is not None else {}
                results["rows"].extend(_rows(pair, "teacher", res["models"]["teacher"], teacher_cost))
                teacher_row_done = True
            results["rows"].extend(_rows(pair, variant, res["models"]["student"], training_cost(cfg, "student")))
            if variant == "student-seqkd":
                info = read_model_info(Path(cfg.run_dir) / "student")
                results["data"][pair] = info["data"]
            if variant == "student-seqkd" and speed:  # the export is redone each run: with the timing pass only
                echo(f"[{pair}] {variant}: CTranslate2 int8 export")
                ct2 = ct2_int8_model(cfg, work_dir / pair / "student-seqkd-ct2-int8", res["models"]["student"])
                results["rows"].extend(_rows(pair, "student-seqkd-ct2-int8", ct2))
            results["runs"][pair] = {
                "machine": results["machine"],
                "speed_measured": speed,
                "skipped": list(skip),
                "wall_seconds_this_invocation": time.perf_counter() - pair_start,
            }
            save()
    results["targets"] = check_targets(results["rows"])
    results["complete"] = True
    save()
    return results


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, from the rows (a target whose rows are missing is not listed)."""
    by = {(r["pair"], r["name"], r["testset"]): r for r in rows}
    out: dict[str, Any] = {}
    for (pair, name, test), row in by.items():
        teacher = by.get((pair, "teacher", test))
        if not name.startswith("student-seqkd") or not teacher or not teacher["chrf"]:
            continue
        ratio = 100 * row["chrf"] / teacher["chrf"]
        out[f"{pair} {name} {test}: chrF >= 95% of teacher"] = {"value": round(ratio, 1), "met": ratio >= 95}
    for (pair, name, test), row in by.items():
        ref = by.get((pair, "student-ref", test))
        if name != "student-seqkd" or not ref:
            continue
        if pair == "en-zh":
            gain = row["bleu"] - ref["bleu"]
            out[f"{pair} {test}: seq-KD BLEU - reference-trained BLEU >= 1"] = {
                "value": round(gain, 2),
                "met": gain >= 1,
            }
            # Speed is measured once per model (on the first test set): every row of it carries it.
            teacher = by.get((pair, "teacher", test))
            if teacher and teacher.get("sentences_per_s") and row.get("sentences_per_s"):
                speedup = row["sentences_per_s"] / teacher["sentences_per_s"]
                out[f"{pair}: student sentences/s >= 5x teacher (PyTorch, batch 32)"] = {
                    "value": round(speedup, 2),
                    "met": speedup >= 5,
                }
        if pair == "en-es" and test == "flores":
            gain = row["chrf"] - ref["chrf"]
            out[f"{pair} {test}: seq-KD chrF > reference-trained chrF"] = {"value": round(gain, 2), "met": gain > 0}
    return out


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        f"### Translation{' (quick)' if results.get('quick') else ''}",
        "",
        f"Machine: {results['machine']['cpu']}, torch {results['machine']['torch']}; wall time of this "
        f"invocation {results.get('wall_seconds', 0) / 60:.1f} min (stages an earlier invocation finished are "
        "reused, not counted: the training minutes per pair are below).",
        "",
        "| pair | test set | row | BLEU | chrF | params (M) | disk MB | sent/s (b32) | train steps |",
        "| --- | --- | --- | --: | --: | --: | --: | --: | --: |",
    ]
    for r in results["rows"]:
        params = f"{r['params_total'] / 1e6:.1f}" if r.get("params_total") else "–"
        disk = f"{r['disk_mb']:.0f}" if r.get("disk_mb") else "–"
        sps = f"{r['sentences_per_s']:.1f}" if r.get("sentences_per_s") else "–"
        steps = f"{r['train_steps']:,}" if r.get("train_steps") else "–"
        lines.append(
            f"| {r['pair']} | {r['testset']} | {r['name']} | {r['bleu']:.1f} | {r['chrf']:.1f} | "
            f"{params} | {disk} | {sps} | {steps} |"
        )
    for pair, why in (results.get("not_run") or {}).items():
        lines += ["", f"{pair}: {why}."]
    runs = results.get("runs") or {}
    for pair, run in runs.items():
        machine = (run.get("machine") or {}).get("cpu", "?")
        left_out = [v for v in run.get("skipped", []) if v in VARIANTS.get(pair, {})]
        trained = {
            r["name"]: r["train_seconds"] for r in results["rows"] if r["pair"] == pair and r.get("train_seconds")
        }
        lines += [
            "",
            f"{pair}: measured on {machine}"
            + (" (rows kept from an earlier run of the benchmark)" if run.get("kept_from_an_earlier_run") else "")
            + (
                "; training wall time " + ", ".join(f"{name} {sec / 60:.0f} min" for name, sec in trained.items())
                if trained
                else ""
            )
            + (f"; {run['note']}" if run.get("note") else "")
            + (f"; rows left out (`--skip`): {', '.join(left_out)}" if left_out else "")
            + ".",
        ]
    if results.get("skipped") and not runs:
        lines += ["", f"Rows left out of this run (`--skip`): {', '.join(results['skipped'])}."]
    if results.get("targets"):
        lines += ["", "| target | measured | met |", "| --- | --: | --- |"]
        lines += [
            f"| {name} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for name, t in results["targets"].items()
        ]
    for pair, data in results.get("data", {}).items():
        d = data["decontamination"]
        lines.append("")
        lines.append(
            f"{pair}: decontamination removed {d['dropped_pairs']} reference pairs and "
            f"{d['dropped_monolingual']} monolingual sentences that occur in a test set."
        )
    return "\n".join(lines) + "\n"
