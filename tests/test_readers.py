"""Readers: every bad file must end in one DataFormatError naming the file, the physical line and
the fix, because users meet these messages long before they meet the models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xdistill.config import ColumnsConfig
from xdistill.data.examples import Example, ParallelPair
from xdistill.data.readers import detect_format, read_labelled, read_parallel, read_unlabelled
from xdistill.errors import DataFormatError

LABELS = ["negative", "positive"]
HEADERLESS = ColumnsConfig(text=1, label=2, id=0)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def where(path: Path, line: int | None) -> str:
    """The start of the message, so tests pin both the file and the line."""
    return re.escape(f"{path}, line {line}:" if line is not None else f"{path}:")


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [("a.csv", "csv"), ("a.TSV", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.txt", "txt")],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


def test_detect_format_unknown_extension_lists_accepted():
    with pytest.raises(
        DataFormatError, match=r"data\.xlsx: unknown file extension '\.xlsx'; use \.csv, \.tsv, \.jsonl"
    ):
        detect_format("data.xlsx")


# --- happy paths ---------------------------------------------------------------------------------


def test_csv_headerless_with_quotes_and_multiline_field(tmp_path):
    path = write(tmp_path, "r.csv", '1,"good, really",positive\n2,"two\nlines",negative\n3,fine,positive\n')
    examples, stats = read_labelled(path, columns=HEADERLESS, labels=LABELS, lang="en")
    assert examples == [
        Example(text="good, really", label=1, lang="en", id="1"),
        Example(text="two\nlines", label=0, lang="en", id="2"),
        Example(text="fine", label=1, lang="en", id="3"),
    ]
    assert stats.rows == 3 and stats.blank_lines == 0


def test_csv_header_text_pair_and_lang_column(tmp_path):
    path = write(tmp_path, "r.csv", "premise,hypothesis,gold,lg\nA cat.,An animal.,yes,en\nUn gato.,Nada.,no,es\n")
    cols = ColumnsConfig(text="premise", text_pair="hypothesis", label="gold", lang="lg")
    examples, _ = read_labelled(path, columns=cols, labels=["yes", "no"], lang="xx")
    assert examples == [
        Example(text="A cat.", text_pair="An animal.", label=0, lang="en"),
        Example(text="Un gato.", text_pair="Nada.", label=1, lang="es"),
    ]


def test_tsv_keeps_stray_quotes(tmp_path):
    path = write(tmp_path, "x.tsv", 'He said "hi.\tShe left.\tneutral\n"Quoted"\tok"\tentailment\n')
    examples, _ = read_labelled(
        path, columns=ColumnsConfig(text=0, text_pair=1, label=2), labels=["entailment", "neutral"]
    )
    assert [(e.text, e.text_pair, e.label) for e in examples] == [
        ('He said "hi.', "She left.", 1),
        ('"Quoted"', 'ok"', 0),
    ]


def test_tsv_header_with_int_columns_skips_header(tmp_path):
    path = write(tmp_path, "s.tsv", "label\tsentence\n0\tbad film\n1\tgood film\n")
    examples, _ = read_labelled(path, columns=ColumnsConfig(text=1, label=0), labels=["0", "1"], header=True)
    assert [(e.text, e.label) for e in examples] == [("bad film", 0), ("good film", 1)]


def test_jsonl_int_labels_ids_and_text_pair(tmp_path):
    rows = [{"id": 7, "a": "Hi", "b": "there", "y": 1}, {"id": "x", "a": "Bye", "b": "now", "y": "0"}]
    path = write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    examples, _ = read_labelled(
        path, columns=ColumnsConfig(text="a", text_pair="b", label="y", id="id"), labels=["0", "1"]
    )
    assert examples == [
        Example(text="Hi", text_pair="there", label=1, id="7"),
        Example(text="Bye", text_pair="now", label=0, id="x"),
    ]


def test_raw_label_index_is_not_magic(tmp_path):
    # "1" is accepted only because it is literally in the label set, never as labels[1].
    path = write(tmp_path, "r.csv", "a,text,label\n1,ok,1\n")
    with pytest.raises(DataFormatError, match=r"label '1' is not in the label set"):
        read_labelled(path, columns=ColumnsConfig(text="text", label="label"), labels=LABELS)


def test_label_map_drops_and_renames(tmp_path):
    path = write(tmp_path, "r.csv", "1,awful,1\n2,meh,3\n3,great,5\n")
    label_map = {"1": "negative", "3": None, 5: "positive"}  # YAML may give int keys
    examples, stats = read_labelled(path, columns=HEADERLESS, labels=LABELS, label_map=label_map)
    assert [(e.text, e.label) for e in examples] == [("awful", 0), ("great", 1)]
    assert stats.rows == 2 and stats.dropped_by_label_map == 1


def test_require_label_false_allows_empty_labels(tmp_path):
    path = write(tmp_path, "r.csv", "1,text a,\n2,text b,positive\n")
    examples, _ = read_labelled(path, columns=HEADERLESS, labels=LABELS, require_label=False)
    assert [e.label for e in examples] == [None, 1]


def test_bom_accepted(tmp_path):
    path = write(tmp_path, "r.tsv", b"\xef\xbb\xbftext\tlabel\nhola\tpositive\n")
    examples, _ = read_labelled(path, columns=ColumnsConfig(), labels=LABELS)
    assert examples == [Example(text="hola", label=1)]


@pytest.mark.parametrize("name", ["r.csv", "r.tsv"])
def test_blank_lines_skipped_counted_and_crlf(tmp_path, name):
    sep = "," if name.endswith("csv") else "\t"
    body = f"\r\n1{sep}a{sep}positive\r\n   \r\n\r\n2{sep}b{sep}negative\r\n"
    examples, stats = read_labelled(write(tmp_path, name, body), columns=HEADERLESS, labels=LABELS)
    assert [(e.text, e.label) for e in examples] == [("a", 1), ("b", 0)]
    # The final newline ends the last line; it is not a blank line.
    assert stats.blank_lines == 3


def test_unlabelled_txt_and_csv(tmp_path):
    examples, stats = read_unlabelled(write(tmp_path, "u.txt", "uno\n\n  dos \n"), lang="es")
    assert examples == [Example(text="uno", lang="es"), Example(text="dos", lang="es")]
    assert stats.blank_lines == 1
    # The label column is ignored, so its absence from the header is fine.
    examples, _ = read_unlabelled(write(tmp_path, "u.csv", "text\nhello\n"))
    assert examples == [Example(text="hello")]


def test_parallel_tsv_like_tatoeba(tmp_path):
    path = write(
        tmp_path, "cmn.txt", b"\xef\xbb\xbfHi.\t\xe5\x97\xa8\xe3\x80\x82\tCC-BY\n \t\xe7\xa9\xba\n\nRun!\tx\r\n"
    )
    pairs, stats = read_parallel(path)
    assert pairs == [ParallelPair("Hi.", "嗨。"), ParallelPair("Run!", "x")]
    assert stats.extra["empty_pairs"] == 1 and stats.blank_lines == 1


def test_parallel_tsv_named_columns(tmp_path):
    path = write(tmp_path, "p.tsv", "es\ten\nhola\thello\n")
    pairs, _ = read_parallel(path, source_column="en", target_column="es")
    assert pairs == [ParallelPair("hello", "hola")]


def test_parallel_two_files(tmp_path):
    src = write(tmp_path, "en.txt", "one\n\ntwo \r\n")
    tgt = write(tmp_path, "es.txt", "uno\nvacío\n dos\n")
    pairs, stats = read_parallel(src, tgt)
    assert pairs == [ParallelPair("one", "uno"), ParallelPair("two ", " dos")]
    assert stats.extra["empty_pairs"] == 1


# --- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(
        DataFormatError, match=where(path, None) + " file not found; check the path and data.dir in the config$"
    ):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_missing_relative_file_names_the_resolved_path_and_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    path = Path("../data") / "train.csv"  # as DataConfig.resolve joins data.dir and the path
    message = (
        f"file not found (looked for {tmp_path / 'data' / 'train.csv'}: data paths are relative to data.dir, "
        f"and a relative data.dir to the working directory {tmp_path / 'run'}); "
        "check the path and data.dir in the config"
    )
    with pytest.raises(DataFormatError, match=where(path, None) + " " + re.escape(message) + "$"):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)
    with pytest.raises(DataFormatError, match=where(path, None) + " " + re.escape(message) + "$"):
        read_parallel(path, Path("../data/train.es"))


@pytest.mark.parametrize("name", ["train", "train.csv", "corpus.txt"])
def test_folder_given_for_a_data_file_says_so(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    message = (
        where(folder, None)
        + " is a folder, not a file; give the path of the data file itself, e.g. one inside this folder$"
    )
    with pytest.raises(DataFormatError, match=message):
        read_labelled(folder, columns=HEADERLESS, labels=LABELS)
    with pytest.raises(DataFormatError, match=message):
        read_unlabelled(folder)
    with pytest.raises(DataFormatError, match=message):
        read_parallel(folder)
    with pytest.raises(DataFormatError, match=message):
        detect_format(folder)


def test_malformed_json(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "positive"}\n\n{"text": "b", label}\n')
    with pytest.raises(
        DataFormatError, match=where(path, 3) + r" not a JSON object .*each line must be one \{\.\.\.\} object"
    ):
        read_labelled(path, columns=ColumnsConfig(), labels=LABELS)


def test_json_array_file_gets_conversion_hint(tmp_path):
    path = write(tmp_path, "d.json", '[{"text": "a", "label": "positive"}]\n')
    with pytest.raises(DataFormatError, match=where(path, 1) + r" not a JSON object \(a JSON list.*jq -c"):
        read_labelled(path, columns=ColumnsConfig(), labels=LABELS)


def test_jsonl_missing_key_lists_available(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "positive"}\n{"sentence": "b", "label": "negative"}\n')
    with pytest.raises(
        DataFormatError, match=where(path, 2) + r" key 'text' \(text\) is missing; this object has 'sentence', 'label'"
    ):
        read_labelled(path, columns=ColumnsConfig(), labels=LABELS)


def test_header_missing_column_lists_available(tmp_path):
    path = write(tmp_path, "s.tsv", "\nlabel\tsentence\n0\tbad\n")
    with pytest.raises(
        DataFormatError,
        match=where(path, 2) + r" column 'text' \(text\) is not in the header; available: 'label', 'sentence'",
    ):
        read_labelled(path, columns=ColumnsConfig(), labels=["0", "1"])


@pytest.mark.parametrize(
    "name, content, line, needs",
    [
        (
            "r.tsv",
            "1\ta\tpositive\n2 b\tpositive\n",
            2,
            "needs at least 3 .column index 2 is used.; columns must be separated by tabs",
        ),
        (
            "r.csv",
            "id,text,label\n1,a,positive\n2,b\n",
            3,
            "needs at least 3 .the header has 3.; columns must be separated by commas",
        ),
    ],
)
def test_wrong_column_count(tmp_path, name, content, line, needs):
    path = write(tmp_path, name, content)
    cols = ColumnsConfig(text="text", label="label") if "id," in content else HEADERLESS
    with pytest.raises(DataFormatError, match=where(path, line) + f" row has 2 column.s. but {needs}"):
        read_labelled(path, columns=cols, labels=LABELS)


def test_label_outside_label_set(tmp_path):
    path = write(tmp_path, "r.csv", "1,a,positive\n2,b,neutral\n")
    with pytest.raises(
        DataFormatError,
        match=where(path, 2) + r" label 'neutral' is not in the label set \['negative', 'positive'\]; "
        r"add it to data\.labels or map it in data\.label_map",
    ):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_mapped_label_outside_label_set_names_both(tmp_path):
    path = write(tmp_path, "r.csv", "1,a,4\n")
    with pytest.raises(DataFormatError, match=where(path, 1) + r" label 'pos' \(mapped from '4' by label_map\)"):
        read_labelled(path, columns=HEADERLESS, labels=LABELS, label_map={"4": "pos"})


@pytest.mark.parametrize("content", ["", "\n  \n\n", "text,label\n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "r.csv", content)
    with pytest.raises(DataFormatError, match=where(path, None) + " no data rows"):
        read_labelled(path, columns=ColumnsConfig(), labels=LABELS)


def test_non_utf8_bytes(tmp_path):
    path = write(tmp_path, "r.csv", b"1,ok,positive\n2,caf\xe9,negative\n")
    with pytest.raises(
        DataFormatError,
        match=where(path, 2)
        + r" not valid UTF-8 \(byte 0xe9 at byte offset 19\); re-encode the file as UTF-8, e\.g\. `iconv -f latin1 -t utf-8`",
    ):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_nul_byte(tmp_path):
    path = write(tmp_path, "u.txt", b"fine\n" + "utf16".encode("utf-16-le"))
    with pytest.raises(DataFormatError, match=where(path, 2) + r" NUL byte at byte offset 6; .*UTF-16"):
        read_unlabelled(path)


def test_empty_text_cell_names_column(tmp_path):
    path = write(tmp_path, "r.tsv", "a\tb\tpositive\nc\t  \tnegative\n")
    with pytest.raises(
        DataFormatError, match=where(path, 2) + r" empty text pair in column 1; fill it in or remove the row"
    ):
        read_labelled(path, columns=ColumnsConfig(text=0, text_pair=1, label=2), labels=LABELS)


def test_csv_unclosed_quote_reports_record_start(tmp_path):
    path = write(tmp_path, "r.csv", '1,a,positive\n2,"never closed,negative\n3,c,positive\n')
    with pytest.raises(DataFormatError, match=where(path, 2) + " malformed CSV in the record starting here"):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_csv_bare_carriage_return(tmp_path):
    path = write(tmp_path, "r.csv", b"1,a,positive\n2,old\rmac,negative\n")
    with pytest.raises(
        DataFormatError, match=where(path, 2) + r" a bare carriage return \(\\r\) inside an unquoted field"
    ):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_csv_field_limit(tmp_path):
    path = write(tmp_path, "r.csv", '1,a,positive\n2,"' + "x\n" * 70_000 + '",negative\n')
    with pytest.raises(DataFormatError, match=where(path, 2) + r" a field is longer than csv's limit .*unclosed quote"):
        read_labelled(path, columns=HEADERLESS, labels=LABELS)


def test_huge_line(tmp_path):
    path = write(tmp_path, "u.txt", "ok\n" + "x" * (1 << 20 | 1) + "\n")
    with pytest.raises(DataFormatError, match=where(path, 2) + r" line is 1048577 characters long"):
        read_unlabelled(path)


def test_parallel_files_of_different_lengths(tmp_path):
    src = write(tmp_path, "en.txt", "a\nb\nc\n")
    tgt = write(tmp_path, "es.txt", "a\nb")
    with pytest.raises(
        DataFormatError, match=re.escape(f"{src} has 3 lines but {tgt} has 2; parallel files must be line-aligned")
    ):
        read_parallel(src, tgt)


def test_headerless_file_with_named_columns(tmp_path):
    path = write(tmp_path, "r.csv", "1,a,positive\n")
    with pytest.raises(
        DataFormatError,
        match=where(path, None) + r" column 'text' \(text\) is a name, but the file is read without a header",
    ):
        read_labelled(path, columns=ColumnsConfig(), labels=LABELS, header=False)


# --- real corpora (only where the shared data folder is checked out next to the repo) ------------

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "marc" / "test" / "en.csv").exists(), reason="shared MARC data not present")
def test_real_marc_binary_mapping():
    label_map = {"1": "negative", "2": "negative", "3": None, "4": "positive", "5": "positive"}
    examples, stats = read_labelled(
        SHARED / "marc" / "test" / "en.csv", columns=HEADERLESS, labels=LABELS, label_map=label_map
    )
    assert (len(examples), stats.dropped_by_label_map) == (4000, 1000)
