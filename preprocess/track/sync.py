"""Audio-visual agreement of a face track with the audio, the SyncNet-style offset search, and the speaker choice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SYNCNET, AV_ENERGY, SINGLE_FACE, LARGEST_FACE = "syncnet", "av-energy", "single-face", "largest-face"


@dataclass(frozen=True)
class SyncParams:
    energy_max_lag: int = 3  # frames: lags searched by the weights-free score
    energy_min_margin: float = 0.15  # best minus runner-up correlation needed to call the choice clear
    energy_max_rival: float = 0.25  # a rival face correlating this well is talking too: ambiguous
    syncnet_vshift: int = 15  # frames of offset SyncNet searches either way (syncnet_python: 15)
    syncnet_min_confidence: float = 3.0  # SyncNet confidence needed before the audio is shifted
    syncnet_min_margin: float = 1.0  # SyncNet confidence lead over a rival face needed to call the choice clear
    min_overlap_frames: int = 13  # faces sharing fewer frames than this do not compete for speaker


@dataclass
class SyncScore:
    """How well one track's mouth agrees with the audio."""
    method: str
    confidence: float  # av-energy: peak correlation; syncnet: median minus min distance; NaN: not measured
    offset: int | None  # frames, syncnet_python's sign; None: unknown


def lagged_correlation(visual: np.ndarray, audio: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest Pearson correlation of visual[t] with audio[t + lag] over |lag| <= max_lag, and that lag."""
    best, best_lag = -np.inf, 0
    n = min(len(visual), len(audio))
    for lag in range(-max_lag, max_lag + 1):
        v = visual[max(0, -lag): n - max(0, lag)]
        a = audio[max(0, lag): n - max(0, -lag)]
        if len(v) < 3 or v.std() == 0 or a.std() == 0:
            continue
        c = float(np.corrcoef(v, a)[0, 1])
        if c > best:
            best, best_lag = c, lag
    return (best if np.isfinite(best) else 0.0), best_lag


def av_energy_score(motion: np.ndarray, envelope: np.ndarray, max_lag: int) -> SyncScore:
    """The weights-free score: correlation of mouth motion energy with the audio envelope.

    Too noisy to measure an offset on clips of a few seconds, so the offset stays unknown.
    """
    corr, _ = lagged_correlation(motion, envelope, max_lag)
    return SyncScore(AV_ENERGY, corr, None)


def offset_search(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = 15) -> tuple[int, float, np.ndarray]:
    """SyncNet's offset search (syncnet_python calc_pdist): per shift the mean distance of video[t] to audio[t+s].

    The audio embeddings are zero-padded by `vshift` at both ends, as in syncnet_python. Returns
    (offset, confidence, mean distance per shift): offset = vshift - argmin, so a video that matches
    audio `k` frames later (video[t] ~ audio[t + k]) gives offset -k; confidence = median - min distance.
    """
    video_emb, audio_emb = np.asarray(video_emb, np.float64), np.asarray(audio_emb, np.float64)
    n = min(len(video_emb), len(audio_emb))
    padded = np.pad(audio_emb[:n], ((vshift, vshift), (0, 0)))
    shifts = 2 * vshift + 1
    dists = np.empty((n, shifts))
    for t in range(n):
        dists[t] = np.linalg.norm(video_emb[t][None] - padded[t: t + shifts], axis=1)
    mean = dists.mean(axis=0)
    best = int(np.argmin(mean))
    return vshift - best, float(np.median(mean) - mean[best]), mean


def audio_shift_frames(score: SyncScore, params: SyncParams) -> int:
    """Frames to shift the audio by (aligned_audio[t] = audio[t + shift]); 0 unless SyncNet is confident."""
    if score.method != SYNCNET or score.offset is None or not score.confidence >= params.syncnet_min_confidence:
        return 0
    return -int(score.offset)


@dataclass
class Choice:
    """The decision for one kept track."""
    index: int  # into the candidate list
    method: str
    confidence: float  # syncnet: its confidence; av-energy: correlation minus the best rival's (if positive)
    offset: int | None
    ambiguous: bool
    score: float  # the track's own score (NaN when not measured)
    rival_score: float  # best competing face's score (NaN when alone)


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def choose_speakers(spans: list[tuple[int, int]], sizes: list[float], scores: list[SyncScore] | None,
                    params: SyncParams) -> list[Choice]:
    """Pick the speaking face wherever faces compete; each frame belongs to at most one chosen track.

    Tracks are taken best score first (largest face first without audio); a track sharing at least
    `min_overlap_frames` with an already chosen one is a rival, not a speaker. A choice is ambiguous when a
    rival scores too close to it, or (weights-free score) correlates with the audio well enough to be talking.
    """
    n = len(spans)
    if scores is None:
        order = sorted(range(n), key=lambda i: (-sizes[i], spans[i][0]))
    else:
        order = sorted(range(n), key=lambda i: (-_key(scores[i].confidence), -sizes[i], spans[i][0]))
    chosen: list[Choice] = []
    for i in order:
        if any(overlap(spans[i], spans[c.index]) >= params.min_overlap_frames for c in chosen):
            continue
        rivals = [j for j in range(n) if j != i and overlap(spans[i], spans[j]) >= params.min_overlap_frames]
        # Rivals are every competing face, chosen elsewhere or not: the frames they share decide.
        if scores is None:
            method = SINGLE_FACE if not rivals else LARGEST_FACE
            chosen.append(Choice(i, method, float("nan"), None, bool(rivals), float("nan"), float("nan")))
            continue
        score = scores[i]
        rival = max((scores[j].confidence for j in rivals), default=float("nan"))
        if score.method == SYNCNET:  # a trained model measured it, alone or not
            method = SYNCNET
            ambiguous = bool(rivals) and not (score.confidence - rival >= params.syncnet_min_margin)
        elif not rivals:
            method, ambiguous = SINGLE_FACE, False
        else:
            method = AV_ENERGY
            ambiguous = not (score.confidence - rival >= params.energy_min_margin
                             and rival < params.energy_max_rival)
        offset = score.offset if score.method == SYNCNET else None
        # The weights-free score says how sure the choice is: its lead over a talking rival.
        confidence = score.confidence if method == SYNCNET or not rivals else \
            score.confidence - max(0.0, rival)
        chosen.append(Choice(i, method, confidence, offset, ambiguous, score.confidence, rival))
    return sorted(chosen, key=lambda c: spans[c.index][0])


def _key(value: float) -> float:
    return value if np.isfinite(value) else -np.inf
