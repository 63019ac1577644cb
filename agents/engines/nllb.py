"""NLLB-200 through ``transformers`` (M2M100 architecture), from a local directory.

All target languages of one text are one batched ``generate`` call: each row
of the batch starts its decoder with its own target-language token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from streams.languages import to_nllb


class NllbTranslator:
    def __init__(self, model_dir: Path, max_new_tokens: int = 200) -> None:
        self.name = f"nllb:{model_dir.name}"
        self.model_dir = model_dir
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
        self._max_new_tokens = max_new_tokens
        self._lock = threading.Lock()
        self.batch_calls = 0
        """How many ``generate`` calls were made (one per translate call)."""

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        if not targets:
            return {}
        tokenizer, model = self._tokenizer, self._model
        with self._lock, torch.inference_mode():
            tokenizer.src_lang = to_nllb(source)
            inputs = tokenizer([text] * len(targets), return_tensors="pt")
            start = model.config.decoder_start_token_id
            decoder_start = torch.tensor(
                [[start, tokenizer.convert_tokens_to_ids(to_nllb(target))] for target in targets]
            )
            input_length = int(inputs["input_ids"].shape[1])
            generated = model.generate(
                **inputs,
                decoder_input_ids=decoder_start,
                max_new_tokens=min(self._max_new_tokens, 2 * input_length + 10),
                num_beams=1,
                do_sample=False,
            )
            self.batch_calls += 1
        decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
        return {target: out.strip() for target, out in zip(targets, decoded, strict=True)}
