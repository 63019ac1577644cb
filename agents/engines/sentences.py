"""Sentence splitting for synthesizers that stream a sentence at a time: pysbd's rules ("Dr. Smith",
"3.5 km" and "e.g." stay whole), in the text's language where pysbd has it, else in its closest
kin's (Spanish abbreviations for Catalan, Galician and Portuguese), else in English's."""

from __future__ import annotations

from functools import cache

import pysbd
from pysbd.languages import LANGUAGE_CODES

KIN = {"ca": "es", "gl": "es", "pt": "es"}


@cache
def _segmenter(language: str) -> pysbd.Segmenter:
    rules = language if language in LANGUAGE_CODES else KIN.get(language, "en")
    return pysbd.Segmenter(language=rules, clean=False)


def split_sentences(text: str, language: str) -> list[str]:
    return [s for s in (part.strip() for part in _segmenter(language).segment(text)) if s]
