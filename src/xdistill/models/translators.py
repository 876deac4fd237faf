"""Translation teachers and students behind one interface: ``translate(texts) -> list[str]``.

- ``Seq2SeqTranslator``: any local Hugging Face seq2seq folder (Marian, a model xdistill trained,
  a distilled student), batched ``generate`` with a configurable beam.
- ``CommandTranslator``: a black box, a command reading source lines on stdin and writing one
  translation per line on stdout (``apertium -u eng-spa``, or a script around an API or an LLM).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path
from typing import Protocol, Sequence

import torch
from tqdm.auto import tqdm

from ..config import Decoding
from ..errors import XdistillError
from ..fingerprints import fingerprint_folder
from .batches import model_device, to_device
from .folder import MODEL_INFO, read_model_info, verify_weights
from .seq2seq import load_translation_tokenizer


class Translator(Protocol):
    name: str

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam: int = 1,
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "translate",
    ) -> list[str]: ...

    def fingerprint(self) -> str: ...


def one_line(text: str) -> str:
    """Line-based teachers get one line per input: inner newlines and runs of blanks become one space."""
    return " ".join(text.split())


def saved_decoding(folder: str | Path, info: dict | None = None) -> Decoding:
    """The decoding settings a model was made with (``decoding`` in ``xdistill_model.json``, or in
    ``info`` when the caller has read it already), else the defaults."""

    raw = (info if info is not None else read_model_info(folder, optional=True)).get("decoding")
    try:
        return Decoding.from_dict(raw)
    except (XdistillError, TypeError) as exc:
        raise XdistillError(
            f'{Path(folder) / MODEL_INFO}: bad "decoding" entry {raw!r} ({exc}); fix the value '
            "or delete the entry to use the defaults"
        ) from None


class Seq2SeqTranslator:
    """``decoding``: the length bound and repetition guard; by default the folder's saved settings."""

    def __init__(
        self, folder: str | Path, *, max_length: int = 128, model=None, tokenizer=None, decoding: Decoding | None = None
    ):
        from transformers import AutoModelForSeq2SeqLM

        self.folder = Path(folder)
        if model is None:
            if not (self.folder / "config.json").is_file():
                raise XdistillError(f"{self.folder}: not a Hugging Face model folder (no config.json)")
            config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
            if not config.get("is_encoder_decoder"):
                kind = read_model_info(self.folder, optional=True).get("kind")
                raise XdistillError(
                    f"{self.folder} is {'an xdistill ' + kind if kind else 'a ' + str(config.get('model_type'))} model, "
                    "not a translation (seq2seq) model; give a folder that AutoModelForSeq2SeqLM loads (an xdistill "
                    "translation student, a Marian model, ...)"
                )
            verify_weights(self.folder)
            try:
                model = AutoModelForSeq2SeqLM.from_pretrained(self.folder)
            except ValueError as exc:
                raise XdistillError(
                    f"{self.folder} is not a translation (seq2seq) model: {exc}; give a folder that "
                    "AutoModelForSeq2SeqLM loads (e.g. a Marian model or an xdistill translation student)"
                ) from exc
            except OSError as exc:
                reason = (str(exc).splitlines() or [repr(exc)])[0]
                raise XdistillError(
                    f"{self.folder}: the model cannot be loaded ({reason}); check that the folder "
                    "is complete or re-create it"
                ) from None
        self.model = model.eval()
        self.tokenizer = tokenizer or load_translation_tokenizer(self.folder)
        self.max_length = max_length
        self.decoding = decoding if decoding is not None else saved_decoding(self.folder)
        self.name = self.folder.name

    def fingerprint(self) -> str:
        return fingerprint_folder(self.folder)

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
        )

    @torch.inference_mode()
    def generate_ids(self, texts: Sequence[str], beam: int = 1) -> torch.Tensor:
        batch = self.encode(texts)
        bound = self.decoding.max_new_tokens(batch["attention_mask"].sum(dim=1).tolist(), self.max_length - 2)
        # The inputs go where the model is: a student evaluated during training on a GPU stays there.
        batch = to_device(batch, model_device(self.model))
        # max_length counts the decoder start token and the (forced) </s>: ``bound`` real tokens.
        # Both guards are passed even when off, so a generation_config.json that sets them is overridden.
        return self.model.generate(
            **batch,
            num_beams=beam,
            max_length=bound + 2,
            do_sample=False,
            no_repeat_ngram_size=self.decoding.no_repeat_ngram_size,
            repetition_penalty=self.decoding.repetition_penalty,
        )

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam: int = 1,
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "translate",
    ) -> list[str]:
        # Longest first: similar lengths share a batch (less padding) and a memory problem shows at once.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[str] = [""] * len(texts)
        bar = tqdm(total=len(texts), desc=desc, disable=not progress, unit="sent")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids = self.generate_ids([texts[i] for i in idx], beam)
            for i, text in zip(idx, self.tokenizer.batch_decode(ids, skip_special_tokens=True)):
                out[i] = text.strip()
            bar.update(len(idx))
        bar.close()
        return out


