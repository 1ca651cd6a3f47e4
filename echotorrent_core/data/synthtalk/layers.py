"""Static layers of a SynthTalk portrait, drawn once per clip at the supersampled size R (numpy + PIL):
background `[R, R, 3]`, body (neck + torso, RGBA) and head sprite (hair, ears, shaded face, RGBA).

Geometry is in image-side units (0..1) with the head centre at `HEAD_CENTRE`; `face_outline` gives the polygon.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .identity import BACKGROUNDS, HAIR_STYLES, Identity

HEAD_CENTRE = (0.5, 0.44)


def face_outline(identity: Identity, points: int = 96) -> np.ndarray:
    """`[points, 2]` face contour (x, y down) in image units: an ellipse on top, a squarer, tapering jaw below."""
    a, b = identity.face_width / 2, identity.face_height / 2
    theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    lower = s > 0
    exponent = np.where(lower, 2.0 / (2.0 + 1.6 * identity.jaw), 1.0)
    x = a * np.sign(c) * np.abs(c) ** exponent
    y = b * np.sign(s) * np.abs(s) ** exponent
    taper = np.where(lower, 1 - (0.15 + 0.3 * identity.chin) * (np.clip(y / b, 0, 1) ** 2.5), 1.0)
    return np.stack([HEAD_CENTRE[0] + x * taper, HEAD_CENTRE[1] + y], axis=1)


def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(res) + 0.5) / res
    return np.meshgrid(axis, axis)  # x, y in image units, each [R, R]


def _blend(base: np.ndarray, colour, mask: np.ndarray) -> np.ndarray:
    return base * (1 - mask[..., None]) + np.asarray(colour)[None, None, :] * mask[..., None]


def background_layer(identity: Identity, res: int) -> Image.Image:
    """Per-identity backdrop: gradient, two-tone wall, bokeh lights or a studio vignette."""
    x, y = _grid(res)
    c = np.asarray(identity.background_colours).reshape(2, 3)
    kind = BACKGROUNDS[identity.background]
    rng = np.random.default_rng(identity.id)
    if kind == "gradient":
        image = c[0] * (1 - y[..., None]) + c[1] * y[..., None]
    elif kind == "wall":
        image = np.where((y > 0.68)[..., None], c[1] * 0.8, c[0]) * (0.94 + 0.06 * x[..., None])
    elif kind == "bokeh":
        image = c[0] * (1 - 0.4 * y[..., None])
        for _ in range(7):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.7), rng.uniform(0.04, 0.12)
            spot = np.clip(1 - np.hypot(x - cx, y - cy) / r, 0, 1) ** 0.5 * 0.5
            image = _blend(image, np.clip(c[1] * 1.2, 0, 1), spot)
    else:
        image = c[0] * (1.0 - 0.6 * np.hypot(x - 0.5, y - 0.45)[..., None])
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")


def body_layer(identity: Identity, res: int) -> Image.Image:
    """Neck and shoulders (RGBA)."""
    layer = Image.new("RGBA", (res, res), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = HEAD_CENTRE
    b = identity.face_height / 2
    neck_w = identity.face_width * 0.27
    skin = tuple(int(v * 255 * 0.82) for v in identity.skin)
    draw.rectangle([(cx - neck_w) * res, (cy + 0.3 * b) * res, (cx + neck_w) * res, (cy + 1.6 * b) * res],
                   fill=skin + (255,))
    shirt = tuple(int(v * 255) for v in identity.shirt)
    top = cy + 1.35 * b
    draw.ellipse([(cx - 0.42) * res, top * res, (cx + 0.42) * res, (top + 0.6) * res], fill=shirt + (255,))
    draw.ellipse([(cx - neck_w) * res, (top - 0.03) * res, (cx + neck_w) * res, (top + 0.06) * res],
                 fill=skin + (255,))
    return layer


def _polygon_mask(points: np.ndarray, res: int) -> np.ndarray:
    mask = Image.new("L", (res, res), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points * res], fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def head_layer(identity: Identity, res: int) -> Image.Image:
    """Hair (back and cap), ears, earrings and the shaded face (RGBA, features are drawn per frame)."""
    x, y = _grid(res)
    cx, cy = HEAD_CENTRE
    a, b = identity.face_width / 2, identity.face_height / 2
    u, v = (x - cx) / a, (y - cy) / b
    rgb = np.zeros((res, res, 3))
    alpha = np.zeros((res, res))
    style = HAIR_STYLES[identity.hair_style]
    hair = np.asarray(identity.hair)
    strands = 0.88 + 0.12 * np.sin(60 * x + 8 * np.sin(25 * y))
    hair_shaded = np.clip(hair[None, None] * strands[..., None] * (1.0 - 0.25 * np.clip(v, 0, 2)[..., None]), 0, 1)
    back = np.zeros((res, res), bool)
    if style in ("long", "curly"):
        back = ((u / 1.25) ** 2 + ((v - 0.35) / 1.45) ** 2 < 1) & ((v < 0.6) | (np.abs(u) > 0.75))
        if style == "curly":
            back |= (u / 1.45) ** 2 + ((v + 0.2) / 1.15) ** 2 < 1
    elif style == "bob":
        back = ((u / 1.22) ** 2 + ((v - 0.05) / 1.12) ** 2 < 1) & (v < 0.65)
    elif style == "bun":
        back = (u / 0.45) ** 2 + ((v + 1.12) / 0.38) ** 2 < 1
    rgb[back] = hair_shaded[back] * 0.8
    alpha[back] = 1.0
    skin = np.asarray(identity.skin)
    ears = ((np.abs(u) - 0.98) / 0.16) ** 2 + ((v - 0.02) / 0.26) ** 2 < 1
    rgb[ears] = skin * 0.8
    alpha[ears] = 1.0
    face = _polygon_mask(face_outline(identity), res)
    shade = (1.0 - 0.28 * np.clip(u * u, 0, 1) ** 1.5 - 0.12 * np.clip(v, 0, 1) ** 2
             + 0.06 * np.exp(-((u + 0.25) ** 2 + (v + 0.45) ** 2) / 0.08))
    rgb = rgb * (1 - face[..., None]) + np.clip(skin * shade[..., None], 0, 1) * face[..., None]
    alpha = np.maximum(alpha, face)
    if style != "bald":
        hairline = -0.45 + 0.35 * u * u - (0.1 if style == "curly" else 0.0)
        cap = ((u / 1.1) ** 2 + ((v + 0.06) / 1.1) ** 2 < 1) & (v < hairline)
        rgb[cap] = hair_shaded[cap]
        alpha[cap] = 1.0
    image = Image.fromarray(np.concatenate([np.clip(rgb, 0, 1) * 255, alpha[..., None] * 255], 2).astype(np.uint8),
                            "RGBA")
    if identity.earrings:
        draw = ImageDraw.Draw(image)
        for side in (-1, 1):
            ex, ey = (cx + side * a * 1.0) * res, (cy + 0.3 * b) * res
            r = 0.012 * res
            draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=(230, 190, 60, 255))
    return image.filter(ImageFilter.SMOOTH) if res < 256 else image
