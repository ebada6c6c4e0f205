"""The demo generator: the same seed gives the same bytes, the mouth opens with the speech, the speech has
pitch and pauses, fakes change the mouth and jaw and nothing above, and their mouths move as their
generators would."""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.demo import animate, fakes, speech
from preprocess.demo.photos import identity_face
from preprocess.demo.plan import REAL, clip_rng, demo_params, plan, render_clip
from preprocess.demo.writer import FIXED_MTIME_NS, write_video

TINY = {"seed": 3, "identities": 2, "val_speakers": 1, "test_speakers": 1, "seconds": 2.0, "fps": 30, "size": 160,
        "corpora": {"c": {"clips": 1, "methods": list(fakes.METHODS)}}}


@pytest.fixture(scope="module")
def tiny():
    params = demo_params({"demo": TINY})
    clip = plan(params, "c")[1]
    return params, clip, render_clip(params, clip)


def real_render(params, clip, openness):
    face = identity_face(clip.identity)
    framing = animate.make_framing(face, params.size, params.n_frames, params.fps, clip_rng(params, clip, 1))
    return animate.render(face, openness, framing, params.size)


def test_same_seed_same_bytes_other_seed_other_clip(tiny, tmp_path):
    params, clip, (audio, videos, _) = tiny
    audio2, videos2, _ = render_clip(params, clip)
    assert np.array_equal(audio, audio2) and all(np.array_equal(videos[m], videos2[m]) for m in videos)
    paths = [tmp_path / name / "v.mkv" for name in ("a", "b")]
    for path in paths:
        write_video(path, videos["jitter"], params.fps, audio, params.sample_rate)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].stat().st_mtime_ns == FIXED_MTIME_NS
    other = demo_params({"demo": {**TINY, "seed": 4}})
    assert not np.array_equal(render_clip(other, plan(other, "c")[1])[0], audio)


def test_written_file_needs_resampling(tiny, tmp_path):
    from preprocess.probe import probe

    params, _, (audio, videos, _) = tiny
    write_video(tmp_path / "v.mkv", videos[REAL], params.fps, audio, params.sample_rate)
    info = probe(tmp_path / "v.mkv")
    assert (info.fps, info.width, info.audio_rate, info.audio_channels) == (30.0, 160, 44100, 2)
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_mouth_opens_with_the_audio_envelope(tiny):
    """Mouth darkness (the opening) in the rendered frames follows the loudness of the audio per frame."""
    params, clip, (audio, videos, openness) = tiny
    envelope = speech.frame_envelope(audio, params.sample_rate, params.fps, params.n_frames)
    rendered = real_render(params, clip, openness)
    assert np.array_equal(rendered.frames, videos[REAL])
    half = max(int(rendered.mouth_width * 0.15), 2)
    darkness = []
    for frame, (x, y) in zip(videos[REAL], np.round(rendered.mouth).astype(int)):
        darkness.append(255 - frame[y - half:y + half + 1, x - half:x + half + 1].mean())
    assert openness.std() > 0.2  # the mouth really opens and closes
    agreement = np.corrcoef(envelope, darkness)[0, 1]
    assert agreement > 0.8
    # the lip-sync fake follows another utterance: its mouth does not agree with this audio
    lipsync = [255 - f[y - half:y + half + 1, x - half:x + half + 1].mean()
               for f, (x, y) in zip(videos["lipsync"], np.round(rendered.mouth).astype(int))]
    assert np.corrcoef(envelope, lipsync)[0, 1] < agreement - 0.2


def test_speech_has_pitch_and_pauses():
    rate, voice = 16000, speech.Voice(150.0, 1.0)
    audio = speech.synthesise(4.0, rate, voice, np.random.default_rng(0)).audio
    env = speech.frame_envelope(audio, rate, 25, 100)
    assert 0.1 < (env < 0.1).mean() < 0.6  # silent frames between words and phrases, but mostly speech
    loud = int(np.argmax(env))
    chunk = audio[loud * 640:(loud + 1) * 640].astype(np.float64)
    ac = np.correlate(chunk, chunk, "full")[len(chunk) - 1:]
    lo, hi = rate // 300, rate // 80
    f0 = rate / (lo + np.argmax(ac[lo:hi]))
    assert 110 < f0 < 190  # the voice's pitch (150 Hz, declining through a phrase)


