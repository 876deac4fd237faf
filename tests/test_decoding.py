"""Decoding guards of translation models: the length bound tied to the source and the no-repeat n-gram.

A randomly initialised translator never emits </s> on purpose: it runs to its length limit and
repeats itself, which is exactly the failure the guards are for. Each test first checks that the
unguarded model does show the failure, so the guard's test can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xdistill.config import ConfigError, Decoding, RunConfig, from_dict

SOURCES = [
    "the cat sees the dog",
    "a big red house and a small car",
    "the man eats fish and bread",
    "a woman runs",
    "the dog likes the cat and the fish",
]
MAX_LENGTH = 40


@pytest.fixture(scope="module")
def translator_folder(tmp_path_factory) -> Path:
    from xdistill.config import Seq2SeqArchConfig
    from xdistill.models.seq2seq import build_marian, save_translator, train_tokenizer

    root = tmp_path_factory.mktemp("decoding")
    tok = train_tokenizer(SOURCES * 20 + ["el gato ve al perro", "una casa roja"] * 20, 100, MAX_LENGTH)
    torch.manual_seed(0)  # one random model for every run of these tests
    model = build_marian(
        Seq2SeqArchConfig(encoder_layers=1, decoder_layers=1, d_model=32, ffn_size=64, heads=2), tok, MAX_LENGTH
    )
    # A model that never ends a sentence by itself (</s> only where the limit forces it): the worst case.
    model.final_logits_bias[0, tok.eos_token_id] = -1e4
    guard = {"length_ratio": 0.5, "length_extra": 2, "no_repeat_ngram_size": 2, "repetition_penalty": 1.0}
    return save_translator(
        model.eval(),
        tok,
        root / "translator",
        {"source_lang": "en", "target_lang": "es", "max_length": MAX_LENGTH, "decoding": guard},
    )


def _real_tokens(tokenizer, ids) -> list[list[int]]:
    special = set(tokenizer.all_special_ids)
    return [[int(t) for t in row if int(t) not in special] for row in ids]


def _generated(tokenizer, ids) -> list[list[int]]:
    """Each row as generate() saw it, less the decoder start token and the trailing </s> and padding.
    Special tokens inside a row stay: dropping one would join two tokens into a bigram that generate()
    never produced (the random model of a lent GPU's run emitted one and failed the test that way)."""
    end = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    rows = []
    for row in ids:
        tokens = [int(t) for t in row][1:]
        while tokens and tokens[-1] in end:
            tokens.pop()
        rows.append(tokens)
    return rows


def _has_repeated_bigram(seq: list) -> bool:
    grams = list(zip(seq, seq[1:]))
    return len(grams) != len(set(grams))


def test_length_bound_is_ratio_times_longest_source_plus_extra_capped():
    d = Decoding(length_ratio=1.5, length_extra=10)
    assert d.max_new_tokens([4, 8, 3], cap=100) == 22  # ceil(1.5 * 8 + 10)
    assert d.max_new_tokens([5], cap=100) == 18  # ceil(17.5)
    assert d.max_new_tokens([40], cap=30) == 30
    assert Decoding(length_ratio=0.1, length_extra=0).max_new_tokens([1], cap=10) == 1


def test_saved_settings_load_and_ignore_unknown_keys():
    assert Decoding.from_dict({"length_ratio": 2.0, "from_a_newer_version": 1}) == Decoding(length_ratio=2.0)
    assert Decoding.from_dict(None) == Decoding()


@pytest.mark.parametrize(
    "decoding, message",
    [
        ({"length_ratio": 0}, r"mt\.decoding\.length_ratio must be > 0, got 0"),
        ({"length_extra": -1}, r"mt\.decoding\.length_extra must be >= 0"),
        ({"no_repeat_ngram_size": -2}, r"mt\.decoding\.no_repeat_ngram_size must be >= 0 \(0 = off\)"),
        ({"repetition_penalty": 0.5}, r"mt\.decoding\.repetition_penalty must be >= 1\.0 \(1\.0 = off\)"),
        ({"length_ration": 2}, r"unknown key 'mt\.decoding\.length_ration'.*length_ratio"),
    ],
)
def test_decoding_config_errors_name_the_flag(decoding, message):
    raw = {
        "task": "translation",
        "data": {"source_lang": "en", "target_langs": ["es"]},
        "teacher": {"command": "cat"},
        "mt": {"decoding": decoding},
    }
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, raw, source="recipe.yaml")


