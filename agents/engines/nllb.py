"""NLLB-200 (M2M100 architecture) from a local directory, through ``transformers`` or CTranslate2.

All target languages of one text are one batched call: each row of the batch
starts its decoder with its own target-language token. Both backends share
the Hugging Face tokenizer, so they read the same checkpoint's vocabulary.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoTokenizer

from streams.languages import ISO_TO_NLLB, to_nllb

MAX_NEW_TOKENS = 200


class _Nllb:
    """What both backends share: tokenization, language codes, the one-call-per-text contract."""

    name = "nllb"

    def __init__(self, tokenizer_dir: Path) -> None:
        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self._lock = threading.Lock()
        self.batch_calls = 0
        """Decoder calls made: one per ``translate`` with targets."""
        self.pairs = frozenset(itertools.permutations(ISO_TO_NLLB, 2))
        """NLLB-200 translates between every two of its languages."""

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        if not targets:
            return {}
        with self._lock:
            self._tokenizer.src_lang = to_nllb(source)
            decoded = self._generate(text, [to_nllb(t) for t in targets])
            self.batch_calls += 1
        return {target: out.strip() for target, out in zip(targets, decoded, strict=True)}

    def _generate(self, text: str, target_codes: list[str]) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Its weights are in this process's memory only: nothing to release outside it."""

    def _limit(self, input_length: int) -> int:
        # A translation is rarely more than twice its source; random test weights never stop early.
        return min(MAX_NEW_TOKENS, 2 * input_length + 10)


class NllbTranslator(_Nllb):
    """``AutoModelForSeq2SeqLM`` on torch."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM

        super().__init__(model_dir)
        self._torch = torch
        self._model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()

    def _generate(self, text: str, target_codes: list[str]) -> list[str]:
        torch, tokenizer = self._torch, self._tokenizer
        inputs = tokenizer([text] * len(target_codes), return_tensors="pt")
        start = self._model.config.decoder_start_token_id
        decoder_start = torch.tensor([[start, tokenizer.convert_tokens_to_ids(code)] for code in target_codes])
        with torch.inference_mode():
            generated = self._model.generate(
                **inputs,
                decoder_input_ids=decoder_start,
                max_new_tokens=self._limit(int(inputs["input_ids"].shape[1])),
                num_beams=1,
                do_sample=False,
            )
        return list(tokenizer.batch_decode(generated, skip_special_tokens=True))


class Ct2NllbTranslator(_Nllb):
    """CTranslate2 (int8 on CPU): several times faster than torch for the same checkpoint."""

    def __init__(self, ct2_dir: Path, tokenizer_dir: Path, device: str = "cpu") -> None:
        import ctranslate2

        super().__init__(tokenizer_dir)
        self._model = ctranslate2.Translator(str(ct2_dir), device=device, compute_type="int8")

    def _generate(self, text: str, target_codes: list[str]) -> list[str]:
        tokenizer = self._tokenizer
        source = tokenizer.convert_ids_to_tokens(tokenizer.encode(text))
        results = self._model.translate_batch(
            [source] * len(target_codes),
            target_prefix=[[code] for code in target_codes],
            max_decoding_length=self._limit(len(source)),
            beam_size=1,
        )
        outputs = []
        for result in results:
            tokens = result.hypotheses[0][1:]  # drop the target-language token
            outputs.append(tokenizer.decode(tokenizer.convert_tokens_to_ids(tokens), skip_special_tokens=True))
        return outputs