def mouth_darkness(frames: np.ndarray, rendered: animate.Rendered) -> np.ndarray:
    """Per frame, how dark the centre of the mouth is: the opening."""
    half = max(int(rendered.mouth_width * 0.15), 2)
    return np.array([255 - f[y - half:y + half + 1, x - half:x + half + 1].mean()
                     for f, (x, y) in zip(frames, np.round(rendered.mouth).astype(int))])


def test_fakes_change_the_mouth_and_below_and_nothing_above(tiny):
    """Every fake re-draws the mouth (and the jaw it moves) and leaves the eyes, the forehead and the
    background above the mouth box as they are; the lip-sync fake, the widest box, bounds them all."""
    params, clip, (audio, videos, openness) = tiny
    rendered = real_render(params, clip, openness)
    real = videos[REAL].astype(np.int16)
    for method, factor in (("lowres_seam", 1.8), ("jitter", 1.5), ("lipsync", 3.2)):
        diff = np.abs(videos[method].astype(np.int16) - real).max(-1)
        above = np.zeros(diff.shape, bool)
        for t, centre in enumerate(rendered.mouth):
            _, y0, _, _ = fakes.mouth_box(centre, rendered.mouth_width, 3.2, real.shape[1:3])
            above[t, :y0] = True
            inside = fakes.mouth_box(centre, rendered.mouth_width, factor, real.shape[1:3])
            assert diff[t, inside[1]:inside[3], inside[0]:inside[2]].mean() > 0 or openness[t] == 0, method
        assert diff[above].max() == 0, method
        assert diff[~above].mean() > 0.5, method  # and the mouth region does change


def test_fakes_mouths_move_as_their_generators_would(tiny):
    """lowres_seam's mouth is under-articulated (opens less, varies less); jitter's trembles and never
    closes: in the real clip's pauses its mouth is open. The motion is what a frozen lip-motion frontend sees."""
    params, clip, (audio, videos, openness) = tiny
    rendered = real_render(params, clip, openness)
    real, damped, twitching = (mouth_darkness(videos[m], rendered) for m in (REAL, "lowres_seam", "jitter"))
    assert damped.std() < 0.7 * real.std()
    pauses = openness < 0.05
    assert pauses.sum() >= 5
    assert twitching[pauses].mean() > real[pauses].mean() + 5
    assert np.array_equal(fakes.damped_openness(np.ones(9)), np.full(9, 0.5))
    trembling = fakes.jittered_openness(np.zeros(200), np.random.default_rng(0))
    assert trembling.min() >= 0 and trembling.mean() > 0.2 and np.abs(np.diff(trembling)).mean() > 0.02


def test_dlib_detector_finds_the_demo_face_with_retinafaces_contract(tiny):
    from preprocess.track.detect import DetectorParams, make_detector

    params, clip, (audio, videos, openness) = tiny
    rendered = real_render(params, clip, openness)
    detector = make_detector("dlib", DetectorParams())
    frames = np.stack([videos[REAL][0], videos["lipsync"][30], np.zeros_like(videos[REAL][0])])
    found = detector(frames)
    assert len(found) == 3 and all(d.dtype == np.float32 and d.shape[1:] == (5,) for d in found)
    assert len(found[2]) == 0  # nothing in a black frame
    for dets, t in zip(found[:2], (0, 30)):
        assert len(dets) == 1 and dets[0, 4] > 0
        x1, y1, x2, y2 = dets[0, :4]
        mx, my = rendered.mouth[t]
        assert x1 < mx < x2 and y1 < my < y2  # the box holds the mouth
    with pytest.raises(ValueError, match="not known"):
        make_detector("blazeface", DetectorParams())


def test_demo_params_are_strict_with_the_key_path():
    import pytest

    with pytest.raises(ValueError, match=r"params.yaml demo\.corpora\.x: unknown key\(s\) method\b"):
        demo_params({"demo": {"corpora": {"x": {"clips": 1, "method": ["jitter"]}}}})
    parsed = demo_params({"demo": {"corpora": {"x": {"clips": 2, "methods": ["jitter"]}}}})
    assert parsed.corpora["x"].clips == 2 and parsed.corpora["x"].methods == ("jitter",)
