"""Speech-like audio from a seed: syllables of vowels (formant resonators on a glottal pulse train) with noisy
consonant onsets, a falling pitch contour with jitter, words and pauses. Not language, but it has the rhythm,
pitch and spectral shape that make mouth motion and audio agree the way they do in speech."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

# (F1, F2, F3) Hz of five vowels; F1 tracks how far the jaw opens, which drives the mouth.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
                  float)
BANDWIDTHS = (80.0, 100.0, 140.0)


@dataclass(frozen=True)
class Voice:
    f0: float  # Hz, mean pitch
    formant_scale: float  # vocal tract length: multiplies every formant


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 (n,) in [-1, 1], mono
    sample_rate: int


def _resonator(x: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    """A second-order formant resonator (Klatt), unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / rate)
    b1, b2 = 2 * r * np.cos(2 * np.pi * freq / rate), -r * r
    return lfilter([1 - b1 - b2], [1, -b1, -b2], x)


def _glottal(f0: np.ndarray, rate: int) -> np.ndarray:
    """A pulse train following the pitch contour f0 (Hz per sample), softened like glottal flow."""
    phase = np.cumsum(f0 / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    return lfilter([1.0], [1, -0.97], pulses) - lfilter([1.0], [1, -0.9], pulses)


def synthesise(seconds: float, rate: int, voice: Voice, rng: np.random.Generator) -> Speech:
    """`seconds` of speech-like audio: phrases of 2-5 words of 1-3 syllables, 0.25-0.6 s pauses between."""
    n = int(round(seconds * rate))
    out = np.zeros(n)
    t = rng.uniform(0.15, 0.4)  # start with a short silence
    while t < seconds - 0.3:
        phrase_start = t
        for _ in range(rng.integers(2, 6)):
            for _ in range(rng.integers(1, 4)):
                dur = rng.uniform(0.14, 0.26)
                if t + dur > seconds - 0.1:
                    break
                out += _syllable(n, rate, t, dur, voice, rng, t - phrase_start)
                t += dur
            t += rng.uniform(0.03, 0.09)  # the short gap between words
        t += rng.uniform(0.25, 0.6)
    out += rng.normal(0, 0.002, n)  # room noise, so silence is not digital zero
    peak = np.abs(out).max()
    return Speech((0.6 * out / peak).astype(np.float32), rate)


def _syllable(n: int, rate: int, start: float, dur: float, voice: Voice, rng: np.random.Generator,
              in_phrase: float) -> np.ndarray:
    i0, m = int(start * rate), int(dur * rate)
    m = min(m, n - i0)
    # pitch: declines through the phrase, a rise-fall per syllable, a little jitter
    tt = np.arange(m) / rate
    f0 = voice.f0 * (1 - 0.08 * min(in_phrase, 2.0)) * (1 + 0.06 * np.sin(np.pi * tt / dur)) \
        * (1 + 0.01 * rng.standard_normal())
    source = _glottal(f0, rate)
    formants = VOWELS[rng.integers(len(VOWELS))] * voice.formant_scale
    vowel = sum(_resonator(source, f, bw, rate) * g for f, bw, g in zip(formants, BANDWIDTHS, (1.0, 0.5, 0.25)))
    # loudness follows jaw opening (F1): open vowels are louder
    vowel *= formants[0] / 700.0
    env = np.sin(np.pi * np.clip(tt / dur, 0, 1)) ** 0.7
    onset = int(rng.uniform(0.15, 0.3) * m)  # consonant: a noise burst before the vowel
    noise = rng.standard_normal(m) * np.exp(-np.arange(m) / max(onset / 3, 1))
    noise = _resonator(noise, rng.uniform(2500, 5000), 1500, rate) * rng.uniform(0.0, 0.4)
    env[:onset] *= np.linspace(0, 1, onset) if onset else 1
    seg = np.zeros(n)
    seg[i0:i0 + m] = vowel / (np.abs(vowel).max() + 1e-9) * env + noise * 0.3
    return seg


def frame_envelope(audio: np.ndarray, rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Loudness per video frame in [0, 1]: RMS over each frame's audio, in dB above the noise floor.

    What a face does with its jaw: loud, open vowels open the mouth, silence closes it.
    """
    edges = np.round(np.arange(n_frames + 1) * rate / fps).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b].astype(np.float64) ** 2) + 1e-12)
                    for a, b in zip(edges[:-1], edges[1:])])
    db = 20 * np.log10(rms / (rms.max() + 1e-12))
    env = np.clip((db + 30) / 30, 0, 1)  # -30 dB below the loudest frame: closed
    return np.convolve(np.pad(env, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")  # jaw inertia
