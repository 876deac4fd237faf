"""The translation benchmark's recipes, targets and table (the benchmark itself runs on real data only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdistill.bench.mt import VARIANTS, check_targets, markdown_table, pair_config, rows_to_run

from test_cli import run_cli


def _row(pair, name, test, bleu, chrf, sps=None):
    return {
        "pair": pair,
        "name": name,
        "testset": test,
        "bleu": bleu,
        "chrf": chrf,
        "sentences_per_s": sps,
        "params_total": 1_000_000,
        "disk_mb": 4.0,
    }


def test_targets_follow_the_issue():
    rows = [
        _row("en-zh", "teacher", "tatoeba", 20.0, 30.0, 10.0),
        _row("en-zh", "teacher", "flores", 5.0, 12.0, 10.0),
        _row("en-zh", "student-seqkd", "tatoeba", 18.0, 28.6, 60.0),
        _row("en-zh", "student-seqkd", "flores", 4.0, 11.0, 60.0),
        _row("en-zh", "student-ref", "tatoeba", 17.5, 27.0),
        _row("en-zh", "student-ref", "flores", 2.0, 9.0),
        _row("en-es", "teacher", "flores", 12.0, 44.0),
        _row("en-es", "student-seqkd", "flores", 9.0, 40.0),
        _row("en-es", "student-ref", "flores", 10.0, 41.0),
    ]
    t = check_targets(rows)
    assert t["en-zh student-seqkd tatoeba: chrF >= 95% of teacher"] == {"value": 95.3, "met": True}
    assert t["en-zh student-seqkd flores: chrF >= 95% of teacher"]["met"] is False  # 91.7%
    assert t["en-zh tatoeba: seq-KD BLEU - reference-trained BLEU >= 1"] == {"value": 0.5, "met": False}
    assert t["en-zh flores: seq-KD BLEU - reference-trained BLEU >= 1"]["met"] is True
    assert t["en-zh: student sentences/s >= 5x teacher (PyTorch, batch 32)"] == {"value": 6.0, "met": True}
    assert t["en-es flores: seq-KD chrF > reference-trained chrF"] == {"value": -1.0, "met": False}
    # Apertium's share is 75% (a rule-based teacher), the trained en-zh teacher's 95%.
    assert t["en-es student-seqkd flores: chrF >= 75% of teacher"] == {"value": 90.9, "met": True}
    table = markdown_table(
        {
            "machine": {"cpu": "x", "torch": "y"},
            "rows": rows,
            "targets": t,
            "skipped": ["student-seqkd-wordkd"],
            "wall_seconds": 60,
        }
    )
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
    # The equal budget: every row of a pair trains the same steps, with dev points for the learning curve.
    rows = [pair_config(pair, v, data_dir=tmp_path, work_dir=tmp_path / "w", quick=quick) for v in VARIANTS[pair]]
    assert len({c.train.max_steps for c in rows}) == 1 and all(c.train.eval_every for c in rows)
    # ... on the same sources: only the labelled +mono row reads monolingual text.
    for variant, cfg in zip(VARIANTS[pair], rows):
        assert bool(cfg.mt.monolingual) == variant.endswith("+mono"), variant
    assert not any(p.path.startswith("tatoeba_mt_test/eng-spa") for c in rows for p in c.data.parallel)


def test_equal_budgets_and_learning_curves(tmp_path):
    from xdistill.bench.mt import check_equal_budgets, plot_learning_curves

    same = {"count": 10, "sha256": "abc"}
    rows = [
        {**_row("en-es", "student-ref", "flores", 1, 2), "train_steps": 100, "train_sources": same},
        {**_row("en-es", "student-seqkd", "flores", 1, 2), "train_steps": 100, "train_sources": same},
        {**_row("en-es", "student-seqkd+mono", "flores", 1, 2), "train_steps": 100, "train_sources": {"count": 20}},
        {**_row("en-zh", "student-ref", "flores", 1, 2), "train_steps": 100, "train_sources": same},
        {**_row("en-zh", "student-seqkd", "flores", 1, 2), "train_steps": 128, "train_sources": same},
    ]
    budgets = check_equal_budgets(rows)
    assert budgets["en-es"]["equal"] is True and "student-seqkd+mono" not in budgets["en-es"]["steps"]
    assert budgets["en-zh"]["equal"] is False and budgets["en-zh"]["steps"] == {
        "student-ref": 100,
        "student-seqkd": 128,
    }
    curves = {
        "en-es": {"student-ref": [{"step": 10, "minutes": 0.5, "chrf": 3.0}, {"step": 20, "minutes": 1.0, "chrf": 5.0}]}
    }
    png = plot_learning_curves(curves, tmp_path / "mt.curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_skipping_the_last_row_still_leaves_a_last_row_for_the_engine_timing():
    # The engine timing runs after the last row that runs: with the last row skipped it used never to run.
    assert rows_to_run("en-zh", ["student-onpolicy"])[-1] == "student-seqkd-wordkd"
    assert rows_to_run("en-zh", [])[-1] == "student-onpolicy"
    assert rows_to_run("en-es", ["student-ref"]) == ["student-seqkd", "student-seqkd+mono"]


def test_bench_mt_rejects_an_unknown_skip(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "bench", "mt", "--pair", "en-zh", "--skip", "student-nope")
    assert code != 0 and "'student-nope' is not one of 'student-ref', 'student-seqkd', 'student-seqkd+mono'" in err
    code, _, err = run_cli(monkeypatch, capsys, "bench", "mt", "--pair", "en-es", "--skip", "student-seqkd-wordkd")
    assert code != 0 and "--skip ['student-seqkd-wordkd']: not a row of --pair en-es; its rows are student-ref" in err


def test_the_cli_choices_are_the_rows_the_benchmarks_define():
    from xdistill.bench import marc, mt
    from xdistill.bench.choices import MarcRow, MtRow, Pair

    assert [r.value for r in MarcRow] == list(marc.ROWS)
    assert [p.value for p in Pair] == list(mt.VARIANTS) == list(mt.RECIPES)
    assert {r.value for r in MtRow} == {row for rows in mt.VARIANTS.values() for row in rows}


def test_bench_export_mt_only_adds_to_an_existing_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "export.json"
    code, _, err = run_cli(
        monkeypatch, capsys, "bench", "export", "--mt-only", "--mt", "en-es=nowhere", "--out", str(out)
    )
    assert code != 0 and "--mt-only adds to an existing" in err
    out.write_text(json.dumps({"rows": []}))
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", "--mt-only", "--out", str(out))
    assert code != 0 and "--mt-only needs at least one --mt PAIR=FOLDER" in err


def test_export_table_says_where_re_measured_translation_rows_come_from():
    from xdistill.bench.export import markdown_table as export_table

    results = {
        "machine": {"cpu": "Old CPU"},
        "wall_seconds": 600,
        "rows": [{"model": "mt-en-zh", "format": "ct2-int8", "metric": "chrf", "value": 8.4, "disk_mb": 15.0}],
    }
    assert "re-measured" not in export_table(results)
    results.update(mt_machine={"cpu": "New CPU"}, mt_wall_seconds=240)
    assert "re-measured with `--mt-only` on New CPU (the last such run took 4.0 min)." in export_table(results)
    results["rows"][0]["measured_on"] = {"cpu": "New CPU", "commit": "8045df84123c", "dirty": False}
    assert "Measured at: mt-en-zh commit 8045df8." in export_table(results)


def test_mt_only_records_where_each_translation_row_was_measured(tmp_path, monkeypatch):
    from xdistill.bench import export
    from xdistill.io_utils import atomic_write_json

    out = tmp_path / "export.json"
    zh = {"model": "mt-en-zh", "format": "ct2-int8", "metric": "chrf", "value": 8.4, "disk_mb": 15.0}
    es = {**zh, "model": "mt-en-es", "value": 0.0}
    earlier = {"cpu": "CPU", "commit": "b" * 40, "dirty": False}
    atomic_write_json(out, {"machine": {"cpu": "CPU", "commit": "a" * 40}, "mt_machine": earlier, "rows": [zh, es]})
    before = out.read_text()
    # What git would say: the checkout is dirty once this run has rewritten the tracked results file.
    monkeypatch.setattr(
        export, "machine_info", lambda: {"cpu": "CPU", "commit": "c" * 40, "dirty": out.read_text() != before}
    )

    def measure(results, mt_students, *, out, measured_on, **_):
        results["rows"].append({**es, "value": 24.7, "measured_on": measured_on})
        atomic_write_json(out, results)

    monkeypatch.setattr(export, "_measure_mt", measure)
    got = export._add_mt_rows(out, {"en-es": tmp_path}, data_dir=tmp_path, work_dir=tmp_path, quick=True, echo=print)
    assert got["mt_machine"] == {"cpu": "CPU", "commit": "c" * 40, "dirty": False}  # its own output is no change
    on = {r["model"]: r["measured_on"]["commit"] for r in got["rows"]}
    assert on == {"mt-en-zh": "b" * 40, "mt-en-es": "c" * 40}  # the kept row keeps the earlier run's commit


ROW = {"format": "pytorch-fp32", "metric": "accuracy", "value": 83.0, "disk_mb": 78.0}


def _export_run(tmp_path, monkeypatch, earlier: dict, serve: dict, **options) -> dict:
    """``bench export`` over the results file ``earlier``, on a new commit, with the MARC student's
    rows and the load test faked (their measurement is tested elsewhere; what is kept is tested here)."""
    from xdistill.bench import export
    from xdistill.io_utils import atomic_write_json

    out = tmp_path / "export.json"
    atomic_write_json(out, earlier)
    monkeypatch.setattr(export, "machine_info", lambda: {"cpu": "New CPU", "commit": "c" * 40, "dirty": False})
    monkeypatch.setattr(export, "_classifier_rows", lambda *a, **k: [{**ROW, "model": "marc-student", "value": 84.0}])
    monkeypatch.setattr(export, "_serve_load_test", lambda *a, **k: serve)
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("{}")
    return export.run_benchmark(
        data_dir=tmp_path, out=out, work_dir=tmp_path, marc_student=student, marc_teacher=student, echo=print, **options
    )


def test_marc_only_replaces_the_marc_rows_and_keeps_the_others_with_their_commits(tmp_path, monkeypatch):
    from xdistill.bench import export

    old = [{**ROW, "model": "marc-student"}, {**ROW, "model": "embed-student"}, {**ROW, "model": "mt-en-es"}]
    earlier = {"machine": {"cpu": "CPU", "commit": "a" * 40}, "mt_machine": {"cpu": "CPU", "commit": "b" * 40}}
    serve = {"model": "m", "clients": 2, "seconds": 1, "requests_per_s": 9.0, "p50_ms": 1, "p99_ms": 2, "errors": 0}
    got = _export_run(tmp_path, monkeypatch, {**earlier, "rows": old}, serve, mt_students={}, marc_only=True)
    on = {r["model"]: (r["value"], r["measured_on"]["commit"][0]) for r in got["rows"]}
    assert on == {"marc-student": (84.0, "c"), "embed-student": (83.0, "a"), "mt-en-es": (83.0, "b")}
    assert json.loads((tmp_path / "export.json").read_text())["serve"] == serve
    table = export.markdown_table(got)
    assert "re-measured with `--marc-only` on New CPU" in table
    assert "Measured at: marc-student commit ccccccc; embed-student commit aaaaaaa; mt-en-es commit bbbbbbb." in table


def test_a_full_export_run_without_translation_students_keeps_the_translation_rows(tmp_path, monkeypatch):
    from xdistill.bench import export

    old = [{**ROW, "model": "marc-student"}, {**ROW, "model": "mt-en-es"}, {**ROW, "model": "mt-en-zh"}]

    def measure(results, mt_students, **_):  # re-measures en-zh only
        results["rows"].append({**ROW, "model": "mt-en-zh", "value": 9.0, "measured_on": results["machine"]})

    monkeypatch.setattr(export, "_measure_mt", measure)
    earlier = {"machine": {"cpu": "CPU", "commit": "a" * 40}, "rows": old}
    got = _export_run(tmp_path, monkeypatch, earlier, {}, mt_students={"en-zh": tmp_path})
    on = {r["model"]: (r["value"], (r.get("measured_on") or {}).get("commit", "-")[0]) for r in got["rows"]}
    assert on == {"marc-student": (84.0, "-"), "mt-en-zh": (9.0, "c"), "mt-en-es": (83.0, "a")}


def test_a_run_of_one_pair_keeps_the_other_pairs_rows_and_says_where_they_come_from(tmp_path):
    from xdistill.bench.mt import keep_other_pairs

    out = tmp_path / "mt.json"
    old_rows = [_row("en-zh", "teacher", "tatoeba", 10.0, 11.0, 5.0), _row("en-es", "student-ref", "flores", 0.0, 3.9)]
    out.write_text(
        json.dumps(
            {
                "quick": False,
                "machine": {"cpu": "Old CPU", "torch": "t"},
                "wall_seconds": 7620,
                "skipped": ["student-seqkd-wordkd"],
                "rows": old_rows,
                "data": {"en-zh": {"decontamination": {"dropped_pairs": 3, "dropped_monolingual": 0}}},
            }
        )
    )
    results = {"quick": False, "machine": {"cpu": "New CPU", "torch": "t"}, "rows": [], "data": {}, "runs": {}}
    keep_other_pairs(results, out, ["en-es"])
    assert [r["pair"] for r in results["rows"]] == ["en-zh"]  # the re-run pair's old rows are dropped
    assert results["runs"]["en-zh"]["kept_from_an_earlier_run"] is True
    assert results["runs"]["en-zh"]["machine"]["cpu"] == "Old CPU"
    results["runs"]["en-es"] = {"machine": results["machine"], "skipped": []}
    results["runs"]["en-zh"]["machine"]["commit"] = "0123456789abcdef"
    table = markdown_table(results)
    assert (
        "en-zh: measured on Old CPU at commit 0123456 (rows kept from an earlier run of the benchmark); rows left out "
        "(`--skip`): student-seqkd-wordkd." in table
    )
    assert "en-es: measured on New CPU." in table
    results["rows"].append(
        {**_row("en-es", "student-ref", "flores", 1.0, 13.0), "train_steps": 856, "train_seconds": 2820}
    )
    assert "en-es: measured on New CPU; training wall time student-ref 47 min." in markdown_table(results)
    results["runs"]["en-zh"]["note"] = "before the decoding guards"
    assert "earlier run of the benchmark); before the decoding guards; rows left out" in markdown_table(results)

    quick = {"quick": True, "machine": {}, "rows": [], "data": {}, "runs": {}}
    keep_other_pairs(quick, out, ["en-es"])  # a quick run never mixes in full-run rows
    assert quick["rows"] == []
    out.write_text("{not json")
    with pytest.raises(Exception, match=r"mt\.json is not valid JSON; move it away or pass another --out"):
        keep_other_pairs(results, out, ["en-es"])


def test_rows_carry_the_training_steps_from_the_stage_marker(tmp_path):
    from xdistill.bench.mt import training_cost

    cfg = pair_config("en-es", "student-ref", data_dir=tmp_path, work_dir=tmp_path / "w", quick=True)
    assert training_cost(cfg, "student") == {}
    marker = Path(cfg.run_dir) / ".stages" / "student.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"hash": "x", "steps": 856, "seconds": 2400.5, "best_dev": 20.1}))
    assert training_cost(cfg, "student") == {"train_steps": 856, "train_seconds": 2400.5}
    marker.write_text(json.dumps({"hash": "x", "commit": "abc123", "steps": 856, "seconds": 2400.5}))
    assert training_cost(cfg, "student")["train_commit"] == "abc123"  # the code that trained it


def test_training_throughput_and_learning_curve_come_from_the_students_log(tmp_path):
    from xdistill.bench.mt import learning_curve, machine_peak_gflops, training_throughput
    from xdistill.layout import logs_dir, student_dir

    cfg = pair_config("en-zh", "student-seqkd", data_dir=tmp_path, work_dir=tmp_path / "w", quick=True)
    log = logs_dir(student_dir(cfg)) / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    records = [
        {"type": "train", "step": 10, "source_tokens": 300.0, "target_tokens": 200.0},
        {"type": "eval", "step": 10, "train_seconds": 30.0, "dev/chrf": 4.0},
        {"type": "train", "step": 20, "source_tokens": 500.0, "target_tokens": 400.0},
        {"type": "eval", "step": 20, "train_seconds": 60.0, "dev/chrf": 6.5},
    ]
    log.write_text("\n".join(json.dumps(r) for r in records))
    assert learning_curve(cfg) == [
        {"step": 10, "minutes": 0.5, "chrf": 4.0},
        {"step": 20, "minutes": 1.0, "chrf": 6.5},
    ]
    got = training_throughput(cfg, params=1_000_000)
    # 300 target tokens a step on average, 20 steps in 60 s; 700 tokens in all a step.
    assert got["train_target_tokens_per_s"] == pytest.approx(100.0)
    assert got["train_gflops_estimate"] == pytest.approx(6 * 1e6 * 700 * 20 / 60 / 1e9)
    peak = machine_peak_gflops()
    assert peak["threads"] == 2 and peak["flop_per_cycle_per_core"] in (8, 32, 64)


def test_a_method_keeps_its_colour_in_every_panel(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from xdistill.bench.mt import plot_learning_curves

    figures, close = [], plt.close
    # Keep the figure for inspection, and still close it: a figure left open leaks into later tests.
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    points = [{"step": 10, "minutes": 0.5, "chrf": 3.0}]
    plot_learning_curves(
        {
            "en-es": {"student-ref": points, "student-seqkd": points},
            "en-zh": {"student-onpolicy": points, "student-ref": points},
        },
        tmp_path / "mt.curves.png",
    )
    assert plt.get_fignums() == []
    es, zh = figures[0].axes
    colour = {ax: {line.get_label(): line.get_color() for line in ax.lines} for ax in (es, zh)}
    assert colour[es]["student-ref"] == colour[zh]["student-ref"]
    assert len({*colour[es].values(), *colour[zh].values()}) == 3  # three methods, three colours
