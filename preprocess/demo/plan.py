"""What the demo corpus holds, and rendering one real clip with its fakes.

Every clip is drawn from its own seed (the demo seed, the corpus name, identity and clip number), so a clip
does not change when counts elsewhere change, and the order clips are made in does not matter.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from preprocess.demo import animate, fakes, speech
from preprocess.demo.photos import IDENTITIES, identity_face
from preprocess.settings import section

REAL = "real"


@dataclass(frozen=True)
class DemoCorpus:
    clips: int = 1  # real clips per identity
    methods: tuple[str, ...] = ()  # one fake per real clip and method


@dataclass(frozen=True)
class DemoParams:
    seed: int = 0
    identities: int = 8
    val_speakers: int = 2  # the last identities validate (pretraining and fine-tuning) ...
    test_speakers: int = 2  # ... and in fine-tuning the ones before them test
    seconds: float = 6.0
    fps: int = 30
    size: int = 256
    sample_rate: int = 44100
    crf: int = 20
    corpora: dict[str, DemoCorpus] = field(default_factory=dict)

    def __post_init__(self):
        if not 1 <= self.identities <= len(IDENTITIES):
            raise ValueError(f"demo.identities must be 1 to {len(IDENTITIES)} (one per photo variant)")
        if self.val_speakers < 0 or self.test_speakers < 0:
            raise ValueError("demo.val_speakers and demo.test_speakers must be at least 0")
        if self.fps <= 0 or self.seconds <= 0 or self.size < 64:
            raise ValueError("demo.fps and demo.seconds must be positive and demo.size at least 64 px")
        for name, spec in self.corpora.items():
            unknown = set(spec.methods) - set(fakes.METHODS)
            if unknown:
                raise ValueError(f"demo.corpora.{name}: unknown method(s) {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(fakes.METHODS)})")

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds * self.fps))


def demo_params(params: dict) -> DemoParams:
    """params.yaml's `demo:` section."""
    return section(params, "demo", DemoParams)


@dataclass(frozen=True)
class Clip:
    """One real clip to render, with the fakes made from it."""
    corpus: str
    identity: int
    index: int
    methods: tuple[str, ...]

    @property
    def group(self) -> str:
        return f"id{self.identity:02d}"

    def relpath(self, method: str = REAL) -> str:
        return f"{self.group}/clip{self.index:02d}_{method}.mkv"


def plan(params: DemoParams, corpus: str) -> list[Clip]:
    spec = params.corpora[corpus]
    return [Clip(corpus, i, c, spec.methods) for i in range(params.identities) for c in range(spec.clips)]


def clip_rng(params: DemoParams, clip: Clip, stream: int) -> np.random.Generator:
    """Independent random streams per clip: 0 speech, 1 framing, 2 lip-sync driver, 3+ fakes."""
    key = [params.seed, zlib.crc32(clip.corpus.encode()), clip.identity, clip.index, stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def render_clip(params: DemoParams, clip: Clip) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(audio float32 mono, {method: frames} with 'real' first, the real clip's mouth openness per frame)."""
    face = identity_face(clip.identity)
    voice = speech.Voice(face.f0, face.formant_scale)
    n = params.n_frames
    audio = speech.synthesise(params.seconds, params.sample_rate, voice, clip_rng(params, clip, 0)).audio
    openness = speech.frame_envelope(audio, params.sample_rate, params.fps, n)
    framing = animate.make_framing(face, params.size, n, params.fps, clip_rng(params, clip, 1))
    real = animate.render(face, openness, framing, params.size)
    videos = {REAL: real.frames}
    for k, method in enumerate(clip.methods):
        rng = clip_rng(params, clip, 3 + k)
        if method == "lowres_seam":
            damped = animate.render(face, fakes.damped_openness(openness), framing, params.size)
            videos[method] = fakes.lowres_seam(damped.frames, damped.mouth, damped.mouth_width, rng)
        elif method == "jitter":
            twitching = animate.render(face, fakes.jittered_openness(openness, rng), framing, params.size)
            videos[method] = fakes.jitter(twitching.frames, twitching.mouth, twitching.mouth_width, rng)
        elif method == "lipsync":  # the mouth follows another utterance of the same voice
            other = speech.synthesise(params.seconds, params.sample_rate, voice, clip_rng(params, clip, 2)).audio
            driver = speech.frame_envelope(other, params.sample_rate, params.fps, n)
            videos[method] = animate.render(face, driver, framing, params.size).frames
    return audio, videos, openness
