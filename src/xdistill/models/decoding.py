"""How a translation model decodes: a length bound tied to the source, and a repetition guard.

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

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence


@dataclass
class Decoding:
    length_ratio: float = 1.5
    length_extra: int = 10
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if self.length_ratio <= 0:
            raise ConfigError(f"mt.decoding.length_ratio must be > 0, got {self.length_ratio}")
        if self.length_extra < 0:
            raise ConfigError(f"mt.decoding.length_extra must be >= 0, got {self.length_extra}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"mt.decoding.no_repeat_ngram_size must be >= 0 (0 = off), "
                              f"got {self.no_repeat_ngram_size}")
        if self.repetition_penalty < 1.0:
            raise ConfigError(f"mt.decoding.repetition_penalty must be >= 1.0 (1.0 = off), "
                              f"got {self.repetition_penalty}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "Decoding":
        """From a saved ``decoding`` entry; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def max_new_tokens(self, source_lengths: Sequence[int], cap: int) -> int:
        """Target tokens a batch may produce: tied to its longest source, never above ``cap``."""
        longest = max(source_lengths, default=0)
        return max(1, min(cap, math.ceil(self.length_ratio * longest + self.length_extra)))
