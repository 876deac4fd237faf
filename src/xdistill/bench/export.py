"""Benchmark: what export and int8 cost and buy, and how ``xdistill serve`` holds up under load.

    xdistill bench export --data-dir ../shared/data [--quick] [--embed-student DIR] [--mt en-es=runs/.../student]

- MARC student (the unsupervised student of ``bench marc``): PyTorch fp32 vs ONNX fp32 vs ONNX int8 (the
  graph fused by onnxruntime's transformer optimizer, then dynamically quantised) vs OpenVINO fp32 and
  int8 (static, NNCF-calibrated on dev text) — test accuracy per
  language, disk MB; then the teacher and the five formats are timed in one interleaved window (batch 1
  latency, batch 32 throughput, 2 threads, the same 32 reviews drawn in turn from en/es/zh). Each export
  passes through ``export_model`` with the benchmark's dev sets as the accuracy gate, exactly as a user's
  export would.
- Embedding student (``bench embed``'s): the same three formats, FLORES-200 retrieval per direction,
  cosine parity and the retrieval gate, timed in one window on FLORES sentences from every language.
- Translation students given with ``--mt PAIR=FOLDER``: PyTorch fp32 vs CTranslate2 int8, chrF on
  FLORES-200 devtest, timed in one window (greedy); each row names the student folder it measured.
- ``serve``: the int8 MARC student behind ``xdistill serve`` on loopback, ``clients`` concurrent
  clients posting one review each for ``seconds``: requests/s, p50/p99 latency, errors.
"""

from __future__ import annotations

import itertools
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
from ..data.embed_data import load_retrieval_sets
from ..data.mt_data import load_test_sets
from ..data.splits import load_test
from ..errors import XdistillError
from ..evaluate.run_eval import machine_info
from ..evaluate.size_speed import disk_mb, measure_speeds
from ..export.exporter import export_model
from ..export.runtime import LoadedModel, load_model
from ..io_utils import atomic_write_json, atomic_write_text
from ..metrics.embedding import bidirectional_retrieval
from ..metrics.translation import translation_scores
from ..models.batches import encode_texts, pad_ids, pad_token_id
from ..models.folder import MODEL_INFO

TARGETS = {"int8_max_loss_points": 0.5, "int8_disk_vs_teacher": 1 / 15, "int8_speedup_vs_fp32": 2.0}


def _marc_config(data_dir: Path, work_dir: Path, quick: bool) -> tuple[Any, Path]:
    raw = base_config(data_dir, work_dir, Path("models/e5-small"), "binary", BUDGETS["quick" if quick else "full"])
    raw["data"]["max_test"] = 1000 if quick else None
    raw["data"]["max_dev"] = 300 if quick else None
    path = work_dir / "marc-eval.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return _config(raw), path


def mixed_sample(texts_by_lang: dict[str, list[str]], n: int = 32) -> list[str]:
    """``n`` inputs taken in turn from every language (en, es, zh, en, ...): every model is timed on
    the same texts, and no language's length or script decides its speed alone."""
    out: list[str] = []
    for i in range(n):
        for texts in texts_by_lang.values():
            if len(out) < n and i < len(texts):
                out.append(texts[i])
    return out


