"""Video-level detection metrics from scikit-learn: ROC-AUC, accuracy at a threshold, the threshold chosen on
val, ROC curves. Labels: 1 = fake, 0 = real; scores are logits (threshold 0 is probability 0.5)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve


def labels01(labels) -> np.ndarray:
    """'fake'/'real' (or 1/0) -> int array, 1 = fake."""
    out = [1 if (lab == "fake" or lab is True or lab == 1) else 0 for lab in labels]
    return np.asarray(out, np.int64)


def auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC, or None when only one class is present (it is undefined then)."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, np.asarray(scores, np.float64)))


def accuracy(y: np.ndarray, scores: np.ndarray, threshold: float) -> float | None:
    """Fraction of videos with (score > threshold) == fake; None for no videos."""
    if len(y) == 0:
        return None
    return float(accuracy_score(np.asarray(y), (np.asarray(scores, np.float64) > threshold).astype(np.int64)))


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float | None:
    """The logit threshold with the best accuracy on (val) videos: midpoints between sorted distinct scores
    (and below/above all of them); ties go to the one nearest 0 (probability 0.5). None without videos."""
    s = np.unique(np.asarray(scores, np.float64))
    if len(s) == 0:
        return None
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
    accs = np.array([accuracy(y, scores, t) for t in candidates])
    best = np.flatnonzero(accs == accs.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


def summary(y: np.ndarray, scores: np.ndarray, val_threshold: float | None) -> dict:
    """{auc, acc_at_0.5, acc_at_val_threshold, n_real, n_fake} of a set of videos."""
    y, scores = np.asarray(y), np.asarray(scores, np.float64)
    return {"auc": auc(y, scores), "acc_at_0.5": accuracy(y, scores, 0.0),
            "acc_at_val_threshold": None if val_threshold is None else accuracy(y, scores, val_threshold),
            "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}


def roc_points(y: np.ndarray, scores: np.ndarray) -> list[dict]:
    """[{fpr, tpr, threshold}] of the ROC curve, or [] when only one class is present."""
    if len(np.unique(y)) < 2:
        return []
    fpr, tpr, thr = roc_curve(np.asarray(y), np.asarray(scores, np.float64))
    # roc_curve's first threshold is +inf: clip it so the file stays plain JSON/CSV
    thr = np.where(np.isfinite(thr), thr, np.finfo(np.float64).max)
    return [{"fpr": float(a), "tpr": float(b), "threshold": float(c)} for a, b, c in zip(fpr, tpr, thr)]
