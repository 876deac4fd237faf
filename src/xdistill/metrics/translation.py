"""Translation quality with sacrebleu: corpus BLEU and chrF, each with its signature.

Chinese has no spaces between words, so BLEU on it uses sacrebleu's ``zh`` tokenizer (characters
split out); every other target uses the WMT standard ``13a``. chrF works on characters and needs
no tokenizer. The signatures go into every result so the numbers can be reproduced and compared.
"""

from __future__ import annotations

from typing import Sequence


def bleu_tokenizer(target_lang: str) -> str:
    return "zh" if target_lang.lower().split("_")[0] in ("zh", "zho", "cmn") else "13a"


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    bleu = BLEU(tokenize=bleu_tokenizer(target_lang))
    chrf = CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return {
        "bleu": round(bleu.corpus_score(hyps, refs).score, 2),
        "chrf": round(chrf.corpus_score(hyps, refs).score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
