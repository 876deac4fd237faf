"""Translation distillation: black-box / trained teachers, seq-KD cache, word-level KD, evaluation, CLI.

The black-box teacher is a stand-in script (a word-for-word "translator" into a made-up language),
so no Apertium is needed; its references come from the same mapping, so the teacher's own chrF on
the test set must be exactly 100.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xdistill.config import ConfigError, RunConfig, from_dict
from xdistill.errors import XdistillError
from xdistill.models.translators import CommandTranslator, command_argv

WORDS = "the a cat dog sees likes big small red house car man woman eats fish bread and runs".split()

TRANSLATOR = r"""
import sys
if len(sys.argv) > 1:  # count the calls
    open(sys.argv[1], "a").write("x")
for line in sys.stdin:
    words = line.split()
    sys.stdout.write(" ".join(w[::-1] + "o" for w in words) + "\n")
    sys.stdout.flush()
"""


def fake_translate(sentence: str) -> str:
    return " ".join(w[::-1] + "o" for w in sentence.split())


def _sentences(rng: random.Random, n: int) -> list[str]:
    out = []
    while len(out) < n:
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        if s not in out:
            out.append(s)
    return out


@pytest.fixture
def mt_data(tmp_path: Path) -> dict:
    rng = random.Random(0)
    sents = _sentences(rng, 420)
    train, mono, test = sents[:200], sents[200:360], sents[360:]
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.tsv").write_text("".join(f"{s}\t{fake_translate(s)}\n" for s in train + test[:5]), encoding="utf-8")
    (d / "mono.txt").write_text("\n".join(mono) + "\n", encoding="utf-8")
    (d / "test.en").write_text("\n".join(test) + "\n", encoding="utf-8")
    (d / "test.xx").write_text("\n".join(fake_translate(s) for s in test) + "\n", encoding="utf-8")
    script = tmp_path / "translator.py"
    script.write_text(TRANSLATOR, encoding="utf-8")
    return {"dir": d, "command": f"{sys.executable} {script}", "test": test}


def mt_raw(tmp_path: Path, mt_data: dict, **teacher) -> dict:
    tiny = {"encoder_layers": 1, "decoder_layers": 1, "d_model": 32, "ffn_size": 64, "heads": 2, "dropout": 0.0}
    return {
        "name": "tiny-mt",
        "task": "translation",
        "run_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "data": {
            "dir": str(mt_data["dir"]),
            "source_lang": "en",
            "target_langs": ["xx"],
            "parallel": [{"path": "train.tsv", "lang": "xx"}],
        },
        "teacher": teacher or {"command": mt_data["command"]},
        "mt": {
            "monolingual": [{"path": "mono.txt"}],
            "eval": [{"path": "test.en", "target_path": "test.xx", "lang": "xx", "name": "toy"}],
            "dev_pairs": 20,
            "vocab_size": 120,
            "max_length": 24,
            "teacher_beam": 1,
            "eval_beam": 2,
            "command_batch_size": 64,
            "student": tiny,
            "teacher_model": {**tiny, "d_model": 48},
        },
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "warmup_ratio": 0.1},
        "evaluate": {"repeats": 1, "speed": False},
    }


def _config(raw: dict) -> RunConfig:
    return from_dict(RunConfig, raw, source="test")


# --- the black-box teacher ------------------------------------------------------------------------


def test_command_translator_batches_and_keeps_order(mt_data):
    teacher = CommandTranslator(mt_data["command"], batch_size=7)
    sources = mt_data["test"][:20] + ["two\nlines  here"]
    assert teacher.translate(sources) == [fake_translate(s) for s in sources]


@pytest.mark.parametrize(
    "script, message",
    [
        (
            "import sys; lines = sys.stdin.read().splitlines(); print('\\n'.join(lines[:-1]))",
            r"sent 3 lines, got 2 back",
        ),
        ("import sys; sys.stderr.write('no model loaded'); sys.exit(3)", r"exited with code 3.*no model loaded"),
        ("import time; time.sleep(5)", r"no answer within 0.5 s; raise mt.command_timeout_s"),
        ("import sys; sys.stdout.buffer.write(b'\\xff\\n\\n\\n')", r"not UTF-8"),
    ],
)
def test_command_translator_failures_name_the_lines_and_the_fix(tmp_path, script, message):
    path = tmp_path / "bad.py"
    path.write_text(script, encoding="utf-8")
    teacher = CommandTranslator(f"{sys.executable} {path}", batch_size=3, timeout_s=0.5)
    with pytest.raises(XdistillError, match=message) as info:
        teacher.translate(["a", "b", "c", "d"])
    assert "input lines 1-3" in str(info.value)


def test_missing_command_says_so():
    with pytest.raises(XdistillError, match="command not found"):
        CommandTranslator("xdistill-no-such-translator-cmd").translate(["a"])
    with pytest.raises(
        XdistillError,
        match=re.escape(
            "teacher.command 'xdistill-no-such-translator-cmd -u' on input lines 1-1: command not found: "
            "xdistill-no-such-translator-cmd; install it or fix teacher.command"
        ),
    ):
        CommandTranslator("xdistill-no-such-translator-cmd -u").translate(["a"])


@pytest.mark.parametrize(
    "command, argv",
    [
        ("apertium -u eng-spa", ["apertium", "-u", "eng-spa"]),
        ('python3 "my translator.py" --to es', ["python3", "my translator.py", "--to", "es"]),
        ("apertium -u eng-spa | sed s/x/y/", None),
        ("apertium eng-spa > out.txt", None),
        ("$HOME/bin/translate", None),
        ("translate; rm x", None),
        ("cd models && ./run", None),
        ("LANG=C apertium eng-spa", None),
        ("translate 'unclosed", None),
    ],
)
def test_command_argv_keeps_the_shell_only_for_shell_syntax(command, argv):
    assert command_argv(command) == argv


def test_plain_command_runs_without_a_shell(mt_data, monkeypatch):
    calls = []
    real_run = subprocess.run

    def spy(args, **kwargs):
        calls.append((args, kwargs.get("shell", False)))
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    assert CommandTranslator(mt_data["command"]).translate(["the cat"]) == [fake_translate("the cat")]
    assert calls == [(mt_data["command"].split(), False)]
    # Shell syntax still works, through the shell.
    piped = f"{mt_data['command']} | {sys.executable} -c 'import sys; sys.stdout.write(sys.stdin.read().upper())'"
    assert CommandTranslator(piped).translate(["the cat"]) == [fake_translate("the cat").upper()]
    assert calls[-1] == (piped, True)


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"target_langs": ["xx", "yy"]}}, r"exactly one language"),
        ({"teacher": {"command": "cat", "path": "somewhere"}}, r"both set"),
        ({"mt": {"word_kd_weight": 0.5}}, r"needs a white-box teacher"),
        (
            {"mt": {"eval": [{"path": "test.en", "target_path": "test.xx", "lang": "es"}]}},
            r"has lang 'es' but the run translates en -> xx",
        ),
        ({"train": {"select_metric": "macro_f1"}}, r"train.select_metric must be chrf or bleu"),
    ],
)
def test_translation_config_errors_name_the_flag(tmp_path, mt_data, change, message):
    raw = mt_raw(tmp_path, mt_data)
    for section, values in change.items():
        raw[section] = {**raw[section], **values}
    with pytest.raises(ConfigError, match=message):
        _config(raw)


# --- end to end -----------------------------------------------------------------------------------


def rescored(run_dir: Path, mt_data: dict, model: str) -> dict[str, float]:
    """chrF and BLEU recomputed with sacrebleu from the toy-test translations the run saved for ``model``."""
    from sacrebleu.metrics import BLEU, CHRF

    hyps = (run_dir / "translations" / f"toy.{model}.txt").read_text(encoding="utf-8").split("\n")[:-1]
    refs = [fake_translate(s) for s in mt_data["test"]]
    assert len(hyps) == len(refs)
    return {"chrf": CHRF().corpus_score(hyps, [refs]).score, "bleu": BLEU().corpus_score(hyps, [refs]).score}


@pytest.mark.slow
def test_seqkd_from_a_black_box_teacher_end_to_end(tmp_path, mt_data, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from xdistill.pipeline import run_all

    calls = tmp_path / "calls.txt"
    raw = mt_raw(tmp_path, mt_data, command=f"{mt_data['command']} {calls}")
    raw["evaluate"]["speed"] = True
    results = run_all(_config(raw), progress=False, echo=lambda _: None)

    teacher, student = results["models"]["teacher"], results["models"]["student"]
    assert teacher["tests"]["toy"]["chrf"] == 100.0  # the references come from the teacher's own mapping
    # The reported scores are those of the student's saved translations (rounded to 2 decimals).
    for metric, value in rescored(Path(raw["run_dir"]), mt_data, "student").items():
        assert student["tests"]["toy"][metric] == pytest.approx(value, abs=0.005), metric
    assert "tok:13a" in student["tests"]["toy"]["bleu_signature"]
    for key in ("params_total", "disk_mb", "sentences_per_s_greedy", "tokens_per_s_beam4", "latency_ms_b1"):
        assert student[key] > 0
    assert teacher["sentences_per_s"] > 0 and "params_total" not in teacher

    folder = Path(raw["run_dir"]) / "student"
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token_id == len(tokenizer) - 1  # CTranslate2's Marian converter wants pad last
    assert model.config.decoder_start_token_id == tokenizer.pad_token_id
    info = json.loads((folder / "xdistill_model.json").read_text())
    # 5 training pairs are test sentences: decontamination drops them.
    assert info["data"]["decontamination"]["dropped_pairs"] == 5
    assert info["made_with"]["seqkd"]["sources"] == 180 + 160  # train minus dev, plus monolingual
    assert (Path(raw["run_dir"]) / "translations" / "toy.student.txt").is_file()

    # A second student (other size) reuses the cached teacher translations: no new seq-KD calls.
    before = calls.read_text()
    raw["mt"]["student"]["d_model"] = 16
    raw["mt"]["student"]["heads"] = 1
    run_all(_config(raw), progress=False, echo=lambda _: None)
    seqkd_calls = len(calls.read_text()) - len(before)
    assert seqkd_calls == 1  # only the uncached speed timing of the black box on the test set


@pytest.mark.slow
@pytest.mark.parametrize("separate_vocabs", [False, True])
def test_trained_teacher_then_word_and_sequence_kd(tmp_path, mt_data, separate_vocabs):
    from xdistill.pipeline import run_all

    raw = mt_raw(tmp_path, mt_data, train={"epochs": 2, "batch_size": 16, "lr": 3e-3})
    raw["mt"]["word_kd_weight"] = 0.5
    raw["mt"]["separate_vocabs"] = separate_vocabs  # word-KD: the student takes the teacher's (per-side) vocabularies
    results = run_all(_config(raw), progress=False, echo=lambda _: None)
    run = Path(raw["run_dir"])
    assert (run / "teacher" / "config.json").is_file()
    records = [json.loads(line) for line in (run / "student-logs" / "metrics.jsonl").read_text().splitlines()]
    assert any("word_kd" in r for r in records if r["type"] == "train")
    assert any("dev/chrf" in r for r in records if r["type"] == "eval")
    assert set(results["models"]) == {"teacher", "student"}
    assert results["models"]["teacher"]["params_total"] > results["models"]["student"]["params_total"]
    assert (run / "student" / "target_vocab.json").is_file() == separate_vocabs
    if separate_vocabs:
        assert (run / "student" / "target_vocab.json").read_bytes() == (
            run / "teacher" / "target_vocab.json"
        ).read_bytes()


@pytest.mark.slow
def test_reference_only_student_needs_no_teacher(tmp_path, mt_data):
    from xdistill.pipeline import run_all

    raw = mt_raw(tmp_path, mt_data)
    raw["distill"] = {"use_teacher": False}
    raw["mt"]["use_references"] = False  # as in the seq-KD recipe: without a teacher the references still train
    results = run_all(_config(raw), progress=False, echo=lambda _: None)
    assert set(results["models"]) == {"student"}


def test_translate_cli_keeps_line_alignment(tmp_path, mt_data):
    from xdistill.config import Seq2SeqArchConfig
    from xdistill.models.seq2seq import build_marian, save_translator, train_tokenizer

    tok = train_tokenizer(mt_data["test"] + [fake_translate(s) for s in mt_data["test"]], 100, 32)
    model = build_marian(
        Seq2SeqArchConfig(encoder_layers=1, decoder_layers=1, d_model=16, ffn_size=32, heads=2), tok, 32
    )
    folder = save_translator(model, tok, tmp_path / "m", {})
    proc = subprocess.run(
        [sys.executable, "-m", "xdistill", "-q", "translate", "--model", str(folder), "--beam", "2"],
        input="the cat\n\nthe dog runs\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""


def test_translate_cli_rejects_a_classifier_folder(tmp_path):
    from xdistill.models.tiny import create_random_encoder

    folder = create_random_encoder(tmp_path / "enc", ["a small text", "another one"])
    proc = subprocess.run(
        [sys.executable, "-m", "xdistill", "translate", "--model", str(folder)],
        input="a\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "is an xdistill encoder model, not a translation (seq2seq) model" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- warm start from a pretrained encoder -------------------------------------------------------------


@pytest.mark.parametrize("train_output_layer", [False, True], ids=["tied", "own-output-layer"])
def test_warm_started_encoder_reproduces_the_bert_encoder(tmp_path, mt_data, train_output_layer):
    from transformers import AutoModel, AutoTokenizer, BartForConditionalGeneration

    from xdistill.config import Seq2SeqArchConfig
    from xdistill.models.tiny import create_random_encoder
    from xdistill.models.warm_start import build_warm_started

    corpus = mt_data["test"] + [fake_translate(s) for s in mt_data["test"]]
    bert_dir = create_random_encoder(tmp_path / "bert", corpus)
    arch = Seq2SeqArchConfig(
        init_encoder=str(bert_dir),
        decoder_layer_ids=[0],
        freeze_encoder=True,
        train_output_layer=train_output_layer,
        dropout=0.0,
    )
    model, tokenizer = build_warm_started(arch, corpus, 32, vocab_size=1000)
    bert, bert_tok = AutoModel.from_pretrained(bert_dir).eval(), AutoTokenizer.from_pretrained(bert_dir)
    texts = mt_data["test"][:4]
    model.save_pretrained(tmp_path / "saved")
    loaded = BartForConditionalGeneration.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        want = bert(**bert_tok(texts, return_tensors="pt", padding=True)).last_hidden_state
        for bart in (model, loaded):  # as built and as a user's from_pretrained loads it
            got = bart.eval().model.encoder(**tokenizer(texts, return_tensors="pt", padding=True)).last_hidden_state
            # only the LayerNorm eps differs (BART 1e-5, BERT 1e-12)
            assert torch.allclose(want, got, atol=2e-3)
            # The decoder reads the same (trimmed) word vectors as the encoder, tied or not.
            assert torch.equal(bart.model.decoder.embed_tokens.weight, bart.model.encoder.embed_tokens.weight)
    assert len(tokenizer) < len(bert_tok)  # trimmed to the corpus
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    decoder_only = ("model.decoder.layers.", "model.decoder.embed_positions", "model.decoder.layernorm", "final_logits")
    assert trainable and all(n.startswith(decoder_only + ("lm_head",)) for n in trainable)
    assert ("lm_head.weight" in trainable) == train_output_layer
    assert torch.equal(model.model.decoder.layers[0].fc1.weight, bert.encoder.layer[0].intermediate.dense.weight)
    # The decoder starts from the encoder's positions, not random ones.
    # (BART's first 2 position rows are an offset no token uses.)
    dec, enc = model.model.decoder.embed_positions.weight, model.model.encoder.embed_positions.weight
    assert torch.equal(dec[2:], enc[2:])
    if not train_output_layer:  # tied: the output layer is frozen with the embeddings
        assert model.lm_head.weight is model.model.shared.weight


def test_a_frozen_encoder_teacher_can_train_its_output_layer(tmp_path, mt_data):
    from transformers import BartForConditionalGeneration

    from xdistill.config import Seq2SeqArchConfig
    from xdistill.errors import ConfigError
    from xdistill.models.tiny import create_random_encoder
    from xdistill.models.warm_start import build_warm_started

    corpus = mt_data["test"] + [fake_translate(s) for s in mt_data["test"]]
    bert_dir = create_random_encoder(tmp_path / "bert", corpus)
    arch = Seq2SeqArchConfig(
        init_encoder=str(bert_dir), decoder_layer_ids=[0], freeze_encoder=True, train_output_layer=True
    )
    model, _ = build_warm_started(arch, corpus, 32, vocab_size=1000)
    assert model.lm_head.weight is not model.model.shared.weight
    assert model.lm_head.weight.requires_grad and not model.model.shared.weight.requires_grad
    assert torch.equal(model.lm_head.weight, model.model.shared.weight)  # it starts as the embeddings
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(tmp_path / "saved")
    loaded = BartForConditionalGeneration.from_pretrained(tmp_path / "saved")
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert not torch.equal(loaded.lm_head.weight, loaded.model.shared.weight)  # still untied after loading
    with pytest.raises(ConfigError, match=r"train_output_layer is for a frozen encoder"):
        Seq2SeqArchConfig(init_encoder=str(bert_dir), train_output_layer=True)


@pytest.mark.slow
def test_warm_started_teacher_and_word_kd_student_share_the_vocabulary(tmp_path, mt_data):
    from transformers import AutoTokenizer

    from xdistill.models.tiny import create_random_encoder
    from xdistill.pipeline import run_all

    corpus = mt_data["test"] + [fake_translate(s) for s in mt_data["test"]]
    bert_dir = str(create_random_encoder(tmp_path / "bert", corpus))
    raw = mt_raw(tmp_path, mt_data, train={"epochs": 1, "batch_size": 16, "lr": 3e-3})
    raw["mt"]["teacher_model"] = {
        "init_encoder": bert_dir,
        "freeze_encoder": True,
        "decoder_layers": 1,
        "heads": 2,
        "ffn_size": 32,
    }
    raw["mt"]["student"] = {"init_encoder": bert_dir, "encoder_layer_ids": [0], "decoder_layer_ids": [0]}
    raw["mt"]["word_kd_weight"] = 0.5
    results = run_all(_config(raw), progress=False, echo=lambda _: None)
    run = Path(raw["run_dir"])
    teacher_tok, student_tok = (
        AutoTokenizer.from_pretrained(run / "teacher"),
        AutoTokenizer.from_pretrained(run / "student"),
    )
    assert teacher_tok.get_vocab() == student_tok.get_vocab()
    assert results["models"]["teacher"]["params_total"] > results["models"]["student"]["params_total"]
    config = json.loads((run / "student" / "config.json").read_text())
    assert config["model_type"] == "bart" and config["encoder_layers"] == 1


@pytest.mark.parametrize(
    "arch, message",
    [
        ({"freeze_encoder": True}, r"need init_encoder"),
        ({"init_encoder": "BERT", "encoder_layer_ids": [7]}, r"encoder_layer_ids \[7\]: .* has layers 0\.\.3"),
        ({"init_encoder": "nowhere"}, r"nowhere is not a model folder .* models import e5-small"),
    ],
)
def test_warm_start_errors_say_what_to_fix(tmp_path, mt_data, arch, message):
    from xdistill.config import Seq2SeqArchConfig
    from xdistill.errors import ModelError
    from xdistill.models.tiny import create_random_encoder
    from xdistill.models.warm_start import build_warm_started

    if arch.get("init_encoder") == "BERT":
        arch = {**arch, "init_encoder": str(create_random_encoder(tmp_path / "bert", mt_data["test"]))}
    with pytest.raises((ConfigError, ModelError), match=message):
        build_warm_started(Seq2SeqArchConfig(**arch), mt_data["test"], 32, vocab_size=500)


# --- per-side vocabularies --------------------------------------------------------------------------


@pytest.mark.slow
def test_per_side_vocabularies_end_to_end(tmp_path, mt_data):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from xdistill.pipeline import run_all

    raw = mt_raw(tmp_path, mt_data)
    raw["mt"]["separate_vocabs"] = True
    results = run_all(_config(raw), progress=False, echo=lambda _: None)
    chrf = rescored(Path(raw["run_dir"]), mt_data, "student")["chrf"]
    assert results["models"]["student"]["tests"]["toy"]["chrf"] == pytest.approx(chrf, abs=0.005)

    folder = Path(raw["run_dir"]) / "student"
    assert {"source.spm", "target.spm", "vocab.json", "target_vocab.json"} <= {p.name for p in folder.iterdir()}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    source_vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    target_vocab = json.loads((folder / "target_vocab.json").read_text(encoding="utf-8"))
    assert tokenizer.separate_vocabs and not model.config.share_encoder_decoder_embeddings
    assert model.get_encoder().embed_tokens.num_embeddings == len(source_vocab)
    assert model.lm_head.out_features == len(target_vocab) == len(source_vocab)  # levelled: one pad id
    for vocab in (source_vocab, target_vocab):
        assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1

    # Each side's pieces come from its own text: the made-up language's words end in "o", English ones rarely.
    def real(vocab: dict[str, int]) -> set[str]:
        return {p for p in vocab if not p.startswith("<")}

    assert real(target_vocab) != real(source_vocab)
    target = fake_translate(mt_data["test"][0])
    labels = tokenizer(text_target=[target])["input_ids"][0]
    assert 1 not in labels and tokenizer.decode(labels, skip_special_tokens=True) == target


def test_per_side_vocabularies_need_a_model_built_from_scratch(tmp_path, mt_data):
    raw = mt_raw(tmp_path, mt_data)
    raw["mt"]["separate_vocabs"] = True
    raw["mt"]["student"] = {"init_encoder": "models/e5-small", "encoder_layer_ids": [0]}
    with pytest.raises(
        ConfigError,
        match=r"mt\.separate_vocabs needs models built from scratch, but "
        r"mt\.student\.init_encoder is 'models/e5-small'",
    ):
        _config(raw)


def test_per_side_vocabulary_too_small_for_the_script_says_what_to_raise():
    from xdistill.models.seq2seq import train_per_side_tokenizer

    chinese = ["".join(chr(0x4E00 + (7 * i + j) % 400) for j in range(12)) for i in range(200)]
    with pytest.raises(
        XdistillError,
        match=r"could not train the target-side vocabulary with mt\.vocab_size 100: "
        r".*raise mt\.vocab_size or use one joint vocabulary",
    ):
        train_per_side_tokenizer(["the cat sees the dog"] * 50, chinese, 100, 32)


def test_per_side_model_refuses_ctranslate2_and_keeps_an_earlier_export(tmp_path):
    from xdistill.config import Seq2SeqArchConfig
    from xdistill.errors import ModelError
    from xdistill.export.exporter import export_model
    from xdistill.models.seq2seq import build_marian, save_translator, train_per_side_tokenizer

    tok = train_per_side_tokenizer(["the cat sees the dog", "a red car"] * 30, ["ehto tac", "a der rac"] * 30, 100, 24)
    model = build_marian(
        Seq2SeqArchConfig(encoder_layers=1, decoder_layers=1, d_model=16, ffn_size=32, heads=2), tok, 24
    )
    folder = save_translator(model, tok, tmp_path / "m", {"max_length": 24})
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "keep.txt").write_text("earlier export")
    with pytest.raises(
        ModelError,
        match=r"one vocabulary per side \(mt\.separate_vocabs\); CTranslate2's converter "
        r"writes a single shared vocabulary",
    ):
        export_model(folder, "ctranslate2", out)
    assert (out / "keep.txt").read_text() == "earlier export"


def test_neural_teacher_and_student_are_timed_interleaved_in_one_window(monkeypatch):
    """`xdistill evaluate` on a translation run times a neural teacher and the student taking turns in
    one window per beam, so their speed ratio does not move with machine noise."""
    from types import SimpleNamespace

    from xdistill.evaluate import mt_eval

    class FakeTranslator:
        def __init__(self, name: str, length: int):
            self.name, self.length = name, length
            self.tokenizer = SimpleNamespace(all_special_ids=[0])

        def generate_ids(self, sources, beam):
            calls.append(self.name)
            return torch.ones(len(sources), self.length, dtype=torch.long)  # `length` non-special tokens each

    calls: list[str] = []
    windows: list[list[str]] = []
    real = mt_eval.measure_speeds

    def recording(runners, **kwargs):
        windows.append(list(runners))
        return real(runners, **kwargs)

    monkeypatch.setattr(mt_eval, "measure_speeds", recording)
    translators = {"teacher": FakeTranslator("teacher", 7), "student": FakeTranslator("student", 5)}
    speeds = mt_eval.seq2seq_speeds(translators, ["one", "two"], threads=1, repeats=3)
    assert windows == [["teacher", "student"], ["teacher", "student"]]  # greedy, then beam 4
    timed = calls[-2 * 3 :]  # beam 4's timed calls: 3 repeats x 2 models, after warm-up
    assert timed[:4] == ["teacher", "student", "student", "teacher"]  # the order rotates each repeat
    for name, length in (("teacher", 7), ("student", 5)):
        entry = speeds[name]
        assert entry["latency_ms_b1"] > 0
        assert entry["tokens_per_s_beam4"] == pytest.approx(entry["sentences_per_s_beam4"] * length)
