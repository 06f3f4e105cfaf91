"""Speech to text with faster-whisper, behind a guard against Whisper's silence hallucinations.

Whisper's encoder is trained on 30 s windows and faster-whisper pads every call to one, so a
2 s turn costs as much as 30 s of speech. CTranslate2's encoder takes shorter inputs, and with
``fit_window`` (the default) each window is padded only to the audio plus ``FIT_MARGIN_S``,
and never below ``FIT_MIN_S``: on this CPU a 2 s question went from 1.2 s to 0.4 s (language
detection included; the encoder alone from 0.45 s to 0.06 s) and J. F. Kennedy's 11 s from
1.5 s to 0.7 s, with no more word errors on the espeak phrases and JFK. Windows of 5 s made
Whisper loop ("But whenever is lovely this morning. But whenever is lovely this morning.");
10 s did not. faster-whisper offers no option for it, so :func:`fit_windows` swaps the
padding function its transcription and language detection call, for the whole process
(faster-whisper 1.2).

The audio comes already cut by :mod:`actors.stt.vad`, so Whisper's own VAD stays off and
each call transcribes one utterance (30 s at most) with no context from the last one.
faster-whisper is imported only when the model loads (:attr:`Whisper.model`, a LazyModel).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from actors.stt.models import INSTALL_HINT, packaged_whisper_base
from hexbus.models import LazyModel, ModelMissing, first_line, model_threads

SAMPLE_RATE: Final = 16_000
MIN_AUDIO_S: Final = 0.1  # shorter audio holds no word; Whisper would invent one
ALL_SILENT_NO_SPEECH: Final = 0.8  # every window this sure of silence: nothing was said

# What Whisper writes for silence and noise, learnt from subtitled video; compared after
# normalising (lower case, no punctuation or symbols, single spaces).
HALLUCINATIONS: Final = frozenset(
    {
        "you",
        "thanks for watching",
        "thank you for watching",
        "thanks for watching and see you next time",
        "thank you for watching and see you next time",
        "ill see you in the next video",
        "see you in the next video",
        "please subscribe",
        "please like and subscribe",
        "like and subscribe",
        "dont forget to like and subscribe",
    }
)
HALLUCINATION_PREFIXES: Final = (
    "subtitles by",
    "subtitled by",
    "subtitles made by",
    "captions by",
    "captioning by",
    "transcribed by",
    "transcription by",
    "translated by",
    "amaraorg",
)
# Whisper's commonest silence phrases are also what people say to a companion. Measured on this
# model: spoken, they come with no_speech_prob <= 0.27 and avg_logprob >= -0.34; made up from
# silence, hum or noise, with no_speech_prob >= 0.73 and avg_logprob <= -1.2. So they are
# dropped unless Whisper is confident it heard speech.
REPLY_HALLUCINATIONS: Final = frozenset(
    {"thank you", "thank you very much", "thank you so much", "bye", "bye bye", "im sorry"}
)
REPLY_MAX_NO_SPEECH: Final = 0.35
REPLY_MIN_LOGPROB: Final = -0.5


class WhisperConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # empty: the packaged Whisper base; else a CTranslate2 folder or a cached hub id ("large-v3")
    model: str = ""
    device: str = "cpu"  # "cuda" on the workstation
    compute_type: str = "int8"  # "float16" on a GPU
    cpu_threads: int = 2
    num_workers: int = 2  # transcriptions that may run at once, from as many threads
    # greedy (1) had WER 0.27 on the espeak-ng test phrases, 5 had 0.10, for ~0.1 s more a call
    beam_size: int = 5
    language: str = ""  # empty: detect it on each utterance
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    min_chars: int = 2  # fewer letters than this is not a transcript
    fit_window: bool = True  # windows padded to the audio (plus a margin), not to 30 s

    def __post_init__(self) -> None:
        if self.cpu_threads < 0 or self.num_workers < 1 or self.beam_size < 1:
            raise ValueError(
                "Whisper needs cpu_threads >= 0 (0: all cores), num_workers >= 1 and beam_size >= 1"
            )


FIT_MARGIN_S: Final = 1.0  # silence after the speech in a fitted window
FIT_MIN_S: Final = 10.0  # the shortest fitted window (5 s made Whisper repeat itself)
_FRAMES_PER_S: Final = 100  # Whisper's mel frames: 10 ms each


def fit_windows() -> None:
    """Make faster-whisper pad each window to its audio plus FIT_MARGIN_S (at least FIT_MIN_S,
    at most the model's 30 s) instead of always to 30 s. Idempotent; process-wide."""
    import faster_whisper.transcribe as fw  # type: ignore[import-untyped]

    if getattr(fw.pad_or_trim, "fitted", False):
        return
    original = fw.pad_or_trim

    def pad_to_fit(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
        frames = array.shape[axis]
        margin, least = FIT_MARGIN_S * _FRAMES_PER_S, FIT_MIN_S * _FRAMES_PER_S
        return original(array, int(min(length, max(frames + margin, least))), axis=axis)

    pad_to_fit.fitted = True  # type: ignore[attr-defined]
    fw.pad_or_trim = pad_to_fit


class Result(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str
    avg_logprob: float  # mean over the transcript's tokens
    no_speech_prob: float  # the highest of the transcript's windows
    duration_s: float  # of the audio transcribed


_NOT_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, without punctuation or symbols, words separated by single spaces."""
    text = _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    return _SPACES.sub(" ", text).strip()


_PREFIXES: Final = tuple(p.replace(" ", "") for p in HALLUCINATION_PREFIXES)


def is_hallucination(text: str, no_speech_prob: float = 1.0, avg_logprob: float = -1e9) -> bool:
    """True for a phrase Whisper is known to produce from silence or noise.

    Phrases a person might say ("Thank you.", "Bye!") count only when Whisper doubts them:
    ``no_speech_prob`` above 0.35 or ``avg_logprob`` below -0.5 (the defaults always doubt).
    """
    norm = normalise(text)
    if norm in HALLUCINATIONS or norm.replace(" ", "").startswith(_PREFIXES):
        return True
    return norm in REPLY_HALLUCINATIONS and (
        no_speech_prob > REPLY_MAX_NO_SPEECH or avg_logprob < REPLY_MIN_LOGPROB
    )


LOOP_MIN_WORDS: Final = 3  # "no no no" and "thank you thank you" are things people say
LOOP_MIN_TIMES: Final = 3
LOOP_MAX_WORDS: Final = 24  # Whisper's loops are a phrase or a sentence, never a paragraph


def collapse_loops(text: str) -> str:
    """``text`` with each phrase of ``LOOP_MIN_WORDS`` or more words that repeats back to back
    ``LOOP_MIN_TIMES`` times or more said once: Whisper's decoding loop ("like a sea creature like
    a sea creature ..." to the end of a window), which its temperature fallback does not always
    break. Words are compared normalised; the first occurrence is kept as written."""
    said = text.split()
    keys = [normalise(w) for w in said]
    i = 0
    while i < len(said):
        longest = min(LOOP_MAX_WORDS, (len(said) - i) // LOOP_MIN_TIMES)
        for n in range(LOOP_MIN_WORDS, longest + 1):
            times = 1
            while keys[i + times * n : i + (times + 1) * n] == keys[i : i + n]:
                times += 1
            if times >= LOOP_MIN_TIMES:
                del said[i + n : i + times * n], keys[i + n : i + times * n]
                break
        else:
            i += 1
    return " ".join(said)


class Whisper:
    """Transcribes one utterance at a time; up to ``num_workers`` calls may run concurrently.

    :meth:`transcribe` returns ``None`` when nothing was said: an empty transcript, one
    Whisper itself would drop as silence (``no_speech_prob`` above the threshold while
    ``avg_logprob`` is below its own), one where every window is almost surely silence, a
    known silence hallucination ("Thanks for watching!", "Subtitles by ...", or "Thank you."
    when Whisper doubts it), or fewer than ``min_chars`` letters. A phrase Whisper repeats in a
    loop is said once (:func:`collapse_loops`). Everything here blocks: call it through a thread.
    """

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self.config = config if config is not None else WhisperConfig()
        name = Path(self.config.model).name if self.config.model else "base"
        self.model: LazyModel[Any] = LazyModel(f"whisper-{name}", self._load)

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def _source(self) -> tuple[str, str]:
        """What to hand faster-whisper, and how to name it in an error."""
        name = self.config.model
        if not name:
            folder = packaged_whisper_base()
            return str(folder), f"{folder} (packaged Whisper base)"
        path = Path(name).expanduser()
        if path.exists() or name.startswith((".", "/", "~")):
            if not (path / "model.bin").is_file():
                raise ModelMissing(
                    f"Whisper model {path} is not a CTranslate2 model folder (no model.bin): "
                    "convert one with ct2-transformers-converter or use a cached hub id such as large-v3"
                )
            return str(path), str(path)
        return name, f"{name} (Hugging Face cache)"

    def load(self) -> None:
        """Load the model (under a second for base on CPU); later calls return at once."""
        self.model.get()

    def _load(self) -> Any:
        source, shown = self._source()
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelMissing(f"faster-whisper is not installed ({exc}): {INSTALL_HINT}") from None
        cfg = self.config
        if cfg.fit_window:
            fit_windows()
        try:
            # local_files_only: a local-first companion never downloads a model behind the user's back
            return WhisperModel(
                source,
                device=cfg.device,
                compute_type=cfg.compute_type,
                cpu_threads=model_threads(cfg.cpu_threads),
                num_workers=cfg.num_workers,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 and huggingface_hub raise their own kinds
            raise ModelMissing(
                f"cannot load Whisper model {shown}: {first_line(exc)}; {INSTALL_HINT}"
            ) from None

    def transcribe(self, audio: npt.ArrayLike) -> Result | None:
        """The transcript of ``audio`` (float32 mono at 16 kHz), or ``None`` if nothing was said."""
        raw = np.asarray(audio)
        if not np.issubdtype(raw.dtype, np.floating):
            raise TypeError(f"audio must be float samples in [-1, 1], got {raw.dtype}")
        a = np.ascontiguousarray(raw, dtype=np.float32)
        if a.ndim != 1:
            raise ValueError(
                f"Whisper.transcribe takes mono samples (one dimension), got shape {a.shape}"
            )
        if a.size < MIN_AUDIO_S * SAMPLE_RATE:
            return None
        model = self.model.get()
        cfg = self.config
        segments, info = model.transcribe(
            a,
            language=cfg.language or None,
            beam_size=cfg.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            no_speech_threshold=cfg.no_speech_threshold,
            log_prob_threshold=cfg.logprob_threshold,
        )
        # faster-whisper already drops windows by Whisper's rule; applying it here too keeps the
        # guard whole whatever a future version does.
        kept = [
            s
            for s in segments
            if not (
                s.no_speech_prob > cfg.no_speech_threshold and s.avg_logprob < cfg.logprob_threshold
            )
        ]
        if not kept or all(s.no_speech_prob > ALL_SILENT_NO_SPEECH for s in kept):
            return None
        text = collapse_loops(_SPACES.sub(" ", "".join(s.text for s in kept)).strip())
        tokens = [max(len(s.tokens), 1) for s in kept]
        avg_logprob = sum(s.avg_logprob * n for s, n in zip(kept, tokens, strict=True)) / sum(
            tokens
        )
        no_speech_prob = max(s.no_speech_prob for s in kept)
        if sum(ch.isalpha() for ch in text) < max(cfg.min_chars, 1):
            return None
        if is_hallucination(text, no_speech_prob, avg_logprob):
            return None
        return Result(
            text=text,
            language=str(info.language),
            avg_logprob=float(avg_logprob),
            no_speech_prob=float(no_speech_prob),
            duration_s=a.size / SAMPLE_RATE,
        )
