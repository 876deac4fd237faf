"""Run configuration: one YAML file is one run.

The YAML is loaded into typed dataclasses. Every key is checked: an unknown key is an error
that names the key, the file and the closest valid key; a key given twice is an error that names
both lines; a value of the wrong type (or an infinite or NaN float) is an error that names the flag.
``--set a.b=value`` overrides are parsed as YAML scalars and go through the same checks.
Every field is documented where it is declared below (a comment above it or at the end of its line):
this file is the reference for recipes. Cross-field rules live in each dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from .errors import ConfigError

BUILTIN_PREFIX = "builtin:"


def _check(ok: bool, message: str) -> None:
    # Not `assert`: user input must be validated even under `python -O`.
    if not ok:
        raise ConfigError(message)


@dataclass
class ColumnsConfig:
    """The ``data.columns:`` and ``embed.probe.columns:`` sections: where each field lives in a data file.

    A column name (files with a header, JSONL keys) or a 0-based index (headerless CSV/TSV).
    ``None`` means the file has no such column.

    The one column spec: the config sections that name columns (``data.columns``,
    ``embed.probe.columns``) hold it, and the readers (``xdistill.data.readers``) take it."""

    text: str | int = "text"  # the text column
    text_pair: str | int | None = None  # the second text of sentence-pair tasks (NLI, paraphrase); None: single texts
    label: str | int | None = "label"  # the label column of labelled files (unlabelled files ignore it)
    lang: str | int | None = None  # a per-row language code; None: the language the file is listed under
    # A row id: with data.exclude_dev_ids, pool rows whose id is a dev row's are dropped; None: no ids.
    id: str | int | None = None


@dataclass
class ParallelConfig:
    """One item of ``data.parallel:``, ``embed.eval_retrieval:`` or ``mt.eval:``: parallel text.

    One TSV (source column, target column) or two line-aligned files (line N translates line N)."""

    path: str = ""  # required: the TSV, or the source-side file with target_path (relative to data.dir)
    target_path: str | None = None  # the line-aligned target-side file; None: path is a TSV holding both sides
    lang: str = ""  # required: the language of the target (translation) side, e.g. es
    # TSV columns of the two sides: 0-based indexes, or names when the file has a header row
    # (read as one when both are names); unused with target_path.
    source_column: int | str = 0  # the source (data.source_lang) side
    target_column: int | str = 1  # the target (lang) side
    # Keep N pairs (None: all): in data.parallel a seeded draw (data.sample_seed) after decontamination;
    # in embed.eval_retrieval / mt.eval the first N (None there: mt.max_eval_pairs); decontamination
    # still bans the whole file.
    max_pairs: int | None = None
    name: str | None = None  # how reports call it (translation test sets: flores, tatoeba, ...)

    def __post_init__(self) -> None:
        _check(bool(self.path), "data.parallel[].path is required")
        _check(bool(self.lang), f"data.parallel[].lang is required for {self.path} (the target language, e.g. es)")


@dataclass
class DataConfig:
    """The ``data:`` section: languages, labels and the data files of every task (paths relative to ``dir``)."""

    # The folder every data path below is relative to (itself relative to the working directory);
    # "builtin:" is the bundled demo data.
    dir: str = "."
    source_lang: str = "en"  # the teacher's language: labelled training data, the source side of parallel text
    # The languages the student is evaluated in / transfers to; translation: exactly one (the output side).
    target_langs: list[str] = field(default_factory=list)
    # Classification: the label names, >= 2, in class-id order (class i is labels[i]); a file label must be
    # one of them after label_map.
    labels: list[str] = field(default_factory=list)
    label_map: dict[str, str | None] = field(default_factory=dict)  # raw file label -> a name in labels; null drops
    ordinal: bool = False  # the labels are ordered (1..5 stars): also report MAE; allows select_metric: mae
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)  # where text, label, ... are in the data files
    header: bool | None = None  # CSV/TSV files have a header row; None: yes when every column is given by name
    train: str = ""  # classification, required: the labelled source-language training file
    # Classification: {lang: labelled file}; per-epoch dev metrics and checkpoint selection (train.select_lang).
    dev: dict[str, str] = field(default_factory=dict)
    test: dict[str, str] = field(default_factory=dict)  # classification: {lang: labelled file} that evaluate scores
    # {lang: file} of text without labels. Classification: target-language text the teacher soft-labels
    # (distill.use_unlabelled); embedding: source-language text only, trained onto the teacher's embeddings.
    unlabelled: dict[str, str] = field(default_factory=dict)
    # Classification: {lang: labelled target-language file}, read for distill.transfer semi / supervised only.
    target_labelled: dict[str, str] = field(default_factory=dict)
    # Parallel text. Classification: the teacher reads the source side, the student the translation
    # (distill.use_parallel); embedding: the training data; translation: the reference pairs.
    parallel: list[ParallelConfig] = field(default_factory=list)
    # Classification leak checks on the pools (train, unlabelled, target_labelled, parallel): drop rows whose
    # id (columns.id) is a dev row's id in the same language, and texts that occur in a data.test file.
    exclude_dev_ids: bool = True  # drop pool rows that are dev rows, by id (rows without an id stay)
    exclude_test_texts: bool = True  # drop pool texts found in a test file (NFKC, case and spaces ignored)
    # Caps (None: everything), each a seeded draw of N rows (data.sample_seed); pools after the leak checks.
    max_train: int | None = None  # rows of data.train
    max_unlabelled: int | None = None  # rows of each data.unlabelled file (embedding: of the source text)
    max_target_labelled: int | None = None  # rows of each data.target_labelled file (after k_per_class)
    max_dev: int | None = None  # rows of each data.dev file
    max_test: int | None = None  # rows of each data.test file
    # Keep only the first N rows of each label of every dev file: a few-label run (k per class)
    # selects on about k per class, as it would in practice, not on hundreds of labels.
    dev_per_class: int | None = None
    # Subsets (max_*) are drawn with their own seed, so runs that differ only in the training
    # seed see the same data and share cached teacher outputs (embedding and translation runs
    # also draw their held-out and dev pairs with it).
    sample_seed: int = 13

    def __post_init__(self) -> None:
        # data.train and data.labels are required by classification runs only; RunConfig checks
        # them once the task is known (an embedding run trains on data.parallel instead).
        _check(len(set(self.labels)) == len(self.labels), f"data.labels has duplicates: {self.labels}")
        for raw, name in self.label_map.items():
            _check(
                name is None or name in self.labels,
                f"data.label_map maps {raw!r} to {name!r}, which is not in data.labels {self.labels}",
            )
        _check(
            self.source_lang not in self.target_langs,
            f"data.target_langs must not contain the source language {self.source_lang!r}",
        )
        for key in ("max_train", "max_unlabelled", "max_target_labelled", "max_dev", "max_test", "dev_per_class"):
            value = getattr(self, key)
            _check(value is None or value > 0, f"data.{key} must be > 0 or null, got {value}")

    def resolve(self, path: str) -> Path:
        """Data paths are relative to ``data.dir`` (a relative ``data.dir`` to the working directory);
        ``builtin:`` means the bundled demo data."""
        return resolve_path(path, self.dir)

    def check_classification(self) -> None:
        _check(bool(self.train), "data.train is required: the labelled source-language file")
        _check(len(self.labels) >= 2, "data.labels needs at least two label names, e.g. [negative, positive]")

    @property
    def languages(self) -> list[str]:
        return [self.source_lang] + [lang for lang in self.target_langs if lang != self.source_lang]


@dataclass
class TrainConfig:
    """The ``train:`` section (the student) and ``teacher.train:`` (the teacher stage): one training loop.

    Every model xdistill trains goes through it: classification teacher fine-tuning and students,
    embedding students, translation teachers and students."""

    epochs: float = 3.0  # passes over the training data; fractions allowed (0.5 = half an epoch)
    batch_size: int = 16  # examples per optimizer step (the global batch, split across processes)
    # Classification: texts per forward pass when predicting dev/test sets and caching teacher outputs
    # (the top-level train.eval_batch_size is the one read; embed / mt have their own).
    eval_batch_size: int = 64
    lr: float = 5e-5  # peak AdamW learning rate: linear warm-up, then linear decay to 0
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and norm weights)
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming the learning rate up, in [0, 1)
    grad_clip: float = 1.0  # max gradient L2 norm; 0 turns clipping off
    max_steps: int | None = None  # optimizer steps; None: epochs x batches per epoch (set, it overrides epochs)
    # The dev metric that picks the saved checkpoint (best epoch): classification accuracy, macro_f1, mae
    # (data.ordinal), agreement (with the teacher, students only) or teacher_kl (students only: the mean
    # KL from the teacher's class distribution, lowest wins; reads no dev label, and unlike accuracy on a
    # few dozen dev texts it rarely ties); translation chrf or bleu (the default
    # accuracy becomes chrf there); embedding mse (the dev MSE to the teacher, the default there) or
    # retrieval (the worst target language's dev translation retrieval).
    select_metric: str = "accuracy"
    # Classification: the dev language selection uses; None: data.source_lang; "targets": the mean over
    # data.target_langs (each needs a data.dev file).
    select_lang: str | None = None
    # Classification students: further copies selected on these languages (or "targets"), saved as
    # RUN_DIR/student-selected-on-LANG/.
    also_select_langs: list[str] = field(default_factory=list)
    log_every: int = 10  # optimizer steps between loss records in metrics.jsonl
    # Optimizer steps between extra dev evaluations within an epoch (each may save the best model, as
    # at epoch ends; each record carries train_seconds: a learning curve); None: at epoch ends only.
    eval_every: int | None = None
    group_by_length: bool = True  # batches of similar-length examples (much less padding); False: plain shuffle
    seed: int | None = None  # the training loop's seed (batch order, dropout); None: the top-level seed
    # Resume: a checkpoint (model, optimizer, scheduler, RNG states, data position) is written at
    # every epoch end and, with this set, every N optimizer steps; `--resume auto` continues from it.
    checkpoint_every: int | None = None
    # torch.use_deterministic_algorithms: same seed + same machine -> the same weights bit for bit,
    # at some speed cost (CPU kernels are mostly deterministic already; GPUs lose more).
    deterministic: bool = False

    def __post_init__(self) -> None:
        _check(
            self.checkpoint_every is None or self.checkpoint_every > 0,
            f"train.checkpoint_every must be > 0 or null, got {self.checkpoint_every}",
        )
        _check(self.epochs > 0, f"train.epochs must be > 0, got {self.epochs}")
        _check(self.batch_size > 0, f"train.batch_size must be > 0, got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(0 <= self.warmup_ratio < 1, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.max_steps is None or self.max_steps > 0, f"train.max_steps must be > 0, got {self.max_steps}")
        _check(
            self.eval_every is None or self.eval_every > 0,
            f"train.eval_every must be > 0 or null, got {self.eval_every}",
        )
        _check(
            self.select_metric
            in ("accuracy", "macro_f1", "mae", "agreement", "teacher_kl", "chrf", "bleu", "mse", "retrieval"),
            f"train.select_metric must be accuracy, macro_f1, mae, agreement, teacher_kl (classification), chrf, bleu "
            f"(translation) or mse, retrieval (embedding), got {self.select_metric!r}",
        )


@dataclass
class TeacherConfig:
    """The ``teacher:`` section: the model the student learns from, and how the teacher stage trains it."""

    # A local model folder (relative to the working directory). Classification: a Hugging Face encoder
    # that gets a classification head and is fine-tuned on data.train (or, with finetune: false, an xdistill
    # classifier folder or a fine-tuned HF ...ForSequenceClassification folder used as it is); embedding: a sentence-transformers or HF folder, or package:NAME,
    # used as it is; translation: an HF seq2seq folder, or empty (with no command) for a teacher xdistill
    # trains from data.parallel (mt.teacher_model). "random:tiny" builds a tiny random encoder
    # (classification and embedding smoke runs).
    path: str = ""
    # Translation only: a black-box teacher, a command that reads source lines on stdin and writes
    # one translation per line on stdout (e.g. "apertium -u eng-spa"); it runs through /bin/sh only
    # when it uses shell syntax (pipes, redirects, $VARS, ...).
    command: str | None = None
    # Embedding: token states -> sentence vector (mean over tokens or the first [CLS] token), used only
    # when the teacher folder records no pooling. Classification pools as the architecture's native
    # ...ForSequenceClassification head does (BERT: [CLS] + pooler), so saved models load in pipeline().
    pooling: Literal["mean", "cls"] = "mean"
    # Prepended to every input text (e5: "query: "). Classification: written into the teacher's tokenizer
    # (and so the student's), so every loader of the saved folders applies it; embedding: "" means the
    # teacher folder's own prefix.
    text_prefix: str = ""
    # Tokens per input, longer ones truncated (8..8192): the teacher's, the student's unless
    # student.max_length, and embed.references'; translation uses mt.max_length instead.
    max_length: int = 128
    dropout: float = 0.1  # classification: dropout before the classification head (teacher and student)
    # Classification: fine-tune teacher.path into RUN_DIR/teacher; false: teacher.path is already a
    # fine-tuned xdistill classifier, or an HF sequence-classification folder whose id2label names match
    # data.labels (ignoring case and order; its logits are reordered to data.labels), used as it is.
    finetune: bool = True
    # Classification: keep the word embeddings fixed while fine-tuning on source labels (keeps zero-shot
    # transfer; less optimizer memory).
    freeze_embeddings: bool = True
    # The teacher stage's training loop: classification fine-tuning, the translation teacher xdistill trains.
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(8 <= self.max_length <= 8192, f"teacher.max_length must be in [8, 8192], got {self.max_length}")


@dataclass
class StudentConfig:
    """The ``student:`` section: the classification or embedding student (translation: ``mt.student``)."""

    # teacher: copy `layers` of the teacher (or of `base`) with their weights; random: random weights in
    # the same architecture, sized by num_layers, hidden_size, num_heads, ffn_size.
    init: Literal["teacher", "random"] = "teacher"
    layers: list[int] = field(default_factory=lambda: [0, 6, 11])  # init teacher: 0-based layers to copy, in order
    num_layers: int | None = None  # init random, required: the number of layers (unused with init teacher)
    hidden_size: int | None = None  # init random: the width; None: the teacher's
    num_heads: int | None = None  # init random: attention heads (must divide hidden_size); None: the teacher's
    ffn_size: int | None = None  # init random: the feed-forward width; None: 4 x hidden_size
    # The model whose layers and vocabulary initialise the student when it is not the teacher
    # (embedding runs: an English-only teacher, a multilingual base such as models/e5-small).
    base: str | None = None
    # Keep only the vocabulary pieces that occur in the student's training text, every language
    # (e5-small: 96M of its 117M parameters are word embeddings).
    trim_vocab: bool = True
    # With trim_vocab: keep a piece only if it occurs at least N times (special and single-character
    # pieces are always kept).
    vocab_min_count: int = 1
    # With trim_vocab: also keep the N pieces the tokenizer ranks most frequent (Unigram scores) among
    # those written in the training text's scripts (Latin, CJK, ...), so text unlike the training text
    # (another domain, words it lacks) is still cut into the teacher's pieces; 0: none. The shipped recipes
    # set 20000 (what it buys on text of another genre: scripts/vocab_coverage.py, README).
    vocab_keep_top: int = 0
    # Classification students: keep the copied word embeddings fixed (the teacher's multilingual
    # vectors) instead of training them on the few texts distillation sees.
    freeze_embeddings: bool = False
    max_length: int | None = None  # tokens per student input; None: teacher.max_length

    def __post_init__(self) -> None:
        if self.init == "teacher":
            _check(bool(self.layers), "student.layers must list the teacher layers to copy, e.g. [0, 6, 11]")
            _check(min(self.layers) >= 0, f"student.layers must be >= 0, got {self.layers}")
            for key in ("hidden_size", "num_heads", "ffn_size"):
                _check(
                    getattr(self, key) is None,
                    f"student.{key} is set but student.init is 'teacher' (a copied student keeps the "
                    f"teacher's widths); remove student.{key} or set student.init: random",
                )
        else:
            _check(
                self.num_layers is not None and self.num_layers > 0,
                "student.num_layers is required when student.init is 'random'",
            )
        if self.hidden_size is not None and self.num_heads is not None:
            _check(
                self.hidden_size % self.num_heads == 0,
                f"student.hidden_size ({self.hidden_size}) must be divisible by student.num_heads ({self.num_heads})",
            )
        _check(self.vocab_min_count >= 1, f"student.vocab_min_count must be >= 1, got {self.vocab_min_count}")
        _check(self.vocab_keep_top >= 0, f"student.vocab_keep_top must be >= 0, got {self.vocab_keep_top}")


@dataclass
class DistillConfig:
    """The ``distill:`` section: the classification student's losses and data (translation reads only use_teacher)."""

    # unsupervised: no target labels (source labels + teacher soft labels on target text and parallel
    # pairs); semi: + k_per_class labels per class from data.target_labelled; supervised: + all of them.
    transfer: Literal["unsupervised", "semi", "supervised"] = "unsupervised"
    # false: the no-distillation baseline, hard labels only, as many optimizer steps as the distilled
    # student (translation: trained on the references alone).
    use_teacher: bool = True
    temperature: float = 2.0  # softmax temperature T of the soft targets (the KL is scaled by T^2)
    alpha: float = 0.5  # loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher || student), in [0, 1]
    # Hidden-state MSE on the layer_map pairs (a learned projection when the widths differ); 0: off.
    # Costs a teacher forward pass per batch; applies where teacher and student read the same tokens.
    hidden_weight: float = 0.0
    # MSE between the student's and the teacher's pooled sentence embeddings (cached with the
    # logits, so unlike hidden/attention losses it costs no teacher forward pass during training).
    embedding_weight: float = 0.0
    attention_weight: float = 0.0  # attention-map KL on the layer_map pairs (both > 0); 0: off
    # [[student, teacher], ...] hidden-state indices (0: the embeddings, i: the output of layer i);
    # None: a copied student mirrors student.layers, a random one spreads over the teacher uniformly.
    layer_map: list[list[int]] | None = None
    k_per_class: int = 16  # transfer semi: the first k rows of each label of every data.target_labelled file
    use_source: bool = True  # train on data.train (labels + soft labels); always on without the teacher
    use_unlabelled: bool = True  # teacher soft labels on data.unlabelled (teacher and student read the same text)
    use_parallel: bool = True  # data.parallel: the teacher reads the source side, the student the translation
    # Multi-teacher distillation: more fine-tuned classifier folders (xdistill teachers, e.g. trained
    # with other seeds, or HF sequence-classification checkpoints, e.g. a per-language teacher) whose
    # class probabilities are averaged with the run's teacher's into the soft targets. Each one's
    # outputs are cached like the run's teacher's; hidden-state, attention and embedding losses
    # still read the run's teacher alone.
    extra_teachers: list[str] = field(default_factory=list)
    # Weights of [the run's teacher, *extra_teachers] in that average (normalised); empty: equal.
    teacher_weights: list[float] = field(default_factory=list)
    # Translation-augmented transfer: {lang: translator}. data.train's texts, translated into lang,
    # become extra target-language text the teacher labels (soft labels only, like data.unlabelled).
    # A translator is a local HF seq2seq folder, or a command that reads source lines on stdin and
    # writes one translation per line (e.g. "apertium -u eng-spa"); translations are cached in cache_dir.
    translate_source: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.teacher_weights:
            _check(
                len(self.teacher_weights) == 1 + len(self.extra_teachers),
                f"distill.teacher_weights needs one weight for the run's teacher and one per distill.extra_teachers "
                f"({1 + len(self.extra_teachers)} in all), got {len(self.teacher_weights)}",
            )
            _check(
                all(w >= 0 for w in self.teacher_weights) and sum(self.teacher_weights) > 0,
                f"distill.teacher_weights must be >= 0 and not all 0, got {self.teacher_weights}",
            )
        _check(self.temperature > 0, f"distill.temperature must be > 0, got {self.temperature}")
        _check(0 <= self.alpha <= 1, f"distill.alpha must be in [0, 1], got {self.alpha}")
        _check(self.hidden_weight >= 0, f"distill.hidden_weight must be >= 0, got {self.hidden_weight}")
        _check(self.embedding_weight >= 0, f"distill.embedding_weight must be >= 0, got {self.embedding_weight}")
        _check(self.attention_weight >= 0, f"distill.attention_weight must be >= 0, got {self.attention_weight}")
        _check(self.k_per_class > 0, f"distill.k_per_class must be > 0, got {self.k_per_class}")
        if self.layer_map is not None:
            _check(
                all(len(pair) == 2 for pair in self.layer_map),
                f"distill.layer_map must be a list of [student_layer, teacher_layer] pairs, got {self.layer_map}",
            )
        if not self.use_teacher:
            _check(
                self.hidden_weight == 0 and self.attention_weight == 0 and self.embedding_weight == 0,
                "distill.use_teacher is false, so distill.hidden_weight, distill.attention_weight and "
                "distill.embedding_weight must be 0",
            )


