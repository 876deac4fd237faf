"""Load any model folder xdistill writes, in any format, behind one small interface.

Kinds: ``classifier`` (texts -> label scores), ``sentence-encoder`` (texts -> vectors),
``translation`` (texts -> texts). Formats: ``pytorch`` (the training output), ``onnx`` (run with
onnxruntime), ``openvino`` (OpenVINO IR, run with OpenVINO) and ``ctranslate2`` (translation). ``predict``, ``serve``, the export parity checks and
the accuracy gates all go through ``load_model``, so an exported model is judged by exactly the
code that will serve it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import Decoding
from ..errors import ModelError
from ..models.batches import encode_texts, pad_token_id, predict
from ..models.classifier import is_hf_sequence_classifier, load_classifier
from ..models.folder import MODEL_INFO, read_model_info, verify_weights
from ..models.sentence import load_sentence_encoder
from ..models.translators import Seq2SeqTranslator, saved_decoding

__all__ = ["MODEL_INFO", "KINDS", "LoadedModel", "detect_kind", "load_model"]

KINDS = ("classifier", "sentence-encoder", "translation")


def detect_kind(folder: str | Path) -> tuple[str, str, dict[str, Any]]:
    """``(kind, format, info)`` of a model folder, or a ModelError saying what the folder lacks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    info = read_model_info(folder, optional=True)
    fmt = info.get("format", "pytorch")
    kind = info.get("kind") or ("translation" if info.get("task") == "translation" else None)
    if kind is None and (folder / "modules.json").is_file():
        kind = "sentence-encoder"  # any sentence-transformers folder
    if kind is None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("is_encoder_decoder"):
            kind = "translation"  # any HF seq2seq folder (Marian, ...)
        elif is_hf_sequence_classifier(folder):
            kind = "classifier"  # a fine-tuned HF ...ForSequenceClassification folder, its own labels
            id2label = config.get("id2label") or {}
            info = {
                **info,
                "kind": kind,
                "max_length": min(512, int(config.get("max_position_embeddings") or 512)),
                "labels": [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(len(id2label))],
            }
    if kind not in KINDS:
        raise ModelError(
            f"{folder} is not a model xdistill can run: expected an xdistill classifier, sentence "
            "encoder or translation folder (with xdistill_model.json), a sentence-transformers "
            "folder, a Hugging Face sequence-classification folder, or a Hugging Face seq2seq folder"
        )
    return kind, fmt, info


@dataclass
class LoadedModel:
    kind: str
    format: str
    folder: Path
    info: dict[str, Any]
    tokenizer: Any
    backend: Any  # the torch module, the onnxruntime session adapter, or the translator
    labels: list[str] = field(default_factory=list)

    # -- classifiers -----------------------------------------------------------------------------

    def logits(
        self, texts: Sequence[str], pairs: Sequence[str | None] | None = None, *, batch_size: int = 32
    ) -> np.ndarray:
        self._need("classifier", "classify")
        return self._run(texts, pairs, "logits", batch_size)

    def classify(
        self, texts: Sequence[str], pairs: Sequence[str | None] | None = None, *, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        logits = self.logits(texts, pairs, batch_size=batch_size)
        probs = torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
        return [
            {
                "label": self.labels[int(p.argmax())],
                "scores": {name: round(float(v), 6) for name, v in zip(self.labels, p)},
            }
            for p in probs
        ]

    # -- sentence encoders -----------------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        self._need("sentence-encoder", "embed")
        return self._run(texts, None, "embedding", batch_size)

    # -- translators -----------------------------------------------------------------------------

    def translate(
        self, texts: Sequence[str], *, beam: int = 4, batch_size: int = 32, progress: bool = False
    ) -> list[str]:
        self._need("translation", "translate")
        return self.backend.translate(list(texts), beam=beam, batch_size=batch_size, progress=progress)

    # -- shared ----------------------------------------------------------------------------------

    def _need(self, kind: str, action: str) -> None:
        if self.kind != kind:
            raise ModelError(f"{self.folder} is a {self.kind} model; it cannot {action} (that needs a {kind})")

    def _run(self, texts: Sequence[str], pairs, output: str, batch_size: int) -> np.ndarray:
        ids = encode_texts(
            self.tokenizer,
            list(texts),
            list(pairs) if pairs is not None else None,
            prefix=self.info.get("text_prefix", "") or "",
            max_length=int(self.info.get("max_length", 128)),
        )
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        return predict(self.backend, ids, pad_token_id(self.tokenizer), batch_size=batch_size, outputs=(output,))[
            output
        ]


class OnnxModule:
    """An onnxruntime session that looks like the torch modules ``predict`` drives."""

    training = False

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's threads spin after each call by default, holding the cores: whatever runs next
        # (a PyTorch model, the server's tokenizer) then runs slower, and timings of the two interleaved
        # would be skewed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def eval(self) -> OnnxModule:
        return self

    def train(self, mode: bool = True) -> OnnxModule:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        values = self.session.run(
            None,
            {
                "input_ids": input_ids.numpy().astype(np.int64),
                "attention_mask": attention_mask.numpy().astype(np.int64),
            },
        )
        return {name: torch.from_numpy(v) for name, v in zip(self.outputs, values)}


OPENVINO_FILE = "openvino_model.xml"  # + openvino_model.bin: the names optimum-intel's loaders expect


class OpenVinoModule:
    """An OpenVINO compiled model that looks like the torch modules ``predict`` drives."""

    training = False

    def __init__(self, path: Path, threads: int = 2):
        import openvino as ov

        self.compiled = ov.Core().compile_model(
            str(path),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                # Ops left in float run in fp32: OpenVINO would pick bf16 on CPUs with AMX, and results
                # would then depend on the machine.
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        # An infer request holds its own buffers: one per thread keeps concurrent callers apart.
        self._local = threading.local()

    def eval(self) -> OpenVinoModule:
        return self

    def train(self, mode: bool = True) -> OpenVinoModule:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(
            {
                "input_ids": input_ids.numpy().astype(np.int64),
                "attention_mask": attention_mask.numpy().astype(np.int64),
            },
            share_inputs=True,  # fresh arrays each call: no need for OpenVINO to copy them (~0.1 ms at batch 1)
        )
        # The request reuses its output buffers on the next call: copy out.
        return {name: torch.from_numpy(np.array(result[i], copy=True)) for i, name in enumerate(self.outputs)}


class CT2Translator:
    """A CTranslate2 translation model with the folder's Hugging Face tokenizer around it."""

    def __init__(
        self, folder: Path, tokenizer, *, max_length: int = 256, threads: int = 2, decoding: Decoding | None = None
    ):
        import ctranslate2

        self.translator = ctranslate2.Translator(str(folder), device="cpu", inter_threads=1, intra_threads=threads)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.decoding = decoding or Decoding()
        self.name = folder.name

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(seq) for seq in ids]

    def generate_tokens(self, texts: Sequence[str], beam: int = 1) -> list[list[str]]:
        # HF's max_length counts the decoder start token and forces </s> in the last slot, so a
        # sentence that hits the limit gets max_length - 2 real tokens there; match it.
        tokens = self.tokens(texts)
        bound = self.decoding.max_new_tokens([len(t) for t in tokens], max(1, self.max_length - 2))
        results = self.translator.translate_batch(
            tokens,
            beam_size=beam,
            max_decoding_length=bound,
            no_repeat_ngram_size=self.decoding.no_repeat_ngram_size,
            repetition_penalty=self.decoding.repetition_penalty,
        )
        return [r.hypotheses[0] for r in results]

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam: int = 1,
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "translate",
    ) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), batch_size):
            for hyp in self.generate_tokens(texts[start : start + batch_size], beam):
                ids = self.tokenizer.convert_tokens_to_ids(hyp)
                out.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return out


