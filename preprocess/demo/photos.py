"""Face photographs that ship inside installed packages, turned into demo identities, with the face geometry
the animation needs (dlib's detector and 68 landmarks, found once per identity)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Two real portraits: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper. Variants
# (mirrored, recoloured) stand in for further speakers, so splits by speaker have groups to work with.
PHOTOS = ("astronaut", "grace_hopper")
# (photo, mirrored, recolour, voice f0 Hz, formant scale)
IDENTITIES = (
    ("astronaut", False, "none", 205.0, 1.12),
    ("grace_hopper", False, "none", 185.0, 1.08),
    ("astronaut", True, "warm", 165.0, 1.02),
    ("grace_hopper", True, "cool", 120.0, 0.95),
    ("astronaut", False, "gray", 110.0, 0.92),
    ("grace_hopper", True, "sepia", 225.0, 1.15),
    ("astronaut", True, "cool", 140.0, 1.0),
    ("grace_hopper", False, "warm", 150.0, 1.0),
)


@dataclass(frozen=True)
class Face:
    """An identity's photo with its face geometry, in that photo's pixels."""
    image: np.ndarray  # uint8 (H, W, 3) RGB
    box: np.ndarray  # (4,) x1 y1 x2 y2 of dlib's detection
    landmarks: np.ndarray  # (68, 2) float
    f0: float
    formant_scale: float

    @property
    def mouth_centre(self) -> np.ndarray:
        return self.landmarks[60:68].mean(0)  # inner lip contour

    @property
    def mouth_width(self) -> float:
        return float(np.linalg.norm(self.landmarks[54] - self.landmarks[48]))

    @property
    def chin(self) -> np.ndarray:
        return self.landmarks[8]


def load_photo(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[..., :3])
    if name == "grace_hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
            return np.asarray(img.convert("RGB")).copy()
    raise ValueError(f"unknown demo photo {name!r} (known: {', '.join(PHOTOS)})")


def recolour(image: np.ndarray, how: str) -> np.ndarray:
    """Colour variants: a different white balance or tone, so identities differ beyond geometry."""
    x = image.astype(np.float32)
    if how == "warm":
        x = x * np.array([1.12, 1.0, 0.85])
    elif how == "cool":
        x = x * np.array([0.88, 0.98, 1.12])
    elif how == "gray":
        x = np.repeat(x @ np.array([[0.299], [0.587], [0.114]]), 3, axis=-1) * 1.05
    elif how == "sepia":
        gray = x @ np.array([0.299, 0.587, 0.114])
        x = gray[..., None] * np.array([1.07, 0.95, 0.78])
    elif how != "none":
        raise ValueError(f"unknown recolour {how!r}")
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def identity_face(index: int) -> Face:
    """Identity `index` (0 .. len(IDENTITIES)-1): photo variant and its face geometry."""
    if not 0 <= index < len(IDENTITIES):
        raise ValueError(f"demo identity {index} does not exist: there are {len(IDENTITIES)} (demo.identities)")
    photo, mirrored, tone, f0, scale = IDENTITIES[index]
    image = load_photo(photo)
    if mirrored:
        image = np.ascontiguousarray(image[:, ::-1])
    image = recolour(image, tone)
    box, landmarks = locate_face(image)
    return Face(image, box, landmarks, f0, scale)


def locate_face(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's frontal detector and 68-point model on a photo: the largest face's box and landmarks."""
    import dlib

    from preprocess.align.landmarks_dlib import model_path

    rects = dlib.get_frontal_face_detector()(image, 1)
    if len(rects) == 0:
        raise ValueError("no face found in the demo photo")
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = dlib.shape_predictor(str(model_path()))(image, rect)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64), landmarks
