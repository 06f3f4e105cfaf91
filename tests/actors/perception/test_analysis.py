"""One frame's analysis on real photographs: faces, emotion, attention, motion, darkness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.perception.analysis import Analyzer, load_emotion_model
from schemas import EMOTIONS
from tests.support import vision


@pytest.fixture(scope="module")
def analyzer_factory():  # type: ignore[no-untyped-def]
    model = load_emotion_model()

    def make() -> Analyzer:
        a = Analyzer(emotion=model)
        a.load()
        return a

    return make


FRAMES = 10  # noisy frames per picture: a detector misses or imagines a face now and then


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_a_person_at_the_desk_is_one_attentive_face_with_an_emotion(analyzer_factory) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for scale, x, mirror, light in [
        (0.78, 0.5, False, 1.0),
        (0.6, 0.3, True, 1.0),  # smaller, off centre, mirrored
        (0.9, 0.6, False, 0.55),  # close, in a dim room
        (0.5, 0.7, False, 1.3),  # farther, a bright window
    ]:
        picture = vision.person(scale, x, mirror, light)
        right = 0
        for _ in range(FRAMES):
            faces = analyzer_factory()(vision.noisy(picture, rng), at=1.0).faces
            if len(faces) != 1:
                continue
            (face,) = faces
            assert face.attentive and face.emotion in EMOTIONS and 0 < face.confidence <= 1
            assert len(face.emotions) == len(EMOTIONS) and abs(sum(face.emotions) - 1) < 0.02
            assert abs(face.x + face.w / 2 - x) < 0.2  # the box is where her face is
            right += 1
        assert right >= FRAMES * 0.7, (scale, x, mirror, light, right)


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_an_empty_desk_a_cat_and_the_dark_have_no_person(analyzer_factory) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    for scene in ("desk", "cat"):
        imagined = sum(
            bool(analyzer_factory()(vision.noisy(vision.SCENES[scene](), rng), 1.0).faces)
            for _ in range(FRAMES)
        )
        assert imagined <= FRAMES * 0.3, (scene, imagined)
    dark = analyzer_factory()(vision.noisy(vision.dark(), rng, sigma=1.0), 1.0)
    assert dark.faces == () and dark.scene == "dark"


def test_two_people_are_two_faces(analyzer_factory) -> None:  # type: ignore[no-untyped-def]
    analysis = analyzer_factory()(vision.two_people(), 1.0)
    assert len(analysis.faces) == 2
    assert analysis.faces[0].x != analysis.faces[1].x


def test_a_still_scene_costs_no_detection_and_a_change_is_seen(analyzer_factory) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    a = analyzer_factory()
    first = a(vision.noisy(vision.person(), rng), 1.0)
    again = a(vision.noisy(vision.person(), rng), 1.2)  # the same scene, new sensor noise
    assert first.detected and not again.detected and again.scene == "still"
    assert again.faces == first.faces  # the faces carried over
    later = a(vision.noisy(vision.person(), rng), 1.2 + a.redetect_s)  # searched again anyway
    assert later.detected and len(later.faces) == 1
    gone = a(vision.noisy(vision.dark(), rng, sigma=1.0), 5.0)
    back = a(vision.noisy(vision.desk(), rng), 5.2)
    assert gone.scene == "dark" and back.scene == "changed" and back.detected and back.faces == ()


def test_a_frame_analysed_while_the_source_is_paused_is_never_seen(analyzer_factory) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from actors.perception.capture import Capture
    from actors.perception.eye import Eye
    from actors.perception.presence import Presence
    from actors.perception.sources import SourceSpec, make_source

    capture = Capture(make_source(SourceSpec(name="desk", kind="file", path="x"), Path("/tmp")))
    eye = Eye(capture, analyzer_factory(), Presence(arrive_s=0.0))
    capture.slot.put(vision.person(), 1.0)

    async def pausing(fn: Any, *args: Any) -> Any:  # the pause lands during the analysis
        capture.pause()
        return fn(*args)

    assert asyncio.run(eye.look(pausing)) == (None, [])
    assert eye.frame is None and eye.analysed == 0 and not eye.presence.present
    capture.resume()
    capture.slot.put(vision.person(), 2.0)

    async def plain(fn: Any, *args: Any) -> Any:
        return fn(*args)

    observation, _ = asyncio.run(eye.look(plain))
    assert observation is not None and observation.people == 1 and eye.frame is not None