@dataclass
class EvaluateConfig:
    """The ``evaluate:`` section: what the evaluate stage scores and how it times the models."""

    split: Literal["test", "dev"] = "test"  # classification: score the data.test or the data.dev files
    # Time every model: latency at batch 1 and throughput at batch 32 (translation: sentences and
    # tokens/s at batch 32, greedy and beam); false: quality metrics only.
    speed: bool = True
    threads: int = 2  # CPU threads the speed measurement runs on
    repeats: int = 5  # timed calls per batch size (after warm-up calls); the median is reported

    def __post_init__(self) -> None:
        _check(self.threads > 0, f"evaluate.threads must be > 0, got {self.threads}")
        _check(self.repeats >= 1, f"evaluate.repeats must be >= 1, got {self.repeats}")


@dataclass
class ProbeConfig:
    """The ``embed.probe:`` section: a downstream transfer check of an embedding model.

    A logistic regression trained on embeddings of labelled source-language texts, applied to each
    language's test file. Paths are relative to ``data.dir``; draws use ``data.sample_seed``."""

    # Required: the labelled source-language file (rows whose text is in a probe test file are dropped).
    train: str = ""
    # Required: {lang: labelled file}; these texts are also kept out of the embedding training data.
    test: dict[str, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # required, >= 2: the label names, in class-id order
    label_map: dict[str, str | None] = field(default_factory=dict)  # raw file label -> a name in labels; null drops
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)  # only text and label are read
    header: bool | None = None  # CSV/TSV files have a header row; None: yes when the columns are names
    max_train: int | None = None  # a seeded draw of N training rows; None: all
    max_test: int | None = None  # a seeded draw of N rows of each test file; None: all
    c: float = 1.0  # inverse regularisation strength of the logistic regression

    def __post_init__(self) -> None:
        _check(bool(self.train), "embed.probe.train is required: the labelled source-language file")
        _check(bool(self.test), "embed.probe.test needs at least one file, e.g. {en: ..., es: ...}")
        _check(len(self.labels) >= 2, "embed.probe.labels needs at least two label names")
        for raw, name in self.label_map.items():
            _check(
                name is None or name in self.labels,
                f"embed.probe.label_map maps {raw!r} to {name!r}, which is not in embed.probe.labels {self.labels}",
            )
        for key in ("max_train", "max_test"):
            value = getattr(self, key)
            _check(value is None or value > 0, f"embed.probe.{key} must be > 0 or null, got {value}")
        _check(self.c > 0, f"embed.probe.c must be > 0, got {self.c}")