def test_pytorch_translator_stops_at_the_bound_and_repeats_no_ngram(translator_folder):
    from xdistill.models.translators import Seq2SeqTranslator

    unguarded = Seq2SeqTranslator(
        translator_folder, max_length=MAX_LENGTH, decoding=Decoding(length_ratio=100, length_extra=0)
    )
    free = _real_tokens(unguarded.tokenizer, unguarded.generate_ids(SOURCES, beam=2))
    longest = max(len(ids) for ids in unguarded.encode(SOURCES)["input_ids"].tolist())
    bound = Decoding(length_ratio=0.5, length_extra=2).max_new_tokens([longest], MAX_LENGTH - 2)
    # The failure the guards are for: without them the random model runs past the bound and loops.
    assert max(len(seq) for seq in free) > bound
    assert any(_has_repeated_bigram(seq) for seq in free)

    guarded = Seq2SeqTranslator(translator_folder, max_length=MAX_LENGTH)  # the folder's saved settings
    assert guarded.decoding == Decoding(length_ratio=0.5, length_extra=2, no_repeat_ngram_size=2)
    for beam in (1, 3):
        ids = guarded.generate_ids(SOURCES, beam=beam)
        assert max(len(seq) for seq in _real_tokens(guarded.tokenizer, ids)) <= bound
        assert not any(_has_repeated_bigram(seq) for seq in _generated(guarded.tokenizer, ids))


def test_saved_guard_reaches_plain_from_pretrained_generate(translator_folder):
    config = json.loads((translator_folder / "generation_config.json").read_text())
    assert config["no_repeat_ngram_size"] == 2


def test_ctranslate2_export_decodes_with_the_same_guards(translator_folder, tmp_path):
    pytest.importorskip("ctranslate2")
    from xdistill.export.exporter import export_model
    from xdistill.export.runtime import load_model

    result = export_model(translator_folder, "ctranslate2", tmp_path / "ct2")
    # The parity check decodes both runtimes greedily: one bound and one guard for both.
    assert result.parity["identical_greedy_rate"] >= 0.95
    exported = load_model(tmp_path / "ct2")
    assert exported.backend.decoding == Decoding(length_ratio=0.5, length_extra=2, no_repeat_ngram_size=2)
    hyps = exported.backend.generate_tokens(SOURCES, beam=2)
    longest = max(len(t) for t in exported.backend.tokens(SOURCES))
    assert max(len(h) for h in hyps) <= Decoding(length_ratio=0.5, length_extra=2).max_new_tokens([longest], 38)
    assert not any(_has_repeated_bigram(h) for h in hyps)
    card = (tmp_path / "ct2" / "README.md").read_text()
    assert "**Decoding:** at most 0.5 x the longest source in a batch + 2 tokens, no repeated 2-gram" in card


def test_translate_cli_overrides_the_saved_length_bound(translator_folder):
    def run(*extra: str) -> list[str]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "xdistill",
                "-q",
                "translate",
                "--model",
                str(translator_folder),
                "--beam",
                "1",
                "--max-length",
                str(MAX_LENGTH),
                *extra,
            ],
            input="\n".join(SOURCES) + "\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    saved, longer = run(), run("--length-ratio", "5", "--no-repeat-ngram-size", "0")
    assert len(saved) == len(longer) == len(SOURCES)
    assert sum(map(len, longer)) > sum(map(len, saved))


def test_a_bad_saved_decoding_entry_names_the_file_and_the_fix(translator_folder, tmp_path):
    import shutil

    from xdistill.errors import XdistillError
    from xdistill.models.translators import Seq2SeqTranslator

    folder = tmp_path / "m"
    shutil.copytree(translator_folder, folder)
    info = json.loads((folder / "xdistill_model.json").read_text())
    info["decoding"]["length_ratio"] = -1
    (folder / "xdistill_model.json").write_text(json.dumps(info))
    with pytest.raises(
        XdistillError,
        match=r"m/xdistill_model\.json: bad \"decoding\" entry .*length_ratio must be "
        r"> 0.*fix the value or delete the entry to use the defaults",
    ):
        Seq2SeqTranslator(folder, max_length=MAX_LENGTH)
