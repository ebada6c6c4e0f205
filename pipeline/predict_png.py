"""`predict --png`: per video, the fake-probability timeline drawn over a strip of its mouth crops.

One row per file: a filmstrip of SLOTS mouth crops, each the frame at the middle of its stretch of the time
axis (blank where no face was kept), with the probability of each scored second drawn over it as a step line
(the dashed line is 0.5). Crops stay about square whatever the video's length. A file that was not scored
gets a row with its reason, so the picture accounts for every file.
"""
from __future__ import annotations

from pathlib import Path

from preprocess.contract import FPS

import numpy as np

SLOTS = 9  # crops per row: a row's axes are about 9 times as wide as high, so each crop is about square
WIDTH, ROW_HEIGHT = 12.0, 1.9  # inches


def strip_frames(n_frames: int) -> list[int]:
    """The frames whose crops the filmstrip shows: the middle frame of each of SLOTS equal stretches."""
    return [int((i + 0.5) * n_frames / SLOTS) for i in range(SLOTS)]


def draw_predictions(predictions: list, strips: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(predictions), 1, figsize=(WIDTH, ROW_HEIGHT * len(predictions) + 0.3), dpi=100,
                             squeeze=False)
    for ax, pred, strip in zip(axes[:, 0], predictions, strips):
        _draw_row(ax, pred, strip or {})
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})  # no version stamp: the same input gives the same picture
    plt.close(fig)


def _draw_row(ax, pred, strip: dict) -> None:
    """`strip`: {frame: crop} for the frames of strip_frames(pred.n_frames) that have one."""
    name = Path(pred.file).name
    duration = max(pred.n_frames / FPS, 1.0)
    ax.set_xlim(0, duration)
    ax.set_ylim(0, 1)
    if not pred.ok:
        ax.text(0.5, 0.5, f"not scored: {pred.reason}", ha="center", va="center", transform=ax.transAxes,
                fontsize=8, wrap=True)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    clips = pred.clips
    slot = duration / SLOTS
    for i, frame in enumerate(strip_frames(pred.n_frames)):
        crop = strip.get(frame)
        if crop is not None:
            ax.imshow(crop, cmap=None if crop.ndim == 3 else "gray", vmin=0, vmax=255,
                      extent=(i * slot, (i + 1) * slot, 0, 1), aspect="auto", alpha=0.85, zorder=1)
    xs, ys = [], []
    for prev, c in zip([None] + clips[:-1], clips):
        if prev is not None and c.frame != prev.frame + prev.frames:  # a second without a face: a break
            xs.append(np.nan)
            ys.append(np.nan)
        xs += [c.start_s, c.end_s]
        ys += [c.probability, c.probability]
    ax.plot(xs, ys, color="orangered", lw=2, zorder=3)  # one flat step per scored second
    ax.axhline(0.5, color="white", lw=1, ls="--", zorder=2)
    ax.set_xlim(0, duration)  # imshow resets the limits
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(fake)", fontsize=8)
    ax.set_xlabel("seconds", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{name}: fake probability {pred.probability:.3f} over {len(clips)} s", fontsize=9)