def encoder_runner(model: LoadedModel, texts: list[str]) -> Callable[[int], Any]:
    """``run(bs)`` for ``measure_speeds``: batch 32 is ``texts`` (padded once); batch 1 takes the next
    text each call, in the same order for every model."""
    ids = encode_texts(
        model.tokenizer,
        texts,
        prefix=model.info.get("text_prefix", "") or "",
        max_length=int(model.info.get("max_length", 128)),
    )
    pad = pad_token_id(model.tokenizer)
    full = pad_ids((ids * (32 // len(ids) + 1))[:32], pad)
    singles = [pad_ids([one], pad) for one in ids]
    calls = itertools.count()

    def run(bs: int) -> Any:
        if bs == 1:
            return model.backend(*singles[next(calls) % len(singles)])
        return model.backend(*full)

    return run


def timed_rows(
    rows: dict[str, dict[str, Any]], runners: dict[str, Callable[[int], Any]], repeats: int, inputs: int = 2
) -> None:
    """Time every model of ``runners`` in one interleaved window and write the figures into its row.
    Each warms up on all ``inputs`` batch-1 inputs first (they differ in length), and each timed call
    follows an untimed call of the same model (``settle``: its weights in cache, as when served alone)."""
    speeds = measure_speeds(
        runners, batch_sizes=(1, 32), threads=2, repeats=repeats, warmup={1: inputs, 32: 2}, settle=1
    )
    for name, entry in speeds.items():
        rows[name].update(
            {
                "latency_ms_b1": entry["latency_ms_b1"],
                "throughput_b32": entry["throughput_b32"],
                "iqr_ms_b1": entry["iqr_ms_b1"],
                "iqr_ms_b32": entry["iqr_ms_b32"],
                "repeats": repeats,
            }
        )


def classifier_accuracy(model: LoadedModel, test: dict[str, list]) -> dict[str, float]:
    out = {}
    for lang, examples in test.items():
        pred = model.logits([e.text for e in examples], batch_size=64).argmax(-1)
        out[lang] = 100.0 * float(np.mean(pred == np.array([e.label for e in examples])))
    return out


def encoder_retrieval(model: LoadedModel, sets: dict[str, list], source_lang: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for lang, pairs in sets.items():
        src, tgt = model.embed([p.source for p in pairs]), model.embed([p.target for p in pairs])
        out.update(bidirectional_retrieval(src, tgt, source_lang, lang))
    return out


def base_row(model: LoadedModel, name: str, fmt: str, metric: str, per_language: dict[str, float]) -> dict[str, Any]:
    return {
        "model": name,
        "format": fmt,
        "metric": metric,
        # The mean over languages (classifiers) or directions (encoders); None: speed and size only.
        "value": float(np.mean(list(per_language.values()))) if per_language else None,
        "per_language": per_language,
        "disk_mb": disk_mb(model.folder),
    }


def translator_row(model: LoadedModel, name: str, fmt: str, pairs, target: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(2)
    hyps = model.translate([p.source for p in pairs], beam=1, batch_size=32)
    chrf = translation_scores(hyps, [p.target for p in pairs], target)["chrf"]
    return {
        "model": name,
        "format": fmt,
        "metric": "chrf",
        "value": chrf,
        "per_language": {},
        "disk_mb": disk_mb(model.folder),
    }


def translator_runner(model: LoadedModel, texts: list[str]) -> Callable[[int], Any]:
    calls = itertools.count()

    def run(bs: int) -> Any:
        if bs == 1:
            return model.backend.translate([texts[next(calls) % len(texts)]], beam=1, batch_size=1)
        return model.backend.translate(texts[:bs], beam=1, batch_size=32)

    return run


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


def _timing_repeats(quick: bool) -> int:
    return 5 if quick else 9


def run_benchmark(
    *,
    data_dir: Path,
    out: Path,
    work_dir: Path,
    marc_student: Path,
    marc_teacher: Path,
    mt_students: dict[str, Path],
    embed_student: Path | None = None,
    embed_config: Path = Path("configs/embed-minilm-to-xx.yaml"),
    quick: bool = False,
    clients: int = 32,
    seconds: float = 30.0,
    mt_only: bool = False,
    marc_only: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    if mt_only:
        return _add_mt_rows(out, mt_students, data_dir=data_dir, work_dir=work_dir, quick=quick, echo=echo)
    _require_marc(marc_student, marc_teacher)
    if marc_only:
        return _add_marc_rows(
            out,
            data_dir=data_dir,
            work_dir=work_dir,
            marc_student=marc_student,
            marc_teacher=marc_teacher,
            quick=quick,
            clients=clients,
            seconds=seconds,
            echo=echo,
        )
    if embed_student is not None and not (embed_student / MODEL_INFO).is_file():
        raise XdistillError(
            f"no embedding student in {embed_student}; run `xdistill bench embed` first or pass its folder"
        )
    # Translation pairs this run does not measure keep their rows from the file it replaces (a full
    # run needs no translation student at hand to leave the committed translation rows in place).
    measured = {f"mt-{p}" for p in mt_students}
    kept = [r for r in _earlier_rows(out)["rows"] if r["model"].startswith("mt-") and r["model"] not in measured]
    start = time.perf_counter()
    repeats = _timing_repeats(quick)
    results: dict[str, Any] = {
        "benchmark": "export",
        "quick": quick,
        "machine": machine_info(),
        "protocol": {
            "speed": f"2 threads; per model group (MARC, embeddings, each translation pair) every format is "
            f"timed in one interleaved window (A, B, C, A, ...; order rotated), median of {repeats} calls at "
            "batch 1 and batch 32, on the same inputs drawn in turn from every evaluated language; every "
            "model first warms up on all its batch-1 inputs, and each timed call follows one untimed call of "
            "the same model (its weights in cache, as when it is served alone)",
            "onnx": "TorchScript export, onnxruntime transformer optimizer (attention, LayerNorm, GELU fusion), "
            "int8: dynamic quantisation of the fused graph; each export passes the parity check and the "
            "accuracy gate on dev data",
            "openvino": "the same TorchScript graph converted to OpenVINO IR (OpenVINO fuses it when compiling), "
            "int8: NNCF static post-training quantisation (transformer preset) calibrated on the first 256 dev "
            "texts, no labels; float ops in fp32 (bf16 not allowed); same parity check and accuracy gate",
        },
        "rows": [],
    }
    results["rows"] += _classifier_rows(
        data_dir, work_dir, marc_student, marc_teacher, quick=quick, repeats=repeats, echo=echo
    )
    atomic_write_json(out, results)
    if embed_student is not None:
        results["rows"] += _encoder_rows(data_dir, work_dir, embed_student, embed_config, repeats=repeats, echo=echo)
        atomic_write_json(out, results)
    _measure_mt(results, mt_students, data_dir=data_dir, work_dir=work_dir, quick=quick, out=out, echo=echo)
    results["rows"] += kept
    results["serve"] = _serve_load_test(data_dir, work_dir, quick=quick, clients=clients, seconds=seconds, echo=echo)
    results["targets"] = check_targets(results["rows"])
    results["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(out, results)
    return results


def _require_marc(marc_student: Path, marc_teacher: Path) -> None:
    for path, what in ((marc_student, "MARC student"), (marc_teacher, "MARC teacher")):
        if not (path / "config.json").is_file():
            raise XdistillError(f"no {what} in {path}; run `xdistill bench marc` first or pass its folder")


def _serve_load_test(
    data_dir: Path, work_dir: Path, *, quick: bool, clients: int, seconds: float, echo: Callable[[str], None]
) -> dict[str, Any]:
    echo(f"[export] serve load test: {clients} clients, {seconds:g} s")
    cfg, _ = _marc_config(data_dir, work_dir, quick)
    reviews = [e.text for exs in load_test(cfg).values() for e in exs][:2000]
    return {
        "model": "marc-student openvino-int8",
        **load_test_serve(work_dir / "marc-student-openvino-int8", reviews, clients=clients, seconds=seconds),
    }


def _earlier_rows(out: Path, flag: str | None = None) -> dict[str, Any]:
    """The results file a run adds to, every row naming where it was measured (rows from before rows
    carried it: the machine of the run that wrote them). Missing: an error for a partial re-run
    (``flag``), no rows for a full run."""
    if not out.is_file():
        if flag is None:
            return {"rows": []}
        raise XdistillError(f"{flag} adds to an existing {out}; run `xdistill bench export` without it first")
    results = json.loads(out.read_text(encoding="utf-8"))
    for row in results["rows"]:
        if "measured_on" not in row:
            mt = row["model"].startswith("mt-")
            row["measured_on"] = (results.get("mt_machine") if mt else results.get("marc_machine")) or results[
                "machine"
            ]
    return results


def _add_marc_rows(
    out: Path,
    *,
    data_dir: Path,
    work_dir: Path,
    marc_student: Path,
    marc_teacher: Path,
    quick: bool,
    clients: int,
    seconds: float,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """``--marc-only``: re-measure the MARC rows and the serve load test of an existing results file;
    the embedding and translation rows stay, each naming the machine and commit it was measured on."""
    machine = machine_info()  # before anything is written: the run's own output must not look like a change
    results = _earlier_rows(out, "--marc-only")
    start = time.perf_counter()
    rows = _classifier_rows(
        data_dir, work_dir, marc_student, marc_teacher, quick=quick, repeats=_timing_repeats(quick), echo=echo
    )
    for row in rows:
        row["measured_on"] = machine
    results["rows"] = rows + [r for r in results["rows"] if not r["model"].startswith("marc-")]
    results["serve"] = _serve_load_test(data_dir, work_dir, quick=quick, clients=clients, seconds=seconds, echo=echo)
    results["marc_machine"], results["marc_wall_seconds"] = machine, time.perf_counter() - start
    results["targets"] = check_targets(results["rows"])
    atomic_write_json(out, results)
    return results


# (row format, export format, quantize). OpenVINO int8 is static, calibrated on the gate's dev texts.
EXPORTS = (
    ("onnx-fp32", "onnx", None),
    ("onnx-int8", "onnx", "int8"),
    ("openvino-fp32", "openvino", None),
    ("openvino-int8", "openvino", "int8"),
)
INT8_FORMATS = ("onnx-int8", "openvino-int8")


def _format_rows(
    name: str,
    student_dir: Path,
    work_dir: Path,
    *,
    eval_config: Path | None,
    metric: str,
    score: Callable[[LoadedModel], dict[str, float]],
    texts: list[str],
    repeats: int,
    echo: Callable[[str], None],
    also_timed: dict[str, LoadedModel] | None = None,
    calibration_texts: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``name`` as PyTorch fp32 and every format of EXPORTS: ``score`` per language (or direction), disk,
    each export's parity and gate; then all of them (and ``also_timed``, e.g. the teacher, whose rows
    have speed and size only) timed in one interleaved window on ``texts``. OpenVINO int8 calibrates on
    ``calibration_texts``, or (None) on ``eval_config``'s dev texts."""
    models = {**(also_timed or {}), f"{name} pytorch-fp32": load_model(student_dir)}
    rows = {
        key: base_row(m, key.rsplit(" ", 1)[0], "pytorch-fp32", "speed and size only", {}) for key, m in models.items()
    }
    echo(f"[export] {name}: pytorch-fp32")
    rows[f"{name} pytorch-fp32"] = base_row(
        models[f"{name} pytorch-fp32"], name, "pytorch-fp32", metric, score(models[f"{name} pytorch-fp32"])
    )
    for fmt, export_format, quantize in EXPORTS:
        echo(f"[export] {name}: {fmt}")
        folder = work_dir / f"{name}-{fmt}"
        res = export_model(
            student_dir,
            export_format,
            folder,
            quantize=quantize,
            eval_config=eval_config,
            max_drop=TARGETS["int8_max_loss_points"],
            calibration_texts=calibration_texts,
        )
        models[f"{name} {fmt}"] = exported = load_model(folder)
        rows[f"{name} {fmt}"] = {
            **base_row(exported, name, fmt, metric, score(exported)),
            "export": {"parity": res.parity, "gate": res.gate, "fused_operators": exported.info.get("fused_operators")},
        }
    echo(f"[export] timing {', '.join(models)}: interleaved")
    timed_rows(rows, {key: encoder_runner(m, texts) for key, m in models.items()}, repeats, inputs=len(texts))
    return list(rows.values())


def _classifier_rows(
    data_dir: Path,
    work_dir: Path,
    student_dir: Path,
    teacher_dir: Path,
    *,
    quick: bool,
    repeats: int,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The MARC student's formats (test accuracy per language), timed with its teacher."""
    cfg, eval_config = _marc_config(data_dir, work_dir, quick)
    test = load_test(cfg)
    return _format_rows(
        "marc-student",
        student_dir,
        work_dir,
        eval_config=eval_config,
        metric="accuracy",
        score=lambda model: classifier_accuracy(model, test),
        texts=mixed_sample({lang: [e.text for e in examples] for lang, examples in test.items()}),
        repeats=repeats,
        echo=echo,
        also_timed={"marc-teacher pytorch-fp32": load_model(teacher_dir)},
    )


def _encoder_rows(
    data_dir: Path, work_dir: Path, student_dir: Path, recipe: Path, *, repeats: int, echo: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The embedding student's formats: FLORES retrieval per direction (the gate: retrieval on the
    recipe's eval sets), timed on FLORES sentences of every language."""
    from .embed import bench_config

    cfg = bench_config(
        recipe, data_dir=data_dir, work_dir=work_dir / "embed-eval", e5_path=Path("models/e5-small"), quick=False
    )
    eval_config = work_dir / "embed-eval.yaml"
    atomic_write_text(eval_config, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    sets = load_retrieval_sets(cfg)
    source = cfg.data.source_lang
    by_lang = {source: [p.source for p in next(iter(sets.values()))]}
    by_lang.update({lang: [p.target for p in pairs] for lang, pairs in sets.items()})
    return _format_rows(
        "embed-student",
        student_dir,
        work_dir,
        eval_config=eval_config,
        metric="retrieval",
        score=lambda model: encoder_retrieval(model, sets, source),
        texts=mixed_sample(by_lang),
        repeats=repeats,
        echo=echo,
    )


def _measure_mt(
    results: dict[str, Any],
    mt_students: dict[str, Path],
    *,
    data_dir: Path,
    work_dir: Path,
    quick: bool,
    out: Path,
    echo: Callable[[str], None],
    measured_on: dict[str, Any] | None = None,
) -> None:
    """PyTorch fp32 vs CTranslate2 int8 rows for each translation student, on FLORES-200 devtest,
    timed in one interleaved window (greedy). Each row records ``measured_on`` (machine and commit;
    None: the results file's own, as in a full run): a later ``--mt-only`` run replaces some rows and
    keeps the others."""
    measured_on = measured_on or results["machine"]

    for pair, folder in mt_students.items():
        mt_cfg = load_config(
            Path("configs") / ("mt-en-es-apertium.yaml" if pair == "en-es" else "mt-en-zh-teacher.yaml"),
            [f"data.dir={data_dir}"] + (["mt.max_eval_pairs=200"] if quick else []),
        )
        pairs = load_test_sets(mt_cfg)["flores"]
        target = mt_cfg.data.target_langs[0]
        echo(f"[export] {pair}: pytorch-fp32 and ct2-int8")
        models = {f"mt-{pair} pytorch-fp32": load_model(folder)}
        res = export_model(folder, "ctranslate2", work_dir / f"mt-{pair}-ct2-int8", quantize="int8")
        models[f"mt-{pair} ct2-int8"] = load_model(work_dir / f"mt-{pair}-ct2-int8")
        # Which run the student comes from (e.g. runs/bench-mt/quick/en-zh/student-seqkd/student).
        made_by = {"student_folder": str(folder), "measured_on": measured_on}
        rows = {
            name: {**translator_row(model, f"mt-{pair}", name.rsplit(" ", 1)[1], pairs, target), **made_by}
            for name, model in models.items()
        }
        rows[f"mt-{pair} ct2-int8"]["export"] = {"parity": res.parity}
        texts = [p.source for p in pairs[:32]]
        timed_rows(
            rows,
            {name: translator_runner(model, texts) for name, model in models.items()},
            repeats=3,
            inputs=len(texts),
        )
        results["rows"] += list(rows.values())
        atomic_write_json(out, results)


def _add_mt_rows(
    out: Path, mt_students: dict[str, Path], *, data_dir: Path, work_dir: Path, quick: bool, echo: Callable[[str], None]
) -> dict[str, Any]:
    """``--mt-only``: re-measure the translation rows of an existing results file, keep the rest."""
    if not mt_students:
        raise XdistillError("--mt-only needs at least one --mt PAIR=FOLDER")
    # Before this run writes anything: its own output file must not make the checkout look dirty.
    machine = machine_info()
    results = _earlier_rows(out, "--mt-only")
    results["rows"] = [r for r in results["rows"] if r["model"] not in {f"mt-{p}" for p in mt_students}]
    start = time.perf_counter()
    _measure_mt(
        results,
        mt_students,
        data_dir=data_dir,
        work_dir=work_dir,
        quick=quick,
        out=out,
        echo=echo,
        measured_on=machine,
    )
    results["mt_wall_seconds"] = time.perf_counter() - start
    # The latest --mt-only run; each translation row names its own (kept rows may come from an earlier one).
    results["mt_machine"] = machine
    results["targets"] = check_targets(results["rows"])
    atomic_write_json(out, results)
    return results


def _int8_targets(prefix: str, fp32: dict[str, Any], int8: dict[str, Any], unit: str) -> dict[str, Any]:
    """int8 against PyTorch fp32 of the same model: the worst language's loss and the speed-ups at
    batch 32 (throughput) and batch 1 (latency), from one interleaved window."""
    losses = {k: fp32["per_language"][k] - v for k, v in int8["per_language"].items() if k in fp32["per_language"]}
    worst = max(losses.values()) if losses else fp32["value"] - int8["value"]
    b32 = int8["throughput_b32"] / fp32["throughput_b32"]
    b1 = fp32["latency_ms_b1"] / int8["latency_ms_b1"]
    limit, speed = TARGETS["int8_max_loss_points"], TARGETS["int8_speedup_vs_fp32"]
    return {
        f"{prefix}_int8_loss_worst_language": {
            "value": worst,
            "per_language": losses,
            "target": f"<= {limit} {unit} points in every language",
            "met": worst <= limit,
        },
        f"{prefix}_int8_speedup_b32": {"value": b32, "target": f">= {speed:g}x throughput", "met": b32 >= speed},
        f"{prefix}_int8_speedup_b1": {"value": b1, "target": f">= {speed:g}x lower latency", "met": b1 >= speed},
    }


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every int8 format against PyTorch fp32 of the same model (keys ``marc_onnx_int8_*``,
    ``embed_openvino_int8_*``, ...), the int8 files against the teacher's, the fp32 student's speed."""
    by = {(r["model"], r["format"]): r for r in rows}
    fp32, teacher = by.get(("marc-student", "pytorch-fp32")), by.get(("marc-teacher", "pytorch-fp32"))
    out: dict[str, Any] = {}
    for fmt in INT8_FORMATS:
        runtime = fmt.split("-")[0]
        for model, prefix, unit in (("marc-student", "marc", "accuracy"), ("embed-student", "embed", "retrieval")):
            ref, int8 = by.get((model, "pytorch-fp32")), by.get((model, fmt))
            if ref and int8:
                out.update(_int8_targets(f"{prefix}_{runtime}", ref, int8, unit))
        int8 = by.get(("marc-student", fmt))
        if int8 and teacher:
            ratio = int8["disk_mb"] / teacher["disk_mb"]
            out[f"{runtime}_int8_disk_vs_teacher"] = {
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


def _provenance(results: dict[str, Any]) -> str:
    """Where and how long rows were re-measured by a partial run (`--mt-only`, `--marc-only`), and the
    commit every group of rows was measured at."""
    text = ""
    for key, flag, what in (
        ("marc_machine", "--marc-only", "MARC (marc-*)"),
        ("mt_machine", "--mt-only", "translation (mt-*)"),
    ):
        machine = results.get(key)
        if machine:
            minutes = results.get(key.replace("machine", "wall_seconds"), 0) / 60
            text += (
                f" The {what} rows were re-measured with `{flag}` on {machine['cpu']} "
                f"(the last such run took {minutes:.1f} min)."
            )
    where = {}
    for row in results["rows"]:
        on = row.get("measured_on")
        if on and (results.get("marc_machine") or row["model"].startswith("mt-")):
            where.setdefault(row["model"], f"commit {str(on.get('commit'))[:7]}{' (dirty)' if on.get('dirty') else ''}")
    if where:
        text += " Measured at: " + "; ".join(f"{model} {at}" for model, at in where.items()) + "."
    return text


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        f"### Export{' (quick)' if results.get('quick') else ''}",
        "",
        f"Machine: {results['machine']['cpu']}; commit {results['machine'].get('commit')}"
        f"{' (uncommitted changes)' if results['machine'].get('dirty') else ''}; "
        f"wall time {results.get('wall_seconds', 0) / 60:.1f} min." + _provenance(results),
        "",
        "| model | format | metric | mean | per language / direction | disk MB | ms b1 | b32 /s |",
        "| --- | --- | --- | --: | --- | --: | --: | --: |",
    ]
    for r in results["rows"]:
        value = "–" if r.get("value") is None else f"{r['value']:.2f}"
        per = " / ".join(f"{k} {v:.1f}" for k, v in (r.get("per_language") or {}).items()) or "–"
        lat = "–" if r.get("latency_ms_b1") is None else f"{r['latency_ms_b1']:.1f}"
        thr = "–" if r.get("throughput_b32") is None else f"{r['throughput_b32']:.0f}"
        lines.append(
            f"| {r['model']} | {r['format']} | {r['metric']} | {value} | {per} | {r['disk_mb']:.1f} | {lat} | {thr} |"
        )
    if results.get("protocol"):
        protocol = results["protocol"]
        lines += ["", f"Speed: {protocol['speed']}. ONNX: {protocol['onnx']}."]
        if protocol.get("openvino"):
            lines[-1] += f" OpenVINO: {protocol['openvino']}."
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
