"""The names a benchmark's command-line options accept, as enums so that ``--help`` lists them.

Kept apart from the benchmark modules so the command line can offer them without importing torch;
``tests/test_cli.py`` checks they match the rows the benchmarks define.
"""

from __future__ import annotations

from enum import Enum


class Variant(str, Enum):
    binary = "binary"
    five_class = "5class"


class MarcRow(str, Enum):
    nokd = "student-nokd"
    unsupervised = "student-unsupervised"
    semi_16 = "student-semi-16"
    semi_256 = "student-semi-256"
    supervised = "student-supervised"
    translate_es = "student-translate-es"
    multi_teacher = "student-multi-teacher"
    unsupervised_4l = "student-unsupervised-4l"


class Pair(str, Enum):
    en_es = "en-es"
    en_zh = "en-zh"


class MtRow(str, Enum):
    ref = "student-ref"
    seqkd = "student-seqkd"
    seqkd_mono = "student-seqkd+mono"
    seqkd_wordkd = "student-seqkd-wordkd"
    onpolicy = "student-onpolicy"
