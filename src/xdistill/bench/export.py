"""Benchmark: what export and int8 cost and buy, and how ``xdistill serve`` holds up under load.

    xdistill bench export --data-dir ../shared/data [--quick] [--mt en-es=runs/.../student] [--out bench/results/export.json]

- MARC student (the unsupervised student of ``bench marc``): PyTorch fp32 vs ONNX fp32 vs ONNX int8 —
  test accuracy (mean over en/es/zh), disk MB, latency at batch 1, throughput at batch 32 (2 threads,
  the same 32 test reviews for every format). Each export passes through ``export_model`` with the
  benchmark's dev sets as the accuracy gate, exactly as a user's export would. The fp32 teacher is a
  row too, for the disk ratio.
- Translation students given with ``--mt PAIR=FOLDER``: PyTorch fp32 vs CTranslate2 int8, chrF on
  FLORES-200 devtest, sentences/s at batch 32 (greedy).
- ``serve``: the int8 MARC student behind ``xdistill serve`` on loopback, ``clients`` concurrent
  clients posting one review each for ``seconds``: requests/s, p50/p99 latency, errors.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..bench.marc import BUDGETS, _config, base_config
from ..config import load_config
from ..data.mt_data import load_test_sets
from ..data.splits import load_test
from ..errors import XdistillError
from ..evaluate.run_eval import machine_info
from ..evaluate.size_speed import disk_mb, measure_speed
from ..export.exporter import export_model
from ..export.runtime import LoadedModel, load_model
from ..io_utils import atomic_write_json, atomic_write_text
from ..metrics.translation import translation_scores
from ..models.batches import encode_texts, pad_ids, pad_token_id

TARGETS = {"int8_max_loss_points": 0.5, "int8_disk_vs_teacher": 1 / 15, "int8_speedup_vs_fp32": 2.0}


def _marc_config(data_dir: Path, work_dir: Path, quick: bool) -> tuple[Any, Path]:
    raw = base_config(data_dir, work_dir, Path("models/e5-small"), "binary", BUDGETS["quick" if quick else "full"])
    raw["data"]["max_test"] = 1000 if quick else None
    raw["data"]["max_dev"] = 300 if quick else None
    path = work_dir / "marc-eval.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return _config(raw), path


def classifier_row(
    model: LoadedModel, name: str, fmt: str, test: dict[str, list], threads: int = 2, accuracy: bool = True
) -> dict[str, Any]:
    per_lang = {}
    for lang, examples in test.items() if accuracy else ():
        pred = model.logits([e.text for e in examples], batch_size=64).argmax(-1)
        per_lang[lang] = 100.0 * float(np.mean(pred == np.array([e.label for e in examples])))
    sample = next(iter(test.values()))[:32]
    ids = encode_texts(
        model.tokenizer,
        [e.text for e in sample],
        prefix=model.info.get("text_prefix", "") or "",
        max_length=int(model.info.get("max_length", 128)),
    )
    batches = {bs: pad_ids((ids * (bs // len(ids) + 1))[:bs], pad_token_id(model.tokenizer)) for bs in (1, 32)}
    speed = measure_speed(lambda bs: model.backend(*batches[bs]), batch_sizes=(1, 32), threads=threads, repeats=5)
    return {
        "model": name,
        "format": fmt,
        "metric": "accuracy" if accuracy else "speed and size only",
        "value": float(np.mean(list(per_lang.values()))) if per_lang else None,
        "per_language": per_lang,
        "disk_mb": disk_mb(model.folder),
        "latency_ms_b1": speed["latency_ms_b1"],
        "throughput_b32": speed["throughput_b32"],
    }


def translator_row(model: LoadedModel, name: str, fmt: str, pairs, target: str, threads: int = 2) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    hyps = model.translate([p.source for p in pairs], beam=1, batch_size=32)
    chrf = translation_scores(hyps, [p.target for p in pairs], target)["chrf"]
    batch = [p.source for p in pairs[:32]]
    speed = measure_speed(
        lambda bs: model.backend.translate(batch[:bs], beam=1, batch_size=32),
        batch_sizes=(1, 32),
        threads=threads,
        repeats=3,
    )
    return {
        "model": name,
        "format": fmt,
        "metric": "chrf",
        "value": chrf,
        "disk_mb": disk_mb(model.folder),
        "latency_ms_b1": speed["latency_ms_b1"],
        "throughput_b32": speed["throughput_b32"],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test_serve(model_dir: Path, texts: list[str], *, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads post one text each, back to back, for ``seconds`` against a real server process."""
    import httpx

    port = _free_port()
    env = {**os.environ, "XDISTILL_NO_PROGRESS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "xdistill", "serve", str(model_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise XdistillError(f"the server did not start: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.5)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.time() + seconds

        def client(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                n = i
                while time.time() < stop:
                    start = time.perf_counter()
                    try:
                        ok = c.post("/v1/classify", json={"texts": [texts[n % len(texts)]]}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    elapsed = time.perf_counter() - start
                    with lock:
                        latencies.append(elapsed)
                        errors[0] += not ok
                    n += clients

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = sorted(1000 * x for x in latencies)
    return {
        "clients": clients,
        "seconds": wall,
        "requests": len(ms),
        "requests_per_s": len(ms) / wall,
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
        "errors": errors[0],
    }


def run_benchmark(
    *,
    data_dir: Path,
    out: Path,
    work_dir: Path,
    marc_student: Path,
    marc_teacher: Path,
    mt_students: dict[str, Path],
    quick: bool = False,
    clients: int = 32,
    seconds: float = 30.0,
    mt_only: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    if mt_only:
        return _add_mt_rows(out, mt_students, data_dir=data_dir, work_dir=work_dir, quick=quick, echo=echo)
    for path, what in ((marc_student, "MARC student"), (marc_teacher, "MARC teacher")):
        if not (path / "config.json").is_file():
            raise XdistillError(f"no {what} in {path}; run `xdistill bench marc` first or pass its folder")
    start = time.perf_counter()
    results: dict[str, Any] = {"benchmark": "export", "quick": quick, "machine": machine_info(), "rows": []}
    cfg, eval_config = _marc_config(data_dir, work_dir, quick)
    test = load_test(cfg)
    # The teacher's speed is measured here too, in the same process as the students' (its accuracy
    # is in bench/results/marc.json).
    results["rows"].append(
        classifier_row(load_model(marc_teacher), "marc-teacher", "pytorch-fp32", test, accuracy=False)
    )
    echo("[export] MARC student: pytorch-fp32")
    results["rows"].append(classifier_row(load_model(marc_student), "marc-student", "pytorch-fp32", test))
    exports = {}
    for fmt, quantize in (("onnx-fp32", None), ("onnx-int8", "int8")):
        echo(f"[export] MARC student: {fmt}")
        res = export_model(
            marc_student,
            "onnx",
            work_dir / f"marc-student-{fmt}",
            quantize=quantize,
            eval_config=eval_config,
            max_drop=TARGETS["int8_max_loss_points"],
        )
        exports[fmt] = res.to_dict()
        row = classifier_row(load_model(work_dir / f"marc-student-{fmt}"), "marc-student", fmt, test)
        row["export"] = {"parity": res.parity, "gate": res.gate}
        results["rows"].append(row)
        atomic_write_json(out, results)
    _measure_mt(results, mt_students, data_dir=data_dir, work_dir=work_dir, quick=quick, out=out, echo=echo)
    echo(f"[export] serve load test: {clients} clients, {seconds:g} s")
    reviews = [e.text for exs in test.values() for e in exs][:2000]
    results["serve"] = {
        "model": "marc-student onnx-int8",
        **load_test_serve(work_dir / "marc-student-onnx-int8", reviews, clients=clients, seconds=seconds),
    }
    results["targets"] = check_targets(results["rows"])
    results["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(out, results)
    return results


def _measure_mt(
    results: dict[str, Any],
    mt_students: dict[str, Path],
    *,
    data_dir: Path,
    work_dir: Path,
    quick: bool,
    out: Path,
    echo: Callable[[str], None],
) -> None:
    """PyTorch fp32 vs CTranslate2 int8 rows for each translation student, on FLORES-200 devtest."""

    for pair, folder in mt_students.items():
        mt_cfg = load_config(
            Path("configs") / ("mt-en-es-apertium.yaml" if pair == "en-es" else "mt-en-zh-teacher.yaml"),
            [f"data.dir={data_dir}"] + (["mt.max_eval_pairs=200"] if quick else []),
        )
        pairs = load_test_sets(mt_cfg)["flores"]
        target = mt_cfg.data.target_langs[0]
        echo(f"[export] {pair}: pytorch-fp32 and ct2-int8")
        results["rows"].append(translator_row(load_model(folder), f"mt-{pair}", "pytorch-fp32", pairs, target))
        res = export_model(folder, "ctranslate2", work_dir / f"mt-{pair}-ct2-int8", quantize="int8")
        row = translator_row(load_model(work_dir / f"mt-{pair}-ct2-int8"), f"mt-{pair}", "ct2-int8", pairs, target)
        row["export"] = {"parity": res.parity}
        results["rows"].append(row)
        atomic_write_json(out, results)


def _add_mt_rows(
    out: Path, mt_students: dict[str, Path], *, data_dir: Path, work_dir: Path, quick: bool, echo: Callable[[str], None]
) -> dict[str, Any]:
    """``--mt-only``: re-measure the translation rows of an existing results file, keep the rest."""
    if not out.is_file():
        raise XdistillError(f"--mt-only adds to an existing {out}; run `xdistill bench export` without it first")
    if not mt_students:
        raise XdistillError("--mt-only needs at least one --mt PAIR=FOLDER")
    results = json.loads(out.read_text(encoding="utf-8"))
    results["rows"] = [r for r in results["rows"] if r["model"] not in {f"mt-{p}" for p in mt_students}]
    start = time.perf_counter()
    _measure_mt(results, mt_students, data_dir=data_dir, work_dir=work_dir, quick=quick, out=out, echo=echo)
    results["mt_wall_seconds"] = time.perf_counter() - start
    # The kept rows were measured on results["machine"]; the re-measured ones may be on another.
    results["mt_machine"] = machine_info()
    results["targets"] = check_targets(results["rows"])
    atomic_write_json(out, results)
    return results


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["model"], r["format"]): r for r in rows}
    fp32, int8, teacher = (
        by.get(("marc-student", "pytorch-fp32")),
        by.get(("marc-student", "onnx-int8")),
        by.get(("marc-teacher", "pytorch-fp32")),
    )
    out: dict[str, Any] = {}
    if fp32 and int8:
        loss = fp32["value"] - int8["value"]
        out["int8_accuracy_loss"] = {
            "value": loss,
            "target": "<= 0.5 points",
            "met": loss <= TARGETS["int8_max_loss_points"],
        }
        speedup = int8["throughput_b32"] / fp32["throughput_b32"]
        out["int8_speedup_vs_fp32"] = {
            "value": speedup,
            "target": ">= 2x",
            "met": speedup >= TARGETS["int8_speedup_vs_fp32"],
        }
    if int8 and teacher:
        ratio = int8["disk_mb"] / teacher["disk_mb"]
        out["int8_disk_vs_teacher"] = {
            "value": ratio,
            "target": "<= 1/15 (0.067)",
            "met": ratio <= TARGETS["int8_disk_vs_teacher"],
        }
    if fp32 and teacher and teacher.get("throughput_b32"):
        out["fp32_student_speedup_vs_teacher"] = {
            "value": fp32["throughput_b32"] / teacher["throughput_b32"],
            "target": ">= 5x (issue 3)",
            "met": fp32["throughput_b32"] >= 5 * teacher["throughput_b32"],
        }
    for (model, fmt), row in by.items():
        if fmt == "ct2-int8":
            ref = by.get((model, "pytorch-fp32"))
            if ref:
                loss = ref["value"] - row["value"]
                out[f"{model}_ct2_int8_chrf_loss"] = {"value": loss, "target": "<= 0.5 points", "met": loss <= 0.5}
    return out


def _mt_provenance(results: dict[str, Any]) -> str:
    """Where and how long the translation rows were measured, when `--mt-only` re-measured them later."""
    mt_machine = results.get("mt_machine")
    if not mt_machine:
        return ""
    return (
        f" The translation (mt-*) rows were re-measured with `--mt-only` on {mt_machine['cpu']} "
        f"in {results.get('mt_wall_seconds', 0) / 60:.1f} min."
    )


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        f"### Export{' (quick)' if results.get('quick') else ''}",
        "",
        f"Machine: {results['machine']['cpu']}; wall time {results.get('wall_seconds', 0) / 60:.1f} min."
        + _mt_provenance(results),
        "",
        "| model | format | metric | value | disk MB | ms b1 | b32 /s |",
        "| --- | --- | --- | --: | --: | --: | --: |",
    ]
    for r in results["rows"]:
        value = "–" if r.get("value") is None else f"{r['value']:.2f}"
        lat = "–" if r.get("latency_ms_b1") is None else f"{r['latency_ms_b1']:.1f}"
        thr = "–" if r.get("throughput_b32") is None else f"{r['throughput_b32']:.0f}"
        lines.append(f"| {r['model']} | {r['format']} | {r['metric']} | {value} | {r['disk_mb']:.1f} | {lat} | {thr} |")
    s = results.get("serve")
    if s:
        lines += [
            "",
            f"`xdistill serve` ({s['model']}), {s['clients']} clients for {s['seconds']:.0f} s on loopback: "
            f"{s['requests_per_s']:.1f} requests/s, p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, "
            f"{s['errors']} errors.",
        ]
    for name, t in results.get("targets", {}).items():
        lines.append(f"- {name}: {t['value']:.3g} (target {t['target']}): {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines) + "\n"
