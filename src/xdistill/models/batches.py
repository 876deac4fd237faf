"""Tokenising, padding and batched prediction, shared by training, caching and evaluation."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

TOKENIZE_CHUNK = 1000


def encode_texts(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str | None] | None = None,
    *,
    prefix: str = "",
    max_length: int = 128,
) -> list[list[int]]:
    """Token ids (with special tokens, truncated, unpadded) for each text or text pair."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = [prefix + t for t in texts[start : start + TOKENIZE_CHUNK]]
        pair_chunk = None
        if pairs is not None and any(p is not None for p in pairs[start : start + TOKENIZE_CHUNK]):
            pair_chunk = [p or "" for p in pairs[start : start + TOKENIZE_CHUNK]]
        enc = tokenizer(chunk, pair_chunk, truncation=True, max_length=max_length, add_special_tokens=True)
        ids.extend(enc["input_ids"])
    return ids


def pad_ids(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; returns (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return input_ids, mask


def model_device(model) -> torch.device:
    """The device of ``model``'s weights; CPU for runtimes without torch parameters (ONNX, OpenVINO)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch with every tensor on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.inference_mode()
def predict(
    model,
    ids: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int = 64,
    outputs: tuple[str, ...] = ("logits",),
    progress: bool = False,
    desc: str = "predict",
) -> dict[str, np.ndarray]:
    """Run ``model`` over pre-tokenised inputs; returns the requested outputs in input order.

    Inputs are sorted by length so batches carry little padding (several times faster on long,
    varied reviews), then put back in order.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    order = np.argsort([len(s) for s in ids], kind="stable")
    collected: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        idx = order[start : start + batch_size]
        input_ids, mask = pad_ids([ids[i] for i in idx], pad_id)
        out = model(input_ids.to(device), mask.to(device))
        for name in outputs:
            collected[name].append(out[name].float().cpu().numpy())
    if was_training:
        model.train()
    result = {}
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    for name, parts in collected.items():
        stacked = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)
        result[name] = stacked[inverse] if len(parts) else stacked
    return result