@dataclass
class ReferenceModelConfig:
    """One ``embed.references.<name>:`` entry: a model evaluated next to teacher and student.

    For comparison, e.g. multilingual-e5-small; ``<name>`` is its name in the report."""

    path: str = ""  # required: a sentence-transformers / HF folder or package:NAME (relative to the working dir)
    text_prefix: str | None = None  # None: the folder's own (xdistill_model.json), else none
    pooling: Literal["mean", "cls"] | None = None  # None: the folder's own, else mean
    normalize: bool | None = None  # L2-normalise the embeddings; None: as the folder says (else not)

    def __post_init__(self) -> None:
        _check(bool(self.path), "embed.references.<name>.path is required")


@dataclass
class EmbedConfig:
    """The ``embed:`` section (``task: embedding`` only): what is held out, the losses, the evaluation."""

    # Translation retrieval sets (FLORES-200 devtest): both sides of every pair are also removed
    # from the training data (decontamination).
    eval_retrieval: list[ParallelConfig] = field(default_factory=list)
    # Per target language, pairs taken out of the training data: `heldout_pairs` for the reported
    # MSE to the teacher, `dev_pairs` for per-epoch dev metrics and checkpoint selection.
    heldout_pairs: int = 500  # per target language, >= 0: for the reported MSE to the teacher
    dev_pairs: int = 200  # per target language, >= 0: for dev metrics and checkpoint selection
    # Drop every training pair or source text that occurs in an evaluation set (eval_retrieval, the
    # probe's test files; compared NFKC, case-folded, whitespace collapsed); false: no such check.
    decontaminate: bool = True
    # L2-normalise the teacher's embeddings, and so the student's (it follows the teacher):
    normalize: bool | None = None  # None: as the teacher folder says (sentence-transformers Normalize)
    # Prepended to every student input (e.g. "query: " with an e5 base); its pieces survive trim_vocab.
    student_prefix: str = ""
    # Optional in-batch translation ranking term added to the MSE (0 = the plain MSE recipe).
    ranking_weight: float = 0.0
    ranking_scale: float = 20.0  # the ranking term's scale on cosine similarities (an inverse temperature)
    probe: ProbeConfig | None = None  # the linear-probe transfer check; None: no probe
    # {name: model} evaluated next to teacher and student; the names teacher and student are taken.
    references: dict[str, ReferenceModelConfig] = field(default_factory=dict)
    eval_batch_size: int = 64  # texts per forward pass: teacher embeddings, dev metrics, evaluation

    def __post_init__(self) -> None:
        for key in ("heldout_pairs", "dev_pairs"):
            _check(getattr(self, key) >= 0, f"embed.{key} must be >= 0, got {getattr(self, key)}")
        _check(self.eval_batch_size > 0, f"embed.eval_batch_size must be > 0, got {self.eval_batch_size}")
        _check(self.ranking_weight >= 0, f"embed.ranking_weight must be >= 0, got {self.ranking_weight}")
        _check(self.ranking_scale > 0, f"embed.ranking_scale must be > 0, got {self.ranking_scale}")
        for name in self.references:
            _check(
                name not in ("teacher", "student"),
                f"embed.references.{name}: 'teacher' and 'student' are the run's own models; pick another name",
            )


