"""Languages: ISO 639-1 codes (what clients name), NLLB-200's FLORES-200 codes (what NLLB reads), and
the catalogue of what this installation really serves (built by the engines' side, read by the gateway).

Every NLLB-200 language that has an ISO 639-1 code is here; where NLLB has
several scripts or variants of one language, the most widely used one stands
for the ISO code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

ISO_TO_NLLB: dict[str, str] = {
    "af": "afr_Latn", "ak": "aka_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng",
    "ay": "ayr_Latn", "az": "azj_Latn", "ba": "bak_Cyrl", "be": "bel_Cyrl", "bg": "bul_Cyrl",
    "bm": "bam_Latn", "bn": "ben_Beng", "bo": "bod_Tibt", "bs": "bos_Latn", "ca": "cat_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt",
    "ee": "ewe_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn",
    "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab", "ff": "fuv_Latn", "fi": "fin_Latn",
    "fj": "fij_Latn", "fo": "fao_Latn", "fr": "fra_Latn", "ga": "gle_Latn", "gd": "gla_Latn",
    "gl": "glg_Latn", "gn": "grn_Latn", "gu": "guj_Gujr", "ha": "hau_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
    "jv": "jav_Latn", "ka": "kat_Geor", "kg": "kon_Latn", "ki": "kik_Latn", "kk": "kaz_Cyrl",
    "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang", "ks": "kas_Arab", "ku": "kmr_Latn",
    "ky": "kir_Cyrl", "lb": "ltz_Latn", "lg": "lug_Latn", "li": "lim_Latn", "ln": "lin_Latn",
    "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn", "mg": "plt_Latn", "mi": "mri_Latn",
    "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn",
    "mt": "mlt_Latn", "my": "mya_Mymr", "nb": "nob_Latn", "ne": "npi_Deva", "nl": "nld_Latn",
    "nn": "nno_Latn", "no": "nob_Latn", "ny": "nya_Latn", "oc": "oci_Latn", "om": "gaz_Latn",
    "or": "ory_Orya", "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab", "pt": "por_Latn",
    "qu": "quy_Latn", "rn": "run_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "rw": "kin_Latn",
    "sa": "san_Deva", "sc": "srd_Latn", "sd": "snd_Arab", "sg": "sag_Latn", "si": "sin_Sinh",
    "sk": "slk_Latn", "sl": "slv_Latn", "sm": "smo_Latn", "sn": "sna_Latn", "so": "som_Latn",
    "sq": "als_Latn", "sr": "srp_Cyrl", "ss": "ssw_Latn", "st": "sot_Latn", "su": "sun_Latn",
    "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl",
    "th": "tha_Thai", "ti": "tir_Ethi", "tk": "tuk_Latn", "tl": "tgl_Latn", "tn": "tsn_Latn",
    "tr": "tur_Latn", "ts": "tso_Latn", "tt": "tat_Cyrl", "tw": "twi_Latn", "ug": "uig_Arab",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "wo": "wol_Latn",
    "xh": "xho_Latn", "yi": "ydd_Hebr", "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
}  # fmt: skip


def to_nllb(iso: str) -> str:
    try:
        return ISO_TO_NLLB[iso]
    except KeyError:
        raise ValueError(f"no NLLB language for {iso!r}") from None


# --- what this installation serves ---------------------------------------------------------


class Route(BaseModel):
    """How one language reaches another: an engine, directly or through one pivot language."""

    model_config = ConfigDict(frozen=True)

    engine: str
    """The engine of each leg, joined by ``>`` for a pivot: ``apertium``, ``apertium>apertium``, ``nllb``."""
    via: str | None = None
    """The pivot language, when no engine translates the pair directly."""
    chrf: float | None = None
    """Measured chrF of this route, text to text on the reference prompts (``dragoman bench languages``);
    None where no references exist in both languages."""


class LanguageSupport(BaseModel):
    """What serves one language: its recognizer, its voice, and its translations into others."""

    recognition: str | None
    """The Whisper model that hears it; None: it can be listened in, not spoken."""
    voice: str | None
    """The engine and voice that speak it; None: it can be read, not heard."""
    translations: dict[str, Route]
    """Target language → the route there. Languages absent here are unreachable from this one."""


class LanguageCatalogue(BaseModel):
    """Every language something real serves here (``GET /v1/languages``); nothing else is offered.

    A language may be spoken when it is recognized and translated into some other language, and
    listened in when it is voiced and some other language is translated into it.
    """

    languages: dict[str, LanguageSupport]
    recognized: list[str]
    """Every language a recognizer hears, translated or not: what file transcription accepts."""

    def reachable(self, source: str, target: str) -> bool:
        support = self.languages.get(source)
        return source == target or (support is not None and target in support.translations)

    def speakable(self, language: str) -> bool:
        support = self.languages.get(language)
        return support is not None and support.recognition is not None and bool(support.translations)

    def listenable(self, language: str) -> bool:
        support = self.languages.get(language)
        return support is not None and (
            self.speakable(language)
            or (support.voice is not None and any(self.reachable(s, language) for s in self.languages if s != language))
        )
