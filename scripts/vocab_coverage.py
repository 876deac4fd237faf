"""How a trimmed student vocabulary cuts text from another domain (the default of student.vocab_keep_top).

A student's vocabulary is trimmed to the pieces of its training text (student.trim_vocab), plus the
``vocab_keep_top`` pieces the teacher's tokenizer ranks most frequent in the scripts of that text. Text
unlike the training text (another domain) then falls back to smaller pieces the teacher never used for
it. This measures how often, for several ``vocab_keep_top``, with about the training text of
`xdistill bench marc --variant binary` as the training text (1-2 and 4-5 stars: the first 3,000 English pool
reviews and every es and zh pool review; the bench draws its 3,000 by seed and drops dev rows and test texts):

- ``same_pieces``: % of texts the student's tokenizer cuts exactly as the teacher's;
- ``pieces_ratio``: the student's pieces per text over the teacher's (1.0 = no extra fragmentation);

on XNLI dev premises and hypotheses (another genre; a dev split, where the default is chosen) and, as the
in-domain reference, on MARC test reviews. Tokenizers only: nothing is trained.

    python scripts/vocab_coverage.py --data-dir ../shared/data --teacher models/e5-small \
        --out bench/results/vocab-coverage.json
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from transformers import AutoTokenizer

from xdistill.evaluate.run_eval import machine_info
from xdistill.io_utils import atomic_write_json
from xdistill.models.vocab_trim import select_pieces, trim_tokenizer

KEEP_TOP = [0, 5000, 20000, 50000]
PREFIX = "query: "  # e5's prefix, as the MARC recipe (teacher.text_prefix)
MAX_TRAIN_EN = 3000  # data.max_train of the MARC recipe


def marc_texts(path: Path, limit: int | None = None) -> list[str]:
    # Headerless id,text,stars; 3-star reviews are dropped in the binary variant.
    with path.open(encoding="utf-8", newline="") as handle:
        texts = [row[1] for row in csv.reader(handle) if len(row) > 2 and row[2] != "3"]
    return texts[:limit] if limit else texts


def xnli_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [part for line in handle for part in line.rstrip("\n").split("\t")[:2]]


def pieces(tokenizer, texts: list[str]) -> list[list[str]]:
    ids = tokenizer([PREFIX + t for t in texts], add_special_tokens=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench/results/vocab-coverage.json"))
    args = parser.parse_args()
    data = args.data_dir
    teacher = AutoTokenizer.from_pretrained(args.teacher)
    teacher.model_max_length = 10**6  # counting pieces, not running a model: no length warning
    train = [PREFIX + t for t in marc_texts(data / "marc/train_pool_en.csv", MAX_TRAIN_EN)]
    train += [PREFIX + t for lang in ("es", "zh") for t in marc_texts(data / f"marc/train_pool_{lang}.csv")]
    sets = {f"xnli-dev-{lang}": xnli_texts(data / f"xnli/dev-{lang}.tsv") for lang in ("en", "es", "zh")}
    sets.update({f"marc-test-{lang}": marc_texts(data / f"marc/test/{lang}.csv") for lang in ("en", "es", "zh")})
    reference = {name: pieces(teacher, texts) for name, texts in sets.items()}
    rows = []
    for keep_top in KEEP_TOP:
        kept, _ = select_pieces(teacher, train, keep_top=keep_top, keep_texts=[PREFIX])
        student = trim_tokenizer(teacher, kept)
        row = {"vocab_keep_top": keep_top, "pieces_kept": len(kept), "embedding_params": len(kept) * 384}
        for name, texts in sets.items():
            cut = pieces(student, texts)
            same = sum(a == b for a, b in zip(cut, reference[name]))
            row[name] = {
                "same_pieces": round(100.0 * same / len(texts), 1),
                "pieces_ratio": round(sum(map(len, cut)) / sum(map(len, reference[name])), 3),
            }
        rows.append(row)
        print(row, flush=True)
    atomic_write_json(
        args.out,
        {
            "benchmark": "vocab-coverage",
            "question": __doc__.split("\n\n")[1].replace("\n", " "),
            "machine": machine_info(),
            "training_text": f"MARC binary: {MAX_TRAIN_EN} en train_pool reviews + every es/zh train_pool review",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
