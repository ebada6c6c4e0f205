"""Talking-head frames from one photo: the jaw drops and the mouth opens with a per-frame openness, the head
sways a little, and each video frames the face differently.

The mouth: a smooth backward warp moves the lower lip, chin and jaw down by `openness x max_drop` (continuous,
so no tear across the cheeks), and a dark, soft-edged cavity fills the opening between the lips.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.demo.photos import Face

MAX_DROP = 0.34  # mouth widths: the jaw drop of a fully open mouth
LIP_BAND = 0.6  # mouth widths below the lip line over which the drop builds up (> 1.5 x MAX_DROP: monotone warp)
CAVITY = np.array([52.0, 22.0, 28.0])  # RGB of the inside of the mouth


@dataclass(frozen=True)
class Framing:
    """How one video shows the face: scale, position, and small head motion per frame."""
    scale: float  # output pixels per photo pixel
    centre: tuple[float, float]  # output position of the face box centre
    motion: np.ndarray  # (T, 4): rotation (deg), shift x, shift y (px), zoom factor


@dataclass(frozen=True)
class Rendered:
    frames: np.ndarray  # uint8 (T, S, S, 3) RGB
    mouth: np.ndarray  # (T, 2) mouth centre in output pixels
    mouth_width: float  # output pixels


def make_framing(face: Face, size: int, n_frames: int, fps: float, rng: np.random.Generator) -> Framing:
    """Face box 48-60% of the frame, off-centre by up to 6%; sway of a few degrees and pixels, slow."""
    side = float(face.box[2] - face.box[0])
    scale = size * rng.uniform(0.48, 0.6) / side
    centre = (size * (0.5 + rng.uniform(-0.06, 0.06)), size * (0.5 + rng.uniform(-0.06, 0.04)))
    t = np.arange(n_frames) / fps
    motion = np.zeros((n_frames, 4))
    for k, amplitude in enumerate((2.5, 0.012 * size, 0.01 * size, 0.025)):
        for _ in range(2):  # two slow sinusoids per parameter, random frequency and phase
            f, ph = rng.uniform(0.1, 0.5), rng.uniform(0, 2 * np.pi)
            motion[:, k] += amplitude / 2 * np.sin(2 * np.pi * f * t + ph)
    motion[:, 3] += 1.0
    return Framing(scale, centre, motion)


def _jaw_profile(ys: np.ndarray, lip_y: float, chin_y: float, mouth_w: float) -> np.ndarray:
    """How much of the drop each row gets: 0 above the lips, building up over the lip band, 1 down to the
    chin, fading out below it (the neck does not move)."""
    band = LIP_BAND * mouth_w
    u = np.clip((ys - lip_y) / band, 0, 1)
    up = u * u * (3 - 2 * u)
    fade = np.clip(1 - (ys - chin_y) / (1.2 * mouth_w), 0, 1)
    return np.where(ys <= chin_y, up, up * fade * fade * (3 - 2 * fade))


def warp_mouth(image: np.ndarray, face: Face, openness: float) -> np.ndarray:
    """The photo with the mouth opened by `openness` in [0, 1] (photo pixels); 0 returns the photo."""
    if openness <= 0:
        return image
    mw = face.mouth_width
    mx, my = face.mouth_centre
    chin = face.chin[1]
    drop = MAX_DROP * mw * openness
    jaw_half = 0.5 * float(face.box[2] - face.box[0])
    x0, x1 = int(max(mx - 1.2 * jaw_half, 0)), int(min(mx + 1.2 * jaw_half, image.shape[1]))
    y0, y1 = int(max(my - 2, 0)), int(min(chin + 1.3 * mw, image.shape[0]))
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    d = np.abs(xs - mx) / jaw_half  # across the face: full drop under the mouth, none at the cheeks' edge
    wx = np.clip((1.05 - d) / 0.45, 0, 1)
    wx = wx * wx * (3 - 2 * wx)
    map_y = ys - drop * wx * _jaw_profile(ys, my, chin, mw)
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.remap(image, xs, map_y.astype(np.float32), cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
    # the opening: an ellipse between the lips, dark, soft-edged, narrower as it opens
    cy = my + 0.5 * drop
    ax, ay = 0.42 * mw * (1 - 0.15 * openness), 0.5 * drop + 0.5
    rx, ry = (xs - mx) / ax, (ys - cy) / ay
    inside = np.clip((1 - np.sqrt(rx * rx + ry * ry)) * min(ax, ay) / 1.5, 0, 1)[..., None]
    shade = CAVITY * (0.7 + 0.3 * np.clip(ry, -1, 1)[..., None] ** 2)  # lighter towards the lips
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region * (1 - inside) + shade * inside + 0.5, 0, 255).astype(np.uint8)
    return out


def frame_transform(face: Face, framing: Framing, t: int) -> np.ndarray:
    """2x3 affine from photo pixels to output pixels at frame t."""
    angle, sx, sy, zoom = framing.motion[t]
    cx, cy = (face.box[:2] + face.box[2:]) / 2
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), framing.scale * float(zoom))
    m[:, 2] += np.array(framing.centre) + (sx, sy) - (cx, cy)
    return m


def render(face: Face, openness: np.ndarray, framing: Framing, size: int) -> Rendered:
    """One frame per openness value, each the warped photo under that frame's head pose."""
    frames = np.empty((len(openness), size, size, 3), np.uint8)
    mouth = np.empty((len(openness), 2))
    mx, my = face.mouth_centre
    for t, o in enumerate(openness):
        m = frame_transform(face, framing, t)
        frames[t] = cv2.warpAffine(warp_mouth(face.image, face, float(o)), m, (size, size), flags=cv2.INTER_AREA,
                                   borderMode=cv2.BORDER_REFLECT)
        drop = MAX_DROP * face.mouth_width * float(o)
        mouth[t] = m @ np.array([mx, my + 0.5 * drop, 1.0])
    return Rendered(frames, mouth, face.mouth_width * framing.scale)
