"""`predict --png`: per video, the fake-probability timeline drawn over a strip of its mouth crops.

One row per file: every scored second shows the mouth crop of its middle frame in its place on the time
axis, the probability line runs over the crops, and the dashed line is 0.5. A file that was not scored gets
a row with its reason, so the picture accounts for every file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_CROPS = 60  # crops drawn per row at most (evenly spread): a long video stays a readable strip


def draw_predictions(predictions: list, strips: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max([p.n_frames / 25 for p in predictions] + [1.0])
    width = float(np.clip(1.0 + 0.5 * longest, 6.0, 24.0))
    fig, axes = plt.subplots(len(predictions), 1, figsize=(width, 1.9 * len(predictions) + 0.3), dpi=100,
                             squeeze=False)
    for ax, pred, strip in zip(axes[:, 0], predictions, strips):
        _draw_row(ax, pred, strip or {})
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})  # no version stamp: the same input gives the same picture
    plt.close(fig)


def _draw_row(ax, pred, strip: dict) -> None:
    name = Path(pred.file).name
    duration = max(pred.n_frames / 25, 1.0)
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
    shown = clips if len(clips) <= MAX_CROPS else \
        [clips[i] for i in np.unique(np.linspace(0, len(clips) - 1, MAX_CROPS).round().astype(int))]
    for c in shown:
        crop = strip.get(c.frame)
        if crop is not None:
            ax.imshow(crop, cmap=None if crop.ndim == 3 else "gray", vmin=0, vmax=255,
                      extent=(c.start_s, c.end_s, 0, 1), aspect="auto", alpha=0.85, zorder=1)
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
