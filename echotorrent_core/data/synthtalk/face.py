"""Per-frame drawing of a SynthTalk portrait: the static layers posed by an affine head transform, then eyes,
brows, nose, glasses and the mouth (lips, dark inner mouth, upper teeth, tongue) drawn as polygons at the
supersampled size and box-filtered down (anti-aliasing), then lit.

`FaceRenderer(identity, size).render(state) -> uint8 [size, size, 3]`. Cost per frame is a few PIL operations
on an R x R canvas (R = 2..4 x size), independent of the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .identity import Identity
from .layers import HEAD_CENTRE, background_layer, body_layer, head_layer

ARC_POINTS = 24
CAVITY_COLOUR, TONGUE_COLOUR, TEETH_COLOUR = (52, 16, 20), (150, 60, 65), (232, 226, 205)  # inner mouth
TEETH_SHARE = 0.45  # upper teeth cover at most this share of the opening: the dark cavity stays visible
MAX_OPEN = 0.30  # inner-mouth height at mouth_open = 1, as a fraction of the face half-height b


@dataclass(frozen=True)
class FrameState:
    """Everything that changes from frame to frame (see `motion.py` and `visemes.py` for the ranges)."""

    mouth_open: float
    mouth_width: float
    mouth_round: float
    teeth: float
    yaw: float
    pitch: float
    roll: float
    shift_x: float
    shift_y: float
    blink: float
    smile: float
    brow: float
    light: tuple[float, float, float]


def supersampling(size: int) -> int:
    """Drawing scale factor: canvases of at least 256 px (4x at 64 px, 2x at 128-256 px)."""
    return max(2, -(-256 // size))


def _rgb(colour, scale: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * scale, 0, 1) * 255) for c in colour)


class FaceRenderer:
    """Draws one identity at `size` x `size` pixels (even, 64..256 recommended)."""

    def __init__(self, identity: Identity, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 2:
            raise ValueError(f"expected an even image size >= 32, got {size!r}")
        self.identity, self.size = identity, size
        self.res = size * supersampling(size)
        self.background = background_layer(identity, self.res)
        self.body = body_layer(identity, self.res)
        self.head = head_layer(identity, self.res)
        axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        self._ramp_x, self._ramp_y = axis[None, :, None], axis[:, None, None]

    def _head_matrix(self, s: FrameState) -> tuple[np.ndarray, np.ndarray]:
        """2x2 linear part and offset mapping canonical image units to posed image units."""
        rotation = np.array([[np.cos(s.roll), -np.sin(s.roll)], [np.sin(s.roll), np.cos(s.roll)]])
        linear = rotation @ np.diag([np.cos(s.yaw) ** 0.5, np.cos(s.pitch) ** 0.5])
        centre = np.array(HEAD_CENTRE)
        offset = centre + np.array([s.shift_x, s.shift_y]) - linear @ centre
        return linear, offset

    def _project(self, points: np.ndarray, depth: float, s: FrameState, linear, offset) -> list[tuple]:
        """Canonical points `[N, 2]` at relative depth `depth` (parallax with yaw / pitch) -> pixel tuples."""
        a, b = self.identity.face_width / 2, self.identity.face_height / 2
        moved = points + np.array([np.sin(s.yaw) * depth * a * 0.7, np.sin(s.pitch) * depth * b * 0.5])
        pixels = (moved @ linear.T + offset) * self.res
        return [tuple(p) for p in pixels]

    def render(self, s: FrameState) -> np.ndarray:
        """uint8 `[size, size, 3]` frame for one state."""
        linear, offset = self._head_matrix(s)
        canvas = self.background.copy()
        body_shift = (int(round(s.shift_x * 0.5 * self.res)), int(round(s.shift_y * 0.3 * self.res)))
        canvas.paste(self.body, body_shift, self.body)
        inverse = np.linalg.inv(linear)
        inv_offset = -inverse @ offset * self.res
        data = (inverse[0, 0], inverse[0, 1], inv_offset[0], inverse[1, 0], inverse[1, 1], inv_offset[1])
        head = self.head.transform(self.head.size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
        canvas.paste(head, (0, 0), head)
        draw = ImageDraw.Draw(canvas)
        project = lambda pts, depth: self._project(np.asarray(pts), depth, s, linear, offset)  # noqa: E731
        self._draw_eyes(canvas, draw, s, project)
        self._draw_nose(draw, project)
        self._draw_mouth(canvas, draw, s, project)
        small = np.asarray(canvas.resize((self.size, self.size), Image.Resampling.BOX), dtype=np.float32)
        gain, across, down = s.light
        lit = small * (gain + across * self._ramp_x + down * self._ramp_y)
        return np.clip(lit, 0, 255).astype(np.uint8)

    def _draw_eyes(self, canvas: Image.Image, draw: ImageDraw.ImageDraw, s: FrameState, project) -> None:
        ident = self.identity
        cx, cy = HEAD_CENTRE
        a, b = ident.face_width / 2, ident.face_height / 2
        width = 0.36 * a * ident.eye_size
        height = 0.42 * width
        eye_y = cy - 0.12 * b + ident.eye_height
        t = np.linspace(-1, 1, ARC_POINTS)
        hump = (1 - t * t) ** 0.7
        skin = np.asarray(ident.skin)
        for side in (-1, 1):
            ex = cx + side * 0.42 * a * ident.eye_spacing
            xs = ex + t * width / 2
            lower = eye_y + 0.35 * height * hump
            upper_open = eye_y - 0.65 * height * hump - 0.08 * height * t * side
            upper = lower + (upper_open - lower) * (1 - s.blink)
            socket = np.stack([np.r_[xs, xs[::-1]],
                               np.r_[upper_open - 0.35 * height * hump, lower[::-1] + 0.2 * height * hump]], 1)
            draw.polygon(project(socket, 0.35), fill=_rgb(skin, 0.86))
            eye = np.stack([np.r_[xs, xs[::-1]], np.r_[upper, lower[::-1]]], 1)
            eye_px = project(eye, 0.4)
            if s.blink < 0.95:
                self._draw_eyeball(canvas, eye_px, ex, eye_y, width, s, project)
            draw.line(project(np.stack([xs, upper], 1), 0.4), fill=_rgb(ident.hair, 0.35),
                      width=max(1, int(0.022 * self.res)))
            brow_y = eye_y - 0.95 * height - 0.045 * b * s.brow - 0.01 * s.smile
            bx = ex + t * width * 0.62 + side * 0.06 * width
            arch = brow_y - 0.25 * height * (1 - ((t + side * 0.3) / 1.3) ** 2)
            thick = 0.1 * height * ident.brow_thickness * (1.6 - 0.7 * np.abs(t + side * 0.5))
            brow = np.stack([np.r_[bx, bx[::-1]], np.r_[arch - thick, (arch + thick)[::-1]]], 1)
            draw.polygon(project(brow, 0.45), fill=_rgb(ident.hair, 0.6))
            if ident.glasses:
                rim = np.stack([ex + 0.62 * width * np.cos(2 * np.pi * t), eye_y + 0.55 * width * np.sin(2 * np.pi * t)], 1)
                draw.line(project(rim, 0.7) + project(rim[:1], 0.7), fill=(30, 30, 35), width=max(1, int(0.008 * self.res)))
        if ident.glasses:
            bridge = np.array([[cx - 0.42 * a + 0.62 * width, eye_y], [cx + 0.42 * a - 0.62 * width, eye_y]])
            draw.line(project(bridge, 0.8), fill=(30, 30, 35), width=max(1, int(0.008 * self.res)))

    def _draw_eyeball(self, canvas: Image.Image, eye_px: list[tuple], ex: float, ey: float, width: float,
                      s: FrameState, project) -> None:
        """Sclera, iris, pupil and highlight, clipped to the lid opening."""

        def paint(pdraw: ImageDraw.ImageDraw, local) -> None:
            pdraw.polygon(local(eye_px), fill=(236, 234, 228))
            ((ix, iy),) = local(project([[ex - 0.12 * width * np.sin(s.yaw), ey]], 0.45))
            for radius, colour in ((0.3 * width, _rgb(self.identity.eye_colour)), (0.13 * width, (15, 12, 12))):
                r = radius * self.res
                pdraw.ellipse([ix - r, iy - r, ix + r, iy + r], fill=colour)
            r = 0.05 * width * self.res
            pdraw.ellipse([ix + 0.5 * r, iy - 2.5 * r, ix + 2.5 * r, iy - 0.5 * r], fill=(250, 250, 250))

        _paint_clipped(canvas, eye_px, paint)

    def _draw_nose(self, draw: ImageDraw.ImageDraw, project) -> None:
        ident = self.identity
        cx, cy = HEAD_CENTRE
        a, b = ident.face_width / 2, ident.face_height / 2
        tip_y = cy + 0.28 * b * ident.nose_length
        half = 0.2 * a * ident.nose_width
        skin = np.asarray(ident.skin)
        ridge = np.array([[cx - 0.08 * a, cy - 0.05 * b], [cx - 0.1 * a, tip_y - 0.1 * b], [cx - half, tip_y]])
        draw.line(project(ridge, 0.8), fill=_rgb(skin, 0.8), width=max(1, int(0.012 * self.res)))
        t = np.linspace(-1, 1, ARC_POINTS)
        base = np.stack([cx + t * half, tip_y + 0.04 * b * (1 - t * t)], 1)
        draw.line(project(base, 1.0), fill=_rgb(skin, 0.62), width=max(1, int(0.012 * self.res)))
        for side in (-1, 1):
            nx, ny, r = cx + side * 0.45 * half, tip_y + 0.02 * b, 0.22 * half
            draw.ellipse(_box(project([[nx - r, ny - 0.5 * r], [nx + r, ny + 0.5 * r]], 0.95)), fill=_rgb(skin, 0.45))
        glow = [[cx - 0.35 * half, tip_y - 0.09 * b], [cx + 0.35 * half, tip_y - 0.02 * b]]
        draw.ellipse(_box(project(glow, 1.0)), fill=_rgb(skin, 1.08))

    def mouth_geometry(self, s: FrameState) -> dict[str, np.ndarray]:
        """Canonical mouth curves `[ARC_POINTS, 2]` (x, y): outer upper/lower lip, inner upper/lower lip."""
        ident = self.identity
        cx, cy = HEAD_CENTRE
        a, b = ident.face_width / 2, ident.face_height / 2
        my = cy + 0.52 * b + ident.mouth_height
        half = 0.4 * a * ident.mouth_width * (0.78 + 0.42 * s.mouth_width - 0.28 * s.mouth_round) * (1 + 0.12 * s.smile)
        opening = MAX_OPEN * b * s.mouth_open
        t = np.linspace(-1, 1, ARC_POINTS)
        shape = (1 - t * t) ** (0.55 + 0.5 * s.mouth_round)
        corner = -(0.05 * b * s.smile) * t ** 4
        thick = 0.075 * b * ident.lip_thickness * (1 + 0.35 * s.mouth_round)
        inner_up = my - 0.32 * opening * shape + corner
        inner_low = my + 0.68 * opening * shape + corner
        bow = 0.25 * thick * np.exp(-(t / 0.18) ** 2)
        outer_up = inner_up - thick * (0.35 + 0.65 * shape ** 0.5) + bow
        outer_low = inner_low + 1.25 * thick * (0.3 + 0.7 * shape ** 0.5)
        x = cx + t * half
        return {"outer_up": np.stack([x + (x - cx) * 0.06, outer_up], 1),
                "outer_low": np.stack([x + (x - cx) * 0.06, outer_low], 1),
                "inner_up": np.stack([x, inner_up], 1), "inner_low": np.stack([x, inner_low], 1)}

    def _draw_mouth(self, canvas: Image.Image, draw: ImageDraw.ImageDraw, s: FrameState, project) -> None:
        ident = self.identity
        g = self.mouth_geometry(s)
        lips = np.r_[g["outer_up"], g["outer_low"][::-1]]
        draw.polygon(project(lips, 0.6), fill=_rgb(ident.lip_colour))
        upper_lip = np.r_[g["outer_up"], g["inner_up"][::-1]]
        draw.polygon(project(upper_lip, 0.6), fill=_rgb(ident.lip_colour, 0.82))
        inner = np.r_[g["inner_up"], g["inner_low"][::-1]]
        inner_px = project(inner, 0.6)
        if s.mouth_open > 0.015:
            up, low = g["inner_up"], g["inner_low"]
            b = ident.face_height / 2

            def paint(pdraw: ImageDraw.ImageDraw, local) -> None:
                pdraw.polygon(local(inner_px), fill=CAVITY_COLOUR)
                tongue_top = low[:, 1] - 0.35 * (low[:, 1] - up[:, 1])
                tongue = np.r_[np.stack([HEAD_CENTRE[0] + (low[:, 0] - HEAD_CENTRE[0]) * 0.9, tongue_top], 1), low[::-1]]
                pdraw.polygon(local(project(tongue, 0.6)), fill=TONGUE_COLOUR)
                teeth_bottom = up[:, 1] + np.minimum(s.teeth * 0.07 * b, TEETH_SHARE * (low[:, 1] - up[:, 1]))
                teeth = np.r_[up, np.stack([up[:, 0], teeth_bottom], 1)[::-1]]
                pdraw.polygon(local(project(teeth, 0.6)), fill=TEETH_COLOUR)

            _paint_clipped(canvas, inner_px, paint)
        draw.line(project(g["inner_up"], 0.6), fill=_rgb(ident.lip_colour, 0.5), width=max(1, int(0.006 * self.res)))
        shine = g["outer_low"][ARC_POINTS // 3: 2 * ARC_POINTS // 3] + [0, -0.012 * ident.face_height]
        draw.line(project(shine, 0.6), fill=_rgb(ident.lip_colour, 1.18), width=max(1, int(0.006 * self.res)))


def _paint_clipped(canvas: Image.Image, outline: list[tuple], paint) -> None:
    """Run `paint(draw, local)` on a crop around the polygon `outline` and paste back only inside it;
    `local(points)` converts canvas pixel tuples to crop coordinates."""
    xs, ys = [p[0] for p in outline], [p[1] for p in outline]
    box = (int(min(xs)) - 1, int(min(ys)) - 1, int(max(xs)) + 2, int(max(ys)) + 2)
    patch = canvas.crop(box)
    local = lambda points: [(x - box[0], y - box[1]) for x, y in points]  # noqa: E731
    mask = Image.new("L", patch.size, 0)
    ImageDraw.Draw(mask).polygon(local(outline), fill=255)
    paint(ImageDraw.Draw(patch), local)
    canvas.paste(patch, box[:2], mask)


def _box(points: list[tuple]) -> list[float]:
    (x0, y0), (x1, y1) = points
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
