"""The translation benchmark's recipes, targets and table (the benchmark itself runs on real data only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdistill.bench.mt import VARIANTS, check_targets, markdown_table, pair_config

from test_cli import run_cli


def _row(pair, name, test, bleu, chrf, sps=None):
    return {"pair": pair, "name": name, "testset": test, "bleu": bleu, "chrf": chrf, "sentences_per_s": sps,
            "params_total": 1_000_000, "disk_mb": 4.0}


def test_targets_follow_the_issue():
    rows = [_row("en-zh", "teacher", "tatoeba", 20.0, 30.0, 10.0), _row("en-zh", "teacher", "flores", 5.0, 12.0, 10.0),
            _row("en-zh", "student-seqkd", "tatoeba", 18.0, 28.6, 60.0),
            _row("en-zh", "student-seqkd", "flores", 4.0, 11.0, 60.0),
            _row("en-zh", "student-ref", "tatoeba", 17.5, 27.0), _row("en-zh", "student-ref", "flores", 2.0, 9.0),
            _row("en-es", "teacher", "flores", 12.0, 44.0), _row("en-es", "student-seqkd", "flores", 9.0, 40.0),
            _row("en-es", "student-ref", "flores", 10.0, 41.0)]
    t = check_targets(rows)
    assert t["en-zh student-seqkd tatoeba: chrF >= 95% of teacher"] == {"value": 95.3, "met": True}
    assert t["en-zh student-seqkd flores: chrF >= 95% of teacher"]["met"] is False  # 91.7%
    assert t["en-zh tatoeba: seq-KD BLEU - reference-trained BLEU >= 1"] == {"value": 0.5, "met": False}
    assert t["en-zh flores: seq-KD BLEU - reference-trained BLEU >= 1"]["met"] is True
    assert t["en-zh: student sentences/s >= 5x teacher (PyTorch, batch 32)"] == {"value": 6.0, "met": True}
    assert t["en-es flores: seq-KD chrF > reference-trained chrF"] == {"value": -1.0, "met": False}
    table = markdown_table({"machine": {"cpu": "x", "torch": "y"}, "rows": rows, "targets": t,
                            "skipped": ["student-seqkd-wordkd"], "wall_seconds": 60})
    assert "| en-es flores: seq-KD chrF > reference-trained chrF | -1.0 | **no** |" in table
    assert "`--skip`): student-seqkd-wordkd" in table


@pytest.mark.parametrize("pair", sorted(VARIANTS))
@pytest.mark.parametrize("quick", [False, True])
def test_every_recipe_variant_is_a_valid_config(tmp_path, pair, quick):
    for variant in VARIANTS[pair]:
        cfg = pair_config(pair, variant, data_dir=tmp_path, work_dir=tmp_path / "w", quick=quick)
        assert cfg.task == "translation" and cfg.mt.student.init_encoder == "models/e5-small"
        if quick:
            assert all(p.max_pairs and p.max_pairs <= 400 for p in cfg.data.parallel)
    ref = pair_config(pair, "student-ref", data_dir=tmp_path, work_dir=tmp_path / "w", quick=quick)
    seqkd = pair_config(pair, "student-seqkd", data_dir=tmp_path, work_dir=tmp_path / "w", quick=quick)
    assert ref.distill.use_teacher is False and seqkd.distill.use_teacher is True
    assert ref.mt.student == seqkd.mt.student and ref.mt.decoding == seqkd.mt.decoding
    if not quick and seqkd.mt.use_references:
        # Teacher translations + references (2x the pairs) for 1 epoch = references for 2: the same steps.
        assert ref.train.epochs == 2 * seqkd.train.epochs
    elif not quick:
        assert ref.train.epochs == seqkd.train.epochs


def test_bench_mt_rejects_an_unknown_skip(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "bench", "mt", "--pair", "en-zh", "--skip", "student-nope")
    assert code != 0 and "unknown --skip ['student-nope']; the rows are student-ref" in err


def test_bench_export_mt_only_adds_to_an_existing_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "export.json"
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", "--mt-only", "--mt", "en-es=nowhere", "--out", str(out))
    assert code != 0 and "--mt-only adds to an existing" in err
    out.write_text(json.dumps({"rows": []}))
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", "--mt-only", "--out", str(out))
    assert code != 0 and "--mt-only needs at least one --mt PAIR=FOLDER" in err
