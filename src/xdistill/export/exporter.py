"""Export a trained model for serving: ONNX (classifiers, sentence encoders) or CTranslate2
(translation), optionally int8, each checked against the PyTorch model before it is kept.

Two checks, both run on the exported folder through the same loader ``predict`` and ``serve`` use:

- **parity** on sample inputs: max |Δ logits| (classifier), min cosine (encoder), share of identical
  greedy translations (translator). An fp32 export that misses its tolerance is broken and fails;
  an int8 export is expected to differ, so its parity is reported and the accuracy gate judges it.
- **accuracy gate** (``--eval-config``): the metric on the config's dev data — accuracy for a
  classifier (mean over the dev languages), retrieval accuracy for an encoder, chrF for a
  translator. Losing more than ``max_drop`` points fails the export and says by how much. Int8
  can wreck multilingual MiniLM-like models, which is why the gate exists.

The export is written to a temporary folder and renamed at the end: a failed check or a kill
leaves any earlier export at ``out`` as it was.

``out`` is never emptied of files xdistill did not write. An earlier export there (its
``xdistill_model.json`` lists the files it wrote) is replaced. A folder holding anything else is
refused unless ``overwrite``; then the export is written next to those files, and it stops
before replacing one of them that has a name the export needs (``config.json``, ``README.md``,
...). ``out`` may be relative, ``.`` included; the current folder, or one holding it, is written
into in place (file by file, ``xdistill_model.json`` last) rather than replaced.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import load_config
from ..data.embed_data import load_retrieval_sets
from ..data.mt_data import load_mt_data
from ..data.splits import load_dev, text_pairs
from ..errors import ModelError, XdistillError
from ..io_utils import atomic_dir
from ..metrics.embedding import retrieval_accuracy
from ..metrics.translation import translation_scores
from ..model_card import write_model_card
from ..models.batches import encode_texts, pad_ids, pad_token_id
from ..models.folder import MODEL_INFO, read_model_info, write_model_info
from .runtime import OPENVINO_FILE, LoadedModel, detect_kind, load_model

log = logging.getLogger(__name__)

FORMATS = {
    "onnx": ("classifier", "sentence-encoder"),
    "openvino": ("classifier", "sentence-encoder"),
    "ctranslate2": ("translation",),
}
# fp32 tolerances: what float reordering between runtimes explains; beyond them the export is wrong.
FP32_MAX_ABS_LOGIT_DIFF = 1e-3
FP32_MIN_COSINE = 0.9999
FP32_MIN_IDENTICAL = 0.95
SAMPLE_TEXTS = [
    "This product is great, I use it every day.",
    "Terrible quality, it broke after two days.",
    "Es un buen producto, lo recomiendo.",
    "La calidad es mala y llegó tarde.",
    "质量很好，非常满意。",
    "太差了，不推荐购买。",
    "The cat sleeps on the sofa.",
    "It is okay.",
]


class ExportCheckFailed(XdistillError):
    """An export failed its parity check or accuracy gate; nothing was written."""


@dataclass
class ExportResult:
    folder: str
    kind: str
    format: str
    quantize: str | None
    parity: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    disk_mb: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_model(
    model_dir: str | Path,
    fmt: str,
    out: str | Path,
    *,
    quantize: str | None = None,
    eval_config: str | Path | None = None,
    max_drop: float = 0.5,
    sample_texts: Sequence[str] | None = None,
    calibration_texts: Sequence[str] | None = None,
    threads: int = 2,
    overwrite: bool = False,
) -> ExportResult:
    start = time.perf_counter()
    model_dir, out = Path(model_dir), Path(os.path.abspath(Path(out).expanduser()))
    kind, src_format, info = detect_kind(model_dir)
    if src_format != "pytorch":
        raise ModelError(f"{model_dir} is already a {src_format} export; export from the PyTorch folder")
    if fmt not in FORMATS:
        raise ModelError(
            f"unknown export format {fmt!r}; choose onnx or openvino (classifiers, encoders) or "
            "ctranslate2 (translation)"
        )
    if kind not in FORMATS[fmt]:
        other = "ctranslate2" if kind == "translation" else "onnx or openvino"
        raise ModelError(
            f"{model_dir} is a {kind} model; --format {fmt} is for {', '.join(FORMATS[fmt])} "
            f"models: use --format {other}"
        )
    if quantize not in (None, "int8"):
        raise ModelError(f"--quantize {quantize!r} is not supported; use int8 or leave it out")
    if fmt == "openvino" and quantize == "int8" and eval_config is None and not calibration_texts:
        raise ModelError(
            "--format openvino --quantize int8 calibrates the int8 ranges on dev text: pass --eval-config "
            "CONFIG (the first 256 texts of its dev set are used, never its test set)"
        )
    if out.resolve() == model_dir.resolve():
        raise ModelError("--out must differ from the model folder (the export would replace the original)")
    if fmt == "ctranslate2":
        _check_ct2_exportable(model_dir)
    owned, foreign = _out_files(out)
    if foreign and not overwrite:
        listed = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ModelError(
            f"--out {out} already holds files xdistill did not write ({listed}); export into a new or "
            "empty folder, or pass --overwrite to write the export next to them (files xdistill did "
            "not write are never deleted or replaced)"
        )
    reference = load_model(model_dir, threads=threads)
    # The dev data is read once: it gives the parity samples and the gate's measurements.
    dev = dev_data(eval_config, kind) if eval_config is not None else None
    samples = list(sample_texts or (dev["texts"][:64] if dev else None) or SAMPLE_TEXTS)
    in_place = out.exists() and (bool(foreign) or _holds_cwd(out))
    with _staging(out, in_place, owned, foreign) as tmp:
        fused: dict[str, int] = {}
        if fmt == "onnx":
            fused = _export_onnx(reference, tmp, quantize)
        elif fmt == "openvino":
            _export_openvino(reference, tmp, quantize, calibration_texts or (dev["texts"] if dev else None))
        else:
            _export_ct2(model_dir, reference, tmp, quantize)
        reference.tokenizer.save_pretrained(tmp)
        # "files": what this export wrote, so a later export into the folder knows what it may replace.
        files = sorted({*_files_under(tmp), MODEL_INFO, "README.md"})
        exported_info = {
            **info,
            "format": fmt,
            "quantize": quantize,
            "exported_from": str(model_dir),
            **({"onnx_file": "model.onnx", "fused_operators": fused} if fmt == "onnx" else {}),
            **({"openvino_file": OPENVINO_FILE} if fmt == "openvino" else {}),
            "files": files,
        }
        exported_info = write_model_info(tmp, exported_info)
        exported = load_model(tmp, threads=threads)
        parity = check_parity(reference, exported, samples)
        tolerance_ok = parity.pop("ok")
        if quantize is None and not tolerance_ok:
            raise ExportCheckFailed(
                f"{fmt} export of {model_dir} does not match the PyTorch model: {parity}; "
                "this is a bug in the export, please report it"
            )
        gate = None
        if eval_config is not None:
            gate = accuracy_gate(reference, exported, dev, max_drop)
            if not gate["passed"]:
                raise ExportCheckFailed(
                    f"{fmt}{'-' + quantize if quantize else ''} export loses {gate['drop']:.2f} {gate['metric']} points on "
                    f"the dev data of {eval_config} ({gate['reference']:.2f} -> {gate['exported']:.2f}), more than "
                    f"the allowed {max_drop:g}; keep fp32, or raise --max-drop if that loss is acceptable"
                )

        write_model_card(
            tmp, exported_info, export={"format": fmt, "quantize": quantize, "parity": parity, "gate": gate}
        )
    size = sum((out / name).stat().st_size for name in files if (out / name).is_file()) / 1e6
    return ExportResult(
        folder=str(out),
        kind=kind,
        format=fmt,
        quantize=quantize,
        parity=parity,
        gate=gate,
        disk_mb=size,
        seconds=time.perf_counter() - start,
    )


# -- the --out folder -----------------------------------------------------------------------------

_STAGING_PREFIX = ".xdistill-export-"


def _files_under(folder: Path) -> set[str]:
    """Relative paths of the files under ``folder`` (an in-place export's staging folder left out)."""
    found = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if rel.parts[0].startswith(_STAGING_PREFIX) or path.is_dir():
            continue
        found.add(rel.as_posix())
    return found


def _out_files(out: Path) -> tuple[set[str], set[str]]:
    """``(owned, foreign)``: the files at ``out`` an earlier export wrote, and all the others."""
    if not out.exists():
        return set(), set()
    if not out.is_dir():
        raise ModelError(f"--out {out} is a file; give a folder to write the export to")
    present = _files_under(out)
    try:
        info = read_model_info(out, optional=True)
    except ModelError:
        info = {}  # an unreadable info file: nothing there is known to be xdistill's
    if info.get("format") not in FORMATS:
        return set(), present
    listed = info.get("files")
    # An export written before the list was kept: the folder was created whole by xdistill.
    owned = present & set(listed) if isinstance(listed, list) else present
    return owned, present - owned


def _holds_cwd(out: Path) -> bool:
    cwd, target = Path.cwd().resolve(), out.resolve()
    return cwd == target or target in cwd.parents


@contextmanager
def _staging(out: Path, in_place: bool, owned: set[str], foreign: set[str]) -> Iterator[Path]:
    """A folder to write the export into; on success it becomes ``out``.

    Not ``in_place``: ``atomic_dir`` (a sibling renamed over ``out``, which holds nothing or only
    an earlier export). ``in_place``: a hidden folder inside ``out`` whose files are then moved
    into ``out``, ``xdistill_model.json`` last (a kill in between leaves weights that do not match
    the recorded checksums, which loading reports); files the earlier export wrote and this one
    does not are removed, nothing else is.
    """
    if not in_place:
        with atomic_dir(out) as tmp:
            yield tmp
        return
    for stale in out.glob(_STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        yield tmp
        new = _files_under(tmp)
        clash = sorted(new & foreign)
        if clash:
            raise ModelError(
                f"--out {out}: {clash[0]} is there already and xdistill did not write it; the export "
                "would replace it. Move it away, or export into a new or empty folder"
            )
        for rel in sorted(new, key=lambda r: r == MODEL_INFO):
            dest = out / rel
            if dest.is_dir() and not dest.is_symlink():
                raise ModelError(f"--out {out}: {rel} is a folder there; the export needs that name for a file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
        for rel in owned - new:
            (out / rel).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- ONNX -----------------------------------------------------------------------------------------


class _OutputOnly(torch.nn.Module):
    """The model's one serving output (logits or the sentence embedding) as a plain tensor."""

    def __init__(self, model: torch.nn.Module, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)[self.output]


def _eager_attention(encoder) -> None:
    # SDPA attention exports with extra Where/IsNaN masking ops that made the ONNX graph ~30%
    # slower than PyTorch at batch 32 here; the eager formulation exports to plain MatMul/Softmax
    # (same outputs within 1e-6) and runs as fast as PyTorch.
    if hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation("eager")
    else:
        encoder.config._attn_implementation = "eager"


def _trace_onnx(reference: LoadedModel, path: Path) -> None:
    """The model's serving output as a plain ONNX graph (MatMul, Softmax, ...; nothing fused)."""
    output = _serving_output(reference)
    _eager_attention(reference.backend.encoder)
    module = _OutputOnly(reference.backend, output).eval()
    enc = reference.tokenizer(
        ["a short example", "a second, somewhat longer example text"], padding=True, return_tensors="pt"
    )
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python-side branches in HF code (mask padding, SDPA's is_causal);
        # they take the same branch for every input here, and the parity check would catch it if not.
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the torch.export-based one needs onnxscript and fixed-rank
        # dynamic shapes for these HF models; this one handles them and onnxruntime runs the result.
        torch.onnx.export(
            module,
            (enc["input_ids"], enc["attention_mask"]),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=[output],
            opset_version=17,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                output: {0: "batch"},
            },
        )


def _serving_output(reference: LoadedModel) -> str:
    return "logits" if reference.kind == "classifier" else "embedding"


def _export_onnx(reference: LoadedModel, folder: Path, quantize: str | None) -> dict[str, int]:
    path = folder / "model.onnx"
    _trace_onnx(reference, path)
    fused = _optimize_onnx(path, reference.backend.encoder.config)
    if quantize == "int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = folder / "model.fp32.onnx"
        path.rename(fp32)
        # Dynamic quantization: int8 weights, activations quantized on the fly (no calibration data).
        # quantize_dynamic logs generic "pre-process first" advice at WARNING.
        with _quiet_logging():
            # The fused operators (com.microsoft Attention, SkipLayerNormalization) have no ONNX
            # shape inference, so the tensors between them are declared float32 here.
            quantize_dynamic(
                str(fp32),
                str(path),
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        fp32.unlink()
    return fused


# OpenVINO int8 is static: activation ranges come from these many dev texts (no labels used), in
# batches of 32 as served. NNCF's transformer preset keeps the ops int8 hurts most (Softmax,
# LayerNorm, the attention's scale) in float and smooths activation outliers.
CALIBRATION_TEXTS = 256


def _export_openvino(
    reference: LoadedModel, folder: Path, quantize: str | None, calibration: Sequence[str] | None
) -> None:
    """OpenVINO IR (``openvino_model.xml`` + ``.bin``, the names optimum-intel loads) from the plain
    ONNX graph; OpenVINO fuses attention, LayerNorm and GELU itself. int8: NNCF post-training
    quantization calibrated on ``calibration`` (dev texts)."""
    try:
        import nncf  # imported for fp32 too: a missing half of the extra fails before any work
        import openvino as ov
    except ImportError:
        raise ModelError(
            "--format openvino needs OpenVINO and NNCF: pip install 'xdistill[openvino]' (make install has them)"
        ) from None

    onnx_path = folder / "plain.onnx"
    _trace_onnx(reference, onnx_path)
    model = ov.convert_model(str(onnx_path))
    onnx_path.unlink()
    if quantize == "int8":
        nncf.set_log_level(logging.ERROR)  # its progress bars and INFO lines would bury the CLI's output
        batches = _calibration_batches(reference, list(calibration or []))
        with _quiet_logging():
            model = nncf.quantize(
                model,
                nncf.Dataset(batches),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(batches),
            )
    # fp32 weights stay fp32 on disk (OpenVINO's default halves them to fp16).
    ov.save_model(model, str(folder / OPENVINO_FILE), compress_to_fp16=False)


def _calibration_batches(reference: LoadedModel, texts: list[str]) -> list[dict[str, np.ndarray]]:
    ids = encode_texts(
        reference.tokenizer,
        texts[:CALIBRATION_TEXTS],
        prefix=reference.info.get("text_prefix", "") or "",
        max_length=int(reference.info.get("max_length", 128)),
    )
    pad = pad_token_id(reference.tokenizer)
    batches = []
    for start in range(0, len(ids), 32):
        input_ids, mask = pad_ids(ids[start : start + 32], pad)
        batches.append({"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()})
    return batches


def _optimize_onnx(path: Path, config) -> dict[str, int]:
    """Fuse the exported graph with onnxruntime's transformer optimizer, in place: attention,
    LayerNorm (+ residual add), GELU and bias ops become single kernels (a plain MatMul/Softmax
    graph leaves onnxruntime nothing to fuse, and int8 then gains little). Returns the count of
    each fused operator; an architecture the optimizer does not know is left as exported."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_logging(), contextlib.redirect_stdout(io.StringIO()):  # it logs and prints every pass
        optimized = optimize_model(
            str(path),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,  # the optimizer's own fusions only: the graph stays portable across machines
        )
        stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(path))
    return stats


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """No log records at WARNING or below from any logger while onnxruntime's tools run."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


# -- CTranslate2 ----------------------------------------------------------------------------------


def _check_ct2_exportable(model_dir: Path) -> None:
    if (model_dir / "target_vocab.json").is_file():
        # The converter writes one shared vocabulary (the source side's): the decoder's ids would be misread.
        raise ModelError(
            f"{model_dir} has one vocabulary per side (mt.separate_vocabs); CTranslate2's converter "
            "writes a single shared vocabulary, so this model cannot be exported to ctranslate2. "
            "Serve the PyTorch folder, or train with mt.separate_vocabs: false to export"
        )


def _export_ct2(model_dir: Path, reference: LoadedModel, folder: Path, quantize: str | None) -> None:
    import ctranslate2

    _check_ct2_exportable(model_dir)

    converter = ctranslate2.converters.TransformersConverter(str(model_dir))
    converter.convert(str(folder), quantization=quantize or "float32", force=True)


# -- checks ---------------------------------------------------------------------------------------


def check_parity(reference: LoadedModel, exported: LoadedModel, texts: Sequence[str]) -> dict[str, Any]:
    if reference.kind == "classifier":
        a, b = reference.logits(texts), exported.logits(texts)
        diff = float(np.abs(a - b).max())
        same = float((a.argmax(-1) == b.argmax(-1)).mean())
        return {
            "max_abs_logit_diff": diff,
            "same_label_rate": same,
            "samples": len(texts),
            "ok": diff <= FP32_MAX_ABS_LOGIT_DIFF,
        }
    if reference.kind == "sentence-encoder":
        a, b = reference.embed(texts), exported.embed(texts)
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
        return {
            "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()),
            "samples": len(texts),
            "ok": float(cos.min()) >= FP32_MIN_COSINE,
        }
    a = reference.translate(texts, beam=1)
    b = exported.translate(texts, beam=1)
    rate = float(np.mean([x == y for x, y in zip(a, b)])) if texts else 1.0
    return {"identical_greedy_rate": rate, "samples": len(texts), "ok": rate >= FP32_MIN_IDENTICAL}


def dev_data(eval_config: str | Path, kind: str) -> dict[str, Any]:
    """The dev examples of a run config, in the shape the gate needs for ``kind``."""

    cfg = load_config(eval_config)
    if kind == "classifier":
        dev = load_dev(cfg)
        if not dev:
            raise XdistillError(f"{eval_config}: data.dev is empty; the accuracy gate needs dev files")
        return {
            "by_lang": {lang: (ex, text_pairs(ex)) for lang, ex in dev.items()},
            "texts": [e.text for ex in dev.values() for e in ex],
        }
    if kind == "sentence-encoder":
        sets = load_retrieval_sets(cfg)
        if not sets:
            raise XdistillError(
                f"{eval_config}: embed.eval_retrieval is empty; the accuracy gate needs a retrieval set"
            )
        return {"sets": sets, "texts": [p.source for pairs in sets.values() for p in pairs]}

    data = load_mt_data(cfg)
    if not data.dev:
        raise XdistillError(f"{eval_config}: no dev pairs (mt.dev_pairs is 0); the accuracy gate needs some")
    return {"pairs": data.dev, "target": cfg.data.target_langs[0], "texts": [p.source for p in data.dev]}


def model_metric(model: LoadedModel, data: dict[str, Any]) -> tuple[str, float]:
    if model.kind == "classifier":
        accs = []
        for examples, pairs in data["by_lang"].values():
            pred = model.logits([e.text for e in examples], pairs).argmax(-1)
            accs.append(100.0 * float(np.mean(pred == np.array([e.label for e in examples]))))
        return "accuracy", float(np.mean(accs))
    if model.kind == "sentence-encoder":
        scores = []
        for pairs in data["sets"].values():
            src, tgt = model.embed([p.source for p in pairs]), model.embed([p.target for p in pairs])
            scores.append(retrieval_accuracy(src, tgt))
        return "retrieval accuracy", float(np.mean(scores))

    pairs = data["pairs"]
    hyps = model.translate([p.source for p in pairs], beam=1)
    return "chrF", translation_scores(hyps, [p.target for p in pairs], data["target"])["chrf"]


def accuracy_gate(
    reference: LoadedModel, exported: LoadedModel, data: dict[str, Any], max_drop: float
) -> dict[str, Any]:
    metric, ref_score = model_metric(reference, data)
    _, exp_score = model_metric(exported, data)
    drop = ref_score - exp_score
    return {
        "metric": metric,
        "reference": ref_score,
        "exported": exp_score,
        "drop": drop,
        "max_drop": max_drop,
        "passed": drop <= max_drop,
    }
