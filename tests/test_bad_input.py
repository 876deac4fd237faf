"""Bad input, property-based: whatever bytes a data file holds, the readers either read it or raise
one DataFormatError naming the file (and the line when there is one) — never another exception.
And the CLI answers bad configs, missing files, unknown commands and wrong model folders with one
line and a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdistill.config import ColumnsConfig
from xdistill.data.readers import read_labelled, read_parallel, read_unlabelled
from xdistill.errors import DataFormatError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Bytes that break readers in practice: quotes, separators, newlines of every kind, NULs, BOMs,
# invalid UTF-8, Latin-1 and UTF-16 fragments, and long runs.
PIECES = [
    b'"',
    b",",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xe9",
    b"\xc3\xa9",
    b"\x80",
    b"{",
    b"}",
    b'{"text": "a", "label": "pos"}',
    b"pos",
    b"neg",
    b"text,label",
    b"hello world",
    b"\xe4\xbd\xa0\xe5\xa5\xbd",
    b"x" * 300,
]
messy = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=20)), max_size=40).map(b"".join)


def _check(call, *paths: Path) -> None:
    try:
        call()
    except DataFormatError as exc:
        assert any(str(exc).startswith(str(path)) for path in paths), exc
        assert exc.line is None or exc.line >= 1


@SETTINGS
@given(data=messy, suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_labelled_and_unlabelled_readers_never_raise_anything_else(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    if suffix != ".txt":
        _check(lambda: read_labelled(path, columns=ColumnsConfig(text=0, label=1), labels=["pos", "neg"]), path)
        _check(
            lambda: read_labelled(
                path, columns=ColumnsConfig(text="text", label="label"), labels=["pos", "neg"], header=True
            ),
            path,
        )
    _check(lambda: read_unlabelled(path, columns=ColumnsConfig(text=0, label=None)), path)


@SETTINGS
@given(source=messy, target=messy)
def test_parallel_reader_never_raises_anything_else(tmp_path, source, target):
    a, b = tmp_path / "a.en", tmp_path / "b.es"
    a.write_bytes(source)
    b.write_bytes(target)
    _check(lambda: read_parallel(a, b), a, b)
    tsv = tmp_path / "pairs.txt"
    tsv.write_bytes(source + b"\t" + target)
    _check(lambda: read_parallel(tsv), tsv)


def test_huge_line_names_the_line(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"ok\n" + b"x" * (1 << 21) + b"\n")
    with pytest.raises(DataFormatError, match=r"big.txt, line 2"):
        read_unlabelled(path)


# --- the CLI ------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xdistill", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "no-such-config.yaml"], "no-such-config.yaml"),
        (["frobnicate"], "No such command"),
        (["run", "{tmp}/bad-type.yaml"], "train.epochs"),
        (["run", "{tmp}/unknown-key.yaml"], "epochz"),
        (["translate", "--model", "{tmp}"], "not a Hugging Face model folder (no config.json)"),
        (["predict", "{tmp}"], "not a model xdistill can run"),
        (["export", "{tmp}", "--format", "onnx", "--out", "{tmp}/x"], "not a model xdistill can run"),
        (["run", "{tmp}/bad-type.yaml", "--resume", "sometimes"], "'sometimes' is not one of 'auto', 'never'"),
        (
            ["run", "{tmp}/dup-key.yaml"],
            "dup-key.yaml, line 4: duplicate key 'train' (first at line 3); merge the two blocks",
        ),
        (
            ["run", "{tmp}/ok.yaml", "--set", "distill.temperature=.inf"],
            "distill.temperature must be a finite number, got inf",
        ),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, message):
    (tmp_path / "bad-type.yaml").write_text(
        "data: {train: a.csv, labels: [a, b]}\nteacher: {path: x}\ntrain: {epochs: many}\n"
    )
    (tmp_path / "ok.yaml").write_text("data: {train: a.csv, labels: [a, b]}\nteacher: {path: x}\n")
    (tmp_path / "dup-key.yaml").write_text(
        "data: {train: a.csv, labels: [a, b]}\nteacher: {path: x}\ntrain: {epochs: 2}\ntrain: {lr: 0.1}\n"
    )
    (tmp_path / "unknown-key.yaml").write_text(
        "data: {train: a.csv, labels: [a, b]}\nteacher: {path: x}\ntrain: {epochz: 2}\n"
    )
    proc = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unusable_path_is_one_line_naming_it(monkeypatch, capsys):
    # (root reads any file whatever its mode, so the error is raised where the config is read)
    import xdistill.config as config
    from xdistill import cli

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "run.yaml")

    monkeypatch.setattr(config, "load_config", deny)
    monkeypatch.setattr(sys, "argv", ["xdistill", "run", "run.yaml"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "error: run.yaml: permission denied; check its permissions"