# Characters that mean the command needs a shell: pipes, redirects, lists, expansions, globs,
# escapes, comments, subshells. Plain words and simple quotes are split by shlex as sh would.
_SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]{}~#!\n")
# First words that are shell keywords or builtins, not programs.
_SHELL_WORDS = frozenset(
    {
        "exec",
        "eval",
        "source",
        ".",
        "cd",
        "export",
        "set",
        "unset",
        "ulimit",
        "umask",
        "time",
        "command",
        "builtin",
        "if",
        "for",
        "while",
        "until",
        "case",
    }
)


def command_argv(command: str) -> list[str] | None:
    """``command`` as an argument list when it runs the same without a shell, else None (use a shell)."""
    if any(c in _SHELL_SYNTAX for c in command):
        return None
    try:
        argv = shlex.split(command)
    except ValueError:  # an unclosed quote: let the shell say what is wrong
        return None
    if not argv or "=" in argv[0] or argv[0] in _SHELL_WORDS:  # `LANG=C cmd`: an assignment
        return None
    return argv


class CommandTranslator:
    """A shell command as a teacher: batches of lines on stdin, the same number of lines back.

    Each call gets ``batch_size`` lines and ``timeout_s`` seconds; a failure, a hang or a reply
    with the wrong number of lines stops the run with an error that names the batch's lines.
    """

    def __init__(self, command: str, *, batch_size: int = 256, timeout_s: float = 300.0):
        self.command = command
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.name = command.split()[0] if command.split() else "command"
        # A plain command runs without a shell; one with pipes, redirects, $VARS, ... through /bin/sh.
        self.argv = command_argv(command)

    def fingerprint(self) -> str:
        # A black box has no weights to hash: its command line stands for it (edit the command,
        # e.g. add a version flag, to get fresh translations).
        return hashlib.sha256(f"command:{self.command}".encode()).hexdigest()

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam: int = 1,
        batch_size: int | None = None,
        progress: bool = False,
        desc: str = "translate",
    ) -> list[str]:
        size = self.batch_size  # the command's own batch size: callers' GPU-sized batches do not apply
        out: list[str] = []
        bar = tqdm(total=len(texts), desc=desc, disable=not progress, unit="sent")
        for start in range(0, len(texts), size):
            batch = [one_line(t) for t in texts[start : start + size]]
            out.extend(self._run(batch, start))
            bar.update(len(batch))
        bar.close()
        return out

    def _run(self, lines: list[str], start: int) -> list[str]:
        where = f"teacher.command {self.command!r} on input lines {start + 1}-{start + len(lines)}"
        try:
            proc = subprocess.run(
                self.argv if self.argv is not None else self.command,
                shell=self.argv is None,
                input=("\n".join(lines) + "\n").encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
            )
        except FileNotFoundError:  # no shell (a plain command): the program itself is missing
            raise XdistillError(
                f"{where}: command not found: {self.argv[0] if self.argv else self.command}; "
                "install it or fix teacher.command"
            ) from None
        except PermissionError:
            raise XdistillError(
                f"{where}: {self.argv[0] if self.argv else self.command} is not executable; "
                "chmod +x it or fix teacher.command"
            ) from None
        except subprocess.TimeoutExpired:
            raise XdistillError(
                f"{where}: no answer within {self.timeout_s:g} s; raise mt.command_timeout_s "
                "or lower mt.command_batch_size"
            ) from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            hint = " (command not found: install it or fix teacher.command)" if proc.returncode == 127 else ""
            raise XdistillError(
                f"{where}: exited with code {proc.returncode}{hint}; stderr: {' | '.join(err[-3:]) or '(empty)'}"
            )
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise XdistillError(
                f"{where}: wrote bytes that are not UTF-8 (offset {exc.start}); make the command write UTF-8"
            ) from None
        if text.endswith("\n"):
            text = text[:-1]
        # Split on "\n" only: str.splitlines would also split on U+2028 etc. inside a translation.
        got = [one_line(line) for line in text.split("\n")] if text or lines == [""] else []
        if len(got) != len(lines):
            raise XdistillError(
                f"{where}: sent {len(lines)} lines, got {len(got)} back; the command must write "
                "exactly one line per input line, in order"
            )
        return got


def load_translator(
    path: str | None = None,
    command: str | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 256,
    timeout_s: float = 300.0,
    decoding: Decoding | None = None,
) -> Translator:
    if command:
        return CommandTranslator(command, batch_size=batch_size, timeout_s=timeout_s)
    if not path:
        raise XdistillError("no translation teacher: set teacher.path (a seq2seq folder) or teacher.command")
    return Seq2SeqTranslator(path, max_length=max_length, decoding=decoding)