@dataclass
class MonolingualConfig:
    """One item of ``mt.monolingual:``: source-language text without translations; the teacher translates it."""

    path: str = ""  # required: the file, relative to data.dir
    # None: column 0 (csv/tsv; a JSONL file needs the key name).
    column: str | int | None = None  # csv/tsv/jsonl: the text column; .txt: one text per line
    header: bool | None = None  # csv/tsv has a header row; None: yes when column is a name
    # None: from the extension, and plain text (one sentence per line) for names like
    # newstest2010.en or eng_Latn.devtest that have no csv/tsv/jsonl/txt extension.
    format: Literal["csv", "tsv", "jsonl", "txt"] | None = None
    max_lines: int | None = None  # a seeded draw of N distinct lines after decontamination; None: all

    def __post_init__(self) -> None:
        _check(bool(self.path), "mt.monolingual[].path is required")
        _check(
            self.max_lines is None or self.max_lines > 0,
            f"mt.monolingual[].max_lines must be > 0 or null, got {self.max_lines} ({self.path})",
        )


@dataclass
class Seq2SeqArchConfig:
    """The ``mt.student:`` and ``mt.teacher_model:`` sections: the architecture of a translation model.

    A Marian-style transformer built from these sizes (``MarianMTModel``), or, with ``init_encoder``,
    a BART warm-started from a pretrained BERT-style encoder.

    ``init_encoder``: a folder or ``package:NAME`` (e.g. ``models/e5-small``); its trimmed vocabulary,
    embeddings and ``encoder_layer_ids`` (all when empty) become the encoder, and the sizes above
    other than ``decoder_layers``/``heads``/``ffn_size`` come from it. ``decoder_layer_ids`` start
    the decoder from those encoder layers (then they also set its sizes). ``freeze_encoder`` trains
    the decoder only (the encoder and the shared embeddings stay as loaded): much cheaper per step.
    """

    encoder_layers: int = 3  # from scratch only (warm-started: the number of encoder_layer_ids)
    decoder_layers: int = 3  # decoder layers (with decoder_layer_ids: their number instead)
    d_model: int = 256  # the model width, from scratch only (warm-started: the encoder's)
    ffn_size: int = 1024  # feed-forward width (warm-started: the decoder's, unless decoder_layer_ids)
    heads: int = 4  # attention heads, must divide d_model (warm-started: the decoder's, unless decoder_layer_ids)
    dropout: float = 0.1  # dropout in every layer, in [0, 1)
    max_positions: int = 256  # learned positions, from scratch only (at least mt.max_length + 2 are made)
    init_encoder: str = ""  # a BERT-style encoder folder or package:NAME to warm-start from; "": from scratch
    encoder_layer_ids: list[int] = field(default_factory=list)  # 0-based init_encoder layers to copy; []: all
    decoder_layer_ids: list[int] = field(default_factory=list)  # init_encoder layers that start the decoder; []: random
    freeze_encoder: bool = False  # train the decoder only (encoder and shared embeddings stay as loaded)
    # With freeze_encoder: the output layer becomes its own copy of the embeddings and is trained too
    # (else it stays tied to the frozen embeddings).
    train_output_layer: bool = False

    def __post_init__(self) -> None:
        _check(
            bool(self.init_encoder) or not (self.encoder_layer_ids or self.decoder_layer_ids or self.freeze_encoder),
            "mt encoder_layer_ids / decoder_layer_ids / freeze_encoder need init_encoder (a pretrained encoder "
            "folder such as models/e5-small)",
        )
        _check(
            self.freeze_encoder or not self.train_output_layer,
            "mt train_output_layer is for a frozen encoder (freeze_encoder: true); without it the output "
            "layer, tied to the embeddings, is trained already",
        )
        for key in ("encoder_layers", "decoder_layers", "d_model", "ffn_size", "heads", "max_positions"):
            _check(getattr(self, key) > 0, f"mt model sizes must be > 0: {key} is {getattr(self, key)}")
        _check(self.d_model % self.heads == 0, f"mt d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        _check(0 <= self.dropout < 1, f"mt dropout must be in [0, 1), got {self.dropout}")


@dataclass
class Decoding:
    """The ``mt.decoding:`` section: how a translation model decodes (a length bound, a repetition guard).

    Small, briefly trained translation models fall into loops ("no no no no ..."). Left alone, one
    looping sentence keeps its whole batch decoding until ``max_length``: the scores count the loop
    as output and the speed measures the loop. Two standard guards, applied the same way to every
    neural model xdistill decodes (PyTorch teacher, student and the CTranslate2 export):

    - a length bound per batch, ``ceil(length_ratio * longest source + length_extra)`` target tokens,
      capped by the model's ``max_length`` (fairseq's ``--max-len-a`` / ``--max-len-b``);
    - ``no_repeat_ngram_size``: no n-gram twice in one output (``generate`` and CTranslate2 both
      implement it); 0 turns it off. ``repetition_penalty`` (CTRL, Keskar et al. 2019) is the
      softer alternative; 1.0 turns it off.

    The settings are saved with every translation model in ``xdistill_model.json`` (``decoding``) and
    its ``generation_config.json`` (the n-gram guard and penalty, so ``from_pretrained(...).generate``
    uses them too).
    """

    length_ratio: float = 1.5  # target tokens per token of the batch's longest source, > 0 (--max-len-a)
    length_extra: int = 10  # target tokens added to that bound, >= 0 (--max-len-b)
    no_repeat_ngram_size: int = 0  # no n-gram of this size twice in one output; 0: off
    repetition_penalty: float = 1.0  # CTRL penalty on tokens already generated, >= 1.0; 1.0: off

    def __post_init__(self) -> None:
        if self.length_ratio <= 0:
            raise ConfigError(f"mt.decoding.length_ratio must be > 0, got {self.length_ratio}")
        if self.length_extra < 0:
            raise ConfigError(f"mt.decoding.length_extra must be >= 0, got {self.length_extra}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(
                f"mt.decoding.no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}"
            )
        if self.repetition_penalty < 1.0:
            raise ConfigError(
                f"mt.decoding.repetition_penalty must be >= 1.0 (1.0 = off), got {self.repetition_penalty}"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Decoding:
        """From a saved ``decoding`` entry; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def max_new_tokens(self, source_lengths: Sequence[int], cap: int) -> int:
        """Target tokens a batch may produce: tied to its longest source, never above ``cap``."""
        longest = max(source_lengths, default=0)
        return max(1, min(cap, math.ceil(self.length_ratio * longest + self.length_extra)))


@dataclass
class TranslateConfig:
    """The ``mt:`` section (``task: translation`` only): seq-KD / word-KD from any teacher into a small student.

    The teacher is ``teacher.command`` (a black box), ``teacher.path`` (a local seq2seq folder) or,
    with neither, a Marian-style model xdistill trains in the teacher stage from ``data.parallel``.
    """

    # Source-language text the teacher translates for sequence-level KD (Kim & Rush 2016).
    monolingual: list[MonolingualConfig] = field(default_factory=list)
    # Test sets (never trained on: both sides are removed from every training source first).
    eval: list[ParallelConfig] = field(default_factory=list)
    dev_pairs: int = 200  # reference pairs held out for per-epoch chrF and checkpoint selection
    # Drop every training pair or monolingual sentence whose source or target side occurs in an mt.eval set.
    decontaminate: bool = True
    seqkd: bool = True  # train on the teacher's translations of every training source
    # With a teacher: also train on the reference translations of data.parallel. Without one
    # (distill.use_teacher: false, the reference baseline) the references are the training data.
    use_references: bool = True
    # loss = (1 - w) * CE + w * T^2 * KL, in [0, 1]; 0: off; needs teacher.path or a teacher xdistill trains.
    word_kd_weight: float = 0.0  # token-level KL to a white-box teacher sharing the vocabulary
    word_kd_temperature: float = 1.0  # the softmax temperature T of that KL, > 0
    label_smoothing: float = 0.1  # on the token cross-entropy (standard for transformer MT)
    # On-policy distillation (GKD, Agarwal et al. 2024): the share of training steps on which the
    # student samples its own translations of the batch's sources and is trained towards the
    # teacher's token distributions on them (generalised JSD); the other steps train on the batch's
    # targets as usual (seq-KD / references). Needs a white-box teacher sharing the vocabulary. 0: off.
    on_policy_ratio: float = 0.0
    on_policy_beta: float = 0.5  # the JSD's mixing weight β in (0, 1): ~forward KL near 0, ~reverse KL near 1
    on_policy_temperature: float = 1.0  # sampling temperature of the student's translations and of the JSD, > 0
    teacher_beam: int = 4  # beam size of the teacher's seq-KD translations
    eval_beam: int = 4  # beam size for the reported test scores and speed (teacher and student)
    max_length: int = 128  # tokens, source and target
    vocab_size: int = 8000  # the student's tokenizer, trained on its training corpus (joint en+target)
    student: Seq2SeqArchConfig = field(default_factory=Seq2SeqArchConfig)  # the student's architecture
    # The teacher xdistill trains when neither teacher.path nor teacher.command is set.
    teacher_model: Seq2SeqArchConfig = field(
        default_factory=lambda: Seq2SeqArchConfig(
            encoder_layers=6, decoder_layers=3, d_model=384, ffn_size=1536, heads=6
        )
    )
    command_batch_size: int = 256  # lines per call of a black-box teacher command
    command_timeout_s: float = 300.0  # per call; a hung command fails with a clear error
    # Sentences per decoding batch: a folder teacher's seq-KD translations, dev chrF, test sets (speed: 32).
    eval_batch_size: int = 32
    max_eval_pairs: int | None = None  # first N pairs of each test set (quick runs)
    # Length bound and repetition guard of every neural decode (seq-KD, dev, test, speed); saved with the models.
    decoding: Decoding = field(default_factory=Decoding)
    # Models built from scratch (no init_encoder): one vocabulary per side (a MarianTokenizer over two
    # sentencepiece models, separate encoder/decoder embeddings) instead of one joint vocabulary.
    separate_vocabs: bool = False

    def __post_init__(self) -> None:
        for key in ("teacher_beam", "eval_beam", "max_length", "vocab_size", "command_batch_size", "eval_batch_size"):
            _check(getattr(self, key) > 0, f"mt.{key} must be > 0, got {getattr(self, key)}")
        _check(self.dev_pairs >= 0, f"mt.dev_pairs must be >= 0, got {self.dev_pairs}")
        _check(self.command_timeout_s > 0, f"mt.command_timeout_s must be > 0, got {self.command_timeout_s}")
        _check(0 <= self.word_kd_weight <= 1, f"mt.word_kd_weight must be in [0, 1], got {self.word_kd_weight}")
        _check(0 <= self.label_smoothing < 1, f"mt.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(self.word_kd_temperature > 0, f"mt.word_kd_temperature must be > 0, got {self.word_kd_temperature}")
        _check(0 <= self.on_policy_ratio <= 1, f"mt.on_policy_ratio must be in [0, 1], got {self.on_policy_ratio}")
        _check(0 < self.on_policy_beta < 1, f"mt.on_policy_beta must be in (0, 1), got {self.on_policy_beta}")
        _check(
            self.on_policy_temperature > 0, f"mt.on_policy_temperature must be > 0, got {self.on_policy_temperature}"
        )
        _check(self.vocab_size >= 100, f"mt.vocab_size must be >= 100, got {self.vocab_size}")


@dataclass
class RunConfig:
    """The top level of a run's YAML: the run's own keys and one entry per section (data:, teacher:, ...)."""

    data: DataConfig  # required section
    teacher: TeacherConfig  # required section
    name: str = "run"  # a label for the run, kept in its saved config (files go to run_dir)
    # Which pipeline runs: a classifier (labels), a sentence encoder (parallel text), a translator.
    task: Literal["classification", "embedding", "translation"] = "classification"
    # Where models, logs, results and reports go (relative to the working directory); one process at a time.
    run_dir: str = "runs/run"
    # Shared across runs (relative to the working directory): cached teacher outputs and translations,
    # keyed by teacher weights + inputs + settings, resumable after a kill; random: teachers; file fingerprints.
    cache_dir: str = ".xdistill-cache"
    # Seeds heads, projections and random students before training, every training loop without its own
    # train.seed, random: teachers and the probe; data draws use data.sample_seed.
    seed: int = 13
    student: StudentConfig = field(default_factory=StudentConfig)  # classification and embedding
    distill: DistillConfig = field(default_factory=DistillConfig)  # classification (translation: use_teacher)
    train: TrainConfig = field(default_factory=TrainConfig)  # the student's training loop, every task
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # every task
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # task: embedding only
    mt: TranslateConfig = field(default_factory=TranslateConfig)  # task: translation only

    def __post_init__(self) -> None:
        if self.task == "translation":
            self._check_translation()
            return
        _check(bool(self.teacher.path), "teacher.path is required: a local Hugging Face encoder folder")
        _check(self.teacher.command is None, "teacher.command is for task: translation only; use teacher.path")
        if self.task == "embedding":
            self._check_embedding()
        else:
            self.data.check_classification()
            # A metric the dev evaluation never reports would select nothing, and no student would be saved.
            for flag, train, extra in (
                ("train", self.train, ("agreement", "teacher_kl")),
                ("teacher.train", self.teacher.train, ()),
            ):
                allowed = ("accuracy", "macro_f1", *(("mae",) if self.data.ordinal else ()), *extra)
                _check(
                    train.select_metric in allowed,
                    f"task is 'classification': {flag}.select_metric must be one of {', '.join(allowed)}, "
                    f"got {train.select_metric!r}"
                    + (" (mae needs data.ordinal: true)" if train.select_metric == "mae" else ""),
                )
        langs = self.data.languages
        if self.distill.transfer in ("semi", "supervised"):
            missing = [lang for lang in self.data.target_langs if lang not in self.data.target_labelled]
            _check(
                not missing,
                f"distill.transfer is {self.distill.transfer!r} but data.target_labelled has no file for {missing}; "
                "add one per target language or use distill.transfer: unsupervised",
            )
        # "targets" selects on the mean over the target languages' dev sets.
        choices = langs + ["targets"]
        for cfg_name, train in (("train", self.train), ("teacher.train", self.teacher.train)):
            for flag, lang in [("select_lang", train.select_lang)] + [
                ("also_select_langs", x) for x in train.also_select_langs
            ]:
                _check(
                    lang is None or lang in choices,
                    f"{cfg_name}.{flag} is {lang!r}, not one of the run's languages {langs} or 'targets'",
                )
                needed = self.data.target_langs if lang == "targets" else [lang or self.data.source_lang]
                missing = [x for x in needed if x not in self.data.dev]
                _check(
                    not self.data.dev or not missing,
                    f"{cfg_name}.{flag} is {lang or self.data.source_lang!r} but data.dev has no file for {missing}; "
                    f"add data.dev entries or change {cfg_name}.{flag}",
                )
        if self.student.init == "teacher" and self.distill.layer_map is not None:
            n = len(self.student.layers)
            _check(
                all(0 <= s <= n for s, _ in self.distill.layer_map),
                f"distill.layer_map student indices must be in [0, {n}] (student has {n} layers)",
            )

    def _check_embedding(self) -> None:
        src = self.data.source_lang
        if self.train.select_metric == "accuracy":  # the classification default: embedding selects on dev MSE
            self.train.select_metric = "mse"
        _check(
            self.train.select_metric in ("mse", "retrieval"),
            f"task is 'embedding': train.select_metric must be mse or retrieval, got {self.train.select_metric!r}",
        )
        _check(
            bool(self.data.parallel) or src in self.data.unlabelled,
            "task is 'embedding' but data.parallel is empty: list the parallel files "
            "(- {path: ..., target_path: ..., lang: es}) the student learns from",
        )
        for par in self.data.parallel:
            _check(
                par.lang != src,
                f"data.parallel: {par.path} has lang {par.lang!r}, the source language; "
                "lang is the language of the translation side",
            )
        # The teacher reads only the source language: monolingual text in another language has no target.
        others = [lang for lang in self.data.unlabelled if lang != src]
        _check(
            not others,
            f"task is 'embedding': data.unlabelled may only hold {src!r} text (the teacher's language), got {others}",
        )
        seen: set[str] = set()
        for ev in self.embed.eval_retrieval:
            _check(
                ev.lang != src,
                f"embed.eval_retrieval: {ev.path} has lang {ev.lang!r}, the source language; "
                "lang is the language of the translation side",
            )
            _check(ev.lang not in seen, f"embed.eval_retrieval lists two sets for {ev.lang!r}; keep one per language")
            seen.add(ev.lang)
        # Teacher and student read different tokenisations of different texts (a translation), so
        # token-level losses have nothing to align: only the sentence-embedding MSE applies.
        _check(
            self.distill.hidden_weight == 0 and self.distill.attention_weight == 0,
            "task is 'embedding': distill.hidden_weight and distill.attention_weight must be 0 "
            "(teacher and student read different texts and tokenizers)",
        )

    def _check_translation(self) -> None:
        _check(
            len(self.data.target_langs) == 1,
            f"task is 'translation': data.target_langs needs exactly one language (the output side), "
            f"got {self.data.target_langs}; make one config per language pair",
        )
        target = self.data.target_langs[0]
        _check(
            not (self.teacher.path and self.teacher.command),
            "teacher.path and teacher.command are both set; a translation teacher is a seq2seq folder "
            "(teacher.path) or a command (teacher.command), not both",
        )
        for where, items in (("data.parallel", self.data.parallel), ("mt.eval", self.mt.eval)):
            for par in items:
                _check(
                    par.lang == target,
                    f"{where}: {par.path} has lang {par.lang!r} but the run translates "
                    f"{self.data.source_lang} -> {target}",
                )
        _check(
            bool(self.data.parallel) or bool(self.mt.monolingual),
            "task is 'translation' but there is no training text: list reference pairs in data.parallel "
            "and/or source-language text in mt.monolingual",
        )
        needs_references = (not self.teacher.path and not self.teacher.command) or not self.distill.use_teacher
        _check(
            not needs_references or bool(self.data.parallel),
            "this translation run trains on references (no teacher, or a teacher xdistill trains) but "
            "data.parallel is empty; list the parallel files",
        )
        built = [("mt.student", self.mt.student)]
        if not self.teacher.path and not self.teacher.command:  # xdistill trains the teacher too
            built.append(("mt.teacher_model", self.mt.teacher_model))
        for flag, arch in built:
            _check(
                not (self.mt.separate_vocabs and arch.init_encoder),
                f"mt.separate_vocabs needs models built from scratch, but {flag}.init_encoder is "
                f"{arch.init_encoder!r}: a warm-started model keeps the encoder's one vocabulary for both sides; "
                f"drop one of the two",
            )
        _check(
            self.mt.word_kd_weight == 0 or not self.teacher.command,
            "mt.word_kd_weight > 0 needs a white-box teacher (teacher.path or a trained one), not teacher.command",
        )
        _check(
            self.mt.on_policy_ratio == 0 or not self.teacher.command,
            "mt.on_policy_ratio > 0 needs a white-box teacher (teacher.path or a trained one), not teacher.command",
        )
        for flag, train in (("train", self.train), ("teacher.train", self.teacher.train)):
            if train.select_metric == "accuracy":  # the classification default: translation selects on chrF
                train.select_metric = "chrf"
            _check(
                train.select_metric in ("chrf", "bleu"),
                f"task is 'translation': {flag}.select_metric must be chrf or bleu, got {train.select_metric!r}",
            )

    @property
    def student_max_length(self) -> int:
        return self.student.max_length or self.teacher.max_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_dict(self, *names: str) -> dict[str, Any]:
        full = self.to_dict()
        return {name: full[name] for name in names}


# ---------------------------------------------------------------------------------------------
# Loading: YAML -> dict -> (overrides) -> typed dataclasses with checked keys and types.
# ---------------------------------------------------------------------------------------------


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def resolve_path(path: str, base: str | Path = ".") -> Path:
    if path.startswith(BUILTIN_PREFIX):
        return package_dir() / "demo_data" / path[len(BUILTIN_PREFIX) :]
    if str(base).startswith(BUILTIN_PREFIX):
        return package_dir() / "demo_data" / str(base)[len(BUILTIN_PREFIX) :] / path
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base).expanduser() / p


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping; plain YAML would keep the last one silently."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark, is_block: bool):
        self.key, self.first, self.again = key, first, again
        self.fix = "merge the two blocks" if is_block else "keep one of the two values"
        super().__init__(f"duplicate key {str(key)!r}")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in a mapping, at any nesting level (a second
    ``distill:`` block would otherwise replace the first). ``<<`` merge keys still override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error reports it
                continue
            if first is not key_node:
                raise DuplicateKeyError(
                    key, first.start_mark, key_node.start_mark, isinstance(value_node, yaml.MappingNode)
                )
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKeyError`` for a key given twice in one mapping."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def builtin_recipe(name: str) -> Path:
    return package_dir() / "recipes" / f"{name}.yaml"


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load one run from YAML, apply ``a.b=value`` overrides, and validate everything."""
    path = Path(path)
    if str(path).startswith(BUILTIN_PREFIX):
        path = builtin_recipe(str(path)[len(BUILTIN_PREFIX) :])
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{path}, line {exc.again.line + 1}: duplicate key {str(exc.key)!r} "
            f"(first at line {exc.first.line + 1}); {exc.fix}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, teacher:, ...)")
    for item in overrides or []:
        apply_override(raw, item, path)
    try:
        return from_dict(RunConfig, raw, source=str(path))
    except ConfigError as exc:
        # A value that came from --set is wrong there, not in the file: say so.
        for item in overrides or []:
            key = item.partition("=")[0].strip()
            if str(exc).startswith((key + " ", key + ".", key + "[")) or f" {key} " in str(exc):
                raise ConfigError(f"{exc} (the value comes from --set {item})") from None
        raise


def apply_override(raw: dict, item: str, source: str | Path) -> None:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (4 -> int, true -> bool)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set distill.temperature=4")
    key, _, value_text = item.partition("=")
    keys = key.strip().split(".")
    try:
        value = load_yaml(value_text) if value_text.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"--set {item}: duplicate key {str(exc.key)!r} in the value; {exc.fix}") from None
    except yaml.YAMLError:
        value = value_text
    # Check the key path against the schema now, so a typo names the --set flag, not the file.
    cls: Any = RunConfig
    for depth, part in enumerate(keys):
        names = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
        if names is None:
            break  # inside a dict-valued field such as data.dev: any key is allowed
        if part not in names:
            prefix = ".".join(keys[:depth])
            raise ConfigError(_unknown_key_message(part, prefix, list(names), f"--set {key}"))
        cls = _dataclass_in(_hints(cls)[part])
    node = raw
    for part in keys[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[keys[-1]] = value


def _dataclass_in(tp: Any) -> Any:
    """The dataclass inside an annotation (``X``, ``X | None``), else the annotation itself."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return tp


def _unknown_key_message(key: str, prefix: str, valid: list[str], where: str) -> str:
    full = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
    return f"unknown key '{full}' in {where}{hint} (valid keys here: {', '.join(sorted(valid))})"


_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def from_dict(cls: type, raw: Any, *, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and types; errors name the flag and file."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} in {source} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), prefix, list(fields), source))
    kwargs = {}
    hints = _hints(cls)
    for name, f in fields.items():
        flag = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required section or key '{flag}' in {source}")
            continue
        kwargs[name] = _convert(hints[name], raw[name], flag, source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source})") from None


def _convert(tp: Any, value: Any, flag: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, source=source, prefix=flag)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1 and dataclasses.is_dataclass(members[0]):
            # An optional section (embed.probe): report the error inside it, not "must be X | None".
            return _convert(members[0], value, flag, source)
        errors = []
        # Prefer the member the value already is (1 stays an int in `str | int`), then conversions.
        members = sorted((a for a in args if a is not type(None)), key=lambda a: not _is_instance(value, a))
        for arg in members:
            try:
                return _convert(arg, value, flag, source)
            except _NotFinite:
                raise
            except ConfigError as exc:
                errors.append(exc)
        raise _type_error(flag, tp, value, source)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{flag} must be one of {choices}, got {value!r} (in {source})")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(flag, tp, value, source)
        return [_convert(args[0], v, f"{flag}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(flag, tp, value, source)
        return {str(k): _convert(args[1], v, f"{flag}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string; it is a number here
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(flag, tp, value, source)
        # YAML reads .inf and .nan as floats; no setting means infinity, and NaN fails no `<` check.
        try:
            number = float(value)
        except OverflowError:  # an int with hundreds of digits
            number, value = math.inf, "an integer too large for a float"
        if not math.isfinite(number):
            raise _NotFinite(f"{flag} must be a finite number, got {value} in {source}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(flag, tp, value, source)
        return value
    if tp is str:
        # YAML reads label keys like 1 or 4 as ints; a string field accepts scalars as text.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _type_error(flag, tp, value, source)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(flag, tp, value, source)
        return value
    if value is None and tp is type(None):
        return None
    raise _type_error(flag, tp, value, source)


# Scientific notation without a dot (1e-5): a float, though YAML 1.1 reads it as text.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class _NotFinite(ConfigError):
    """A float field got inf or nan (raised as is through ``X | None`` unions)."""


def _is_instance(value: Any, tp: Any) -> bool:
    if isinstance(value, bool):
        return tp is bool
    return isinstance(tp, type) and isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _type_error(flag: str, tp: Any, value: Any, source: str) -> ConfigError:
    return ConfigError(f"{flag} must be {_type_name(tp)}, got {value!r} ({type(value).__name__}) in {source}")


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