def load_model(folder: str | Path, *, threads: int = 2) -> LoadedModel:
    """Load ``folder`` (any kind, any format) for inference."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    kind, fmt, info = detect_kind(folder)
    if fmt == "onnx":
        onnx_file = folder / info.get("onnx_file", "model.onnx")
        if not onnx_file.is_file():
            raise ModelError(f"{folder} says it is an ONNX export but has no {onnx_file.name}; export it again")
        verify_weights(folder, info)
        try:
            session = OnnxModule(onnx_file, threads)
        except Exception as exc:  # onnxruntime raises its own types for a damaged graph
            raise _unreadable(folder, onnx_file.name, exc, fmt, info) from None
        return LoadedModel(
            kind, fmt, folder, info, AutoTokenizer.from_pretrained(folder), session, labels=list(info.get("labels", []))
        )
    if fmt == "openvino":
        ir_file = folder / info.get("openvino_file", OPENVINO_FILE)
        if not ir_file.is_file():
            raise ModelError(f"{folder} says it is an OpenVINO export but has no {ir_file.name}; export it again")
        verify_weights(folder, info)
        try:
            compiled = OpenVinoModule(ir_file, threads)
        except ImportError:
            raise ModelError(
                f"{folder} is an OpenVINO export; install OpenVINO to run it: pip install 'xdistill[openvino]'"
            ) from None
        except Exception as exc:  # OpenVINO raises RuntimeError for a damaged IR
            raise _unreadable(folder, ir_file.name, exc, fmt, info) from None
        return LoadedModel(
            kind,
            fmt,
            folder,
            info,
            AutoTokenizer.from_pretrained(folder),
            compiled,
            labels=list(info.get("labels", [])),
        )
    if fmt == "ctranslate2":
        verify_weights(folder, info)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        try:
            backend = CT2Translator(
                folder,
                tokenizer,
                max_length=int(info.get("max_length", 256)),
                threads=threads,
                decoding=saved_decoding(folder, info),
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise _unreadable(folder, "model.bin", exc, fmt, info) from None
        return LoadedModel(kind, fmt, folder, info, tokenizer, backend)
    if kind == "classifier":
        model, tokenizer = load_classifier(folder)  # an HF checkpoint keeps its own labels and their order
        merged = {**info, "max_length": model.max_length}  # a text prefix is part of the tokenizer
        return LoadedModel(kind, fmt, folder, merged, tokenizer, model.eval(), labels=model.labels)
    if kind == "sentence-encoder":
        model, tokenizer = load_sentence_encoder(folder)
        merged = {**info, "text_prefix": model.text_prefix, "max_length": model.max_length}
        return LoadedModel(kind, fmt, folder, merged, tokenizer, model.eval())
    translator = Seq2SeqTranslator(
        folder, max_length=int(info.get("max_length", 256)), decoding=saved_decoding(folder, info)
    )
    return LoadedModel(kind, fmt, folder, info, translator.tokenizer, translator)


def _unreadable(folder: Path, name: str, exc: Exception, fmt: str, info: dict[str, Any]) -> ModelError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    src = info.get("exported_from") or "MODEL_DIR"
    return ModelError(
        f"{folder}: {name} cannot be loaded ({reason}); export it again "
        f"(`xdistill export {src} --format {fmt} --out {folder}`)"
    )
