"""Data hygiene (xdistill.data.hygiene): the one text-comparison rule, the seeded subset and the
held-out split every task uses, and that each task's leak check applies the rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from xdistill.config import RunConfig, from_dict
from xdistill.data.embed_data import load_embed_data
from xdistill.data.hygiene import held_out_split, seeded_subset, text_key, unique
from xdistill.data.mt_data import load_mt_data
from xdistill.data.splits import load_training_data

from conftest import ROOT

HYGIENE = ROOT / "src" / "xdistill" / "data" / "hygiene.py"


def _config(raw: dict) -> RunConfig:
    return from_dict(RunConfig, raw, source="test")


def _lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path.name


# --- the normalisation rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "The cat sat.",
        "the cat sat.",  # case
        "THE CAT SAT.",
        "  The cat sat.  ",  # surrounding whitespace
        "The   cat\tsat.",  # inner runs of whitespace, tabs
        "The\u00a0cat\u3000sat.",  # no-break and ideographic spaces
        "Ｔｈｅ ｃａｔ ｓａｔ．",  # full-width letters and punctuation
    ],
)
def test_text_key_ignores_case_whitespace_and_width(variant):
    assert text_key(variant) == text_key("The cat sat.") == "the cat sat."


def test_text_key_keeps_what_makes_a_different_text():
    assert text_key("STRASSE") == text_key("straße")  # casefold, not lower
    assert text_key("１２３") == "123"  # full-width digits
    assert text_key("ｶﾀｶﾅ") == text_key("カタカナ")  # half-width katakana
    assert text_key("The cat sat") != text_key("The cat sat.")  # punctuation counts
    assert text_key("Qué") != text_key("Que")  # accents count
    assert text_key("thecat") != text_key("the cat")  # word boundaries count
    assert text_key("") == text_key(" \t ") == ""


def test_unique_keeps_first_seen_order():
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_hygiene_imports_only_the_bottom_layers():
    allowed = {"xdistill.config", "xdistill.errors", "xdistill.io_utils"}
    tree = ast.parse(HYGIENE.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative to xdistill.data
                module = ("xdistill.data." if node.level == 1 else "xdistill.") + (node.module or "")
                assert module in allowed, module
            else:
                assert not (node.module or "").startswith("xdistill") or node.module in allowed, node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("xdistill") and a.name not in allowed for a in node.names)


# --- the seeded subset ---------------------------------------------------------------------------


def test_seeded_subset_is_deterministic_and_depends_on_the_seed():
    items = list(range(1000))
    a = seeded_subset(items, 50, 13)
    assert a == seeded_subset(items, 50, 13) and len(a) == 50
    assert a == sorted(a) and set(a) <= set(items)  # original order, no repeats
    assert seeded_subset(items, 50, 14) != a
    # A stream is an independent draw from the same seed, and as deterministic.
    assert seeded_subset(items, 50, 13, "mono", 0) == seeded_subset(items, 50, 13, "mono", 0)
    assert seeded_subset(items, 50, 13, "mono", 0) != seeded_subset(items, 50, 13, "mono", 1) != a


def test_seeded_subset_keeps_everything_under_the_limit():
    items = ["c", "a", "b"]
    assert seeded_subset(items, None, 13) == items
    assert seeded_subset(items, 3, 13) == items
    assert seeded_subset(items, 10, 13) == items
    assert seeded_subset(items, 2, 13) in (["c", "a"], ["c", "b"], ["a", "b"])


def test_seeded_subset_draws_what_the_caps_drew_before():
    # The old copies: random.Random(seed) (classification) or random.Random(f"{seed}-{part}").
    import random

    items = list(range(100))
    assert seeded_subset(items, 10, 13) == sorted(random.Random(13).sample(range(100), 10))
    assert seeded_subset(items, 10, 13, "probe", "es") == sorted(random.Random("13-probe-es").sample(range(100), 10))


# --- the held-out split --------------------------------------------------------------------------


def test_held_out_split_is_disjoint_sized_and_seeded():
    pairs = [(f"s{i}", f"t{i}") for i in range(100)]
    split = held_out_split(pairs, [10, 5], 13, "es")
    held, dev = split.held_out
    assert (len(held), len(dev), len(split.train), split.dropped_overlap) == (10, 5, 85, 0)
    assert not set(held) & set(dev) and not (set(held) | set(dev)) & set(split.train)
    assert set(held) | set(dev) | set(split.train) == set(pairs)
    assert split.train == [p for p in pairs if p in set(split.train)]  # training keeps input order
    assert split.reserved == {text_key(t) for p in held + dev for t in p}
    again = held_out_split(pairs, [10, 5], 13, "es")
    assert again.held_out == split.held_out and again.train == split.train
    assert held_out_split(pairs, [10, 5], 13, "zh").held_out != split.held_out
    with pytest.raises(ValueError, match="cannot hold out"):
        held_out_split(pairs, [60, 41], 13)


def test_held_out_split_drops_training_items_sharing_a_text_with_a_held_out_one():
    # Every pair has a partner with the same source up to case and spacing and another translation,
    # so whichever pair is held out, its partner must leave the training rest.
    pairs = [(f"s{i}", f"t{i}") for i in range(10)] + [(f"  S{i} ", f"u{i}") for i in range(10)]
    for seed in (13, 14, "x"):
        split = held_out_split(pairs, [1], seed)
        assert (len(split.held_out[0]), len(split.train), split.dropped_overlap) == (1, 18, 1)
        assert not {text_key(t) for p in split.train for t in p} & split.reserved


# --- each task removes a case/whitespace variant of a test text ----------------------------------


def test_classification_drops_a_training_text_that_is_a_test_text_up_to_case_and_spacing(tmp_path):
    header = "id,text,label"
    train = [
        header,
        "1,A perfectly fine product.,positive",
        "2,Broke after one day.,negative",
        "3,  great   VALUE for money ,positive",
        "4,Never again.,negative",
    ]
    test = [header, "t1,Great value for money,positive", "t2,Something else entirely.,negative"]
    raw = {
        "name": "t",
        "task": "classification",
        "teacher": {"path": "random:tiny"},
        "data": {
            "dir": str(tmp_path),
            "labels": ["negative", "positive"],
            "columns": {"id": "id"},
            "train": _lines(tmp_path / "train.csv", train),
            "test": {"en": _lines(tmp_path / "test.csv", test)},
        },
    }
    data = load_training_data(_config(raw), with_targets=False)
    assert [e.id for e in data.train] == ["1", "2", "4"]
    assert any("dropped 1 rows" in note for note in data.notes)
    raw["data"]["exclude_test_texts"] = False
    assert len(load_training_data(_config(raw), with_targets=False).train) == 4


def test_embedding_drops_a_training_pair_whose_side_is_an_evaluation_text_up_to_case_and_spacing(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "tiny-embed.yaml").read_text(encoding="utf-8"))
    pairs = [f"Sentence number {i}.\tFrase número {i}." for i in range(20)]
    pairs += [
        "  the EVAL   sentence.\tuna cosa",
        "Another thing.\tLA FRASE\u3000DE PRUEBA.",
        "Ｔｈｅ ｅｖａｌ ｓｅｎｔｅｎｃｅ．\tdos",
    ]  # full width: only NFKC sees it
    raw["data"] = {
        "dir": str(tmp_path),
        "source_lang": "en",
        "target_langs": ["es"],
        "parallel": [{"path": _lines(tmp_path / "train.tsv", pairs), "lang": "es"}],
    }
    raw["embed"] = {
        "eval_retrieval": [
            {"path": _lines(tmp_path / "eval.tsv", ["The eval sentence.\tLa frase de prueba."]), "lang": "es"}
        ],
        "heldout_pairs": 2,
        "dev_pairs": 2,
    }
    data = load_embed_data(_config(raw))
    assert data.summary["decontamination"]["dropped_pairs"] == 3
    texts = {
        t
        for pairs in (*data.train.values(), *data.dev.values(), *data.heldout.values())
        for p in pairs
        for t in (p.source, p.target)
    }
    assert not {"una cosa", "Another thing.", "dos"} & texts


def test_translation_drops_a_training_pair_and_a_monolingual_text_that_are_test_texts_up_to_case_and_spacing(tmp_path):
    train = [f"sentence number {i}\tsentencia {i}" for i in range(30)] + ["THE  test sentence\tfoo", "bar\t la Prueba "]
    mono = ["a monolingual line", "  The Test   Sentence  ", "another monolingual line"]
    raw = {
        "name": "t",
        "task": "translation",
        "data": {
            "dir": str(tmp_path),
            "source_lang": "en",
            "target_langs": ["xx"],
            "parallel": [{"path": _lines(tmp_path / "train.tsv", train), "lang": "xx"}],
        },
        "teacher": {"command": "cat"},
        "mt": {
            "monolingual": [{"path": _lines(tmp_path / "mono.txt", mono)}],
            "eval": [
                {"path": _lines(tmp_path / "test.tsv", ["The test sentence\tLa prueba"]), "lang": "xx", "name": "toy"}
            ],
            "dev_pairs": 5,
        },
    }
    data = load_mt_data(_config(raw))
    d = data.summary["decontamination"]
    assert (d["dropped_pairs"], d["dropped_monolingual"]) == (2, 1)
    sources = {p.source for p in data.train + data.dev} | set(data.monolingual)
    assert not {"THE  test sentence", "bar", "  The Test   Sentence  "} & sources
    assert len(data.train) + len(data.dev) == 30
