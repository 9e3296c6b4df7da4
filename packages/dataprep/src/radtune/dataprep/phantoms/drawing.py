"""Draw a frontal chest radiograph of a `Phantom` with vectorised numpy (and PIL for the thin devices).

Everything is drawn in anatomical coordinates `(u, v)`: `u` runs from -1 (image left, the patient's
right) to 1, `v` from -1 (top) to 1, so 1 unit is 200 mm (the film is 400 mm wide). The pixel grid is
mapped into that frame through a small random rotation, shift and zoom, so positioning varies at no
extra cost. Intensities are densities: air is dark, soft tissue grey, bone, fluid and metal bright.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from radtune.dataprep.phantoms.findings import Phantom

MM_PER_UNIT = 200.0

# Where each lobe's findings may sit: (u_min, u_max, v_min, v_max) for the patient's right lung (image left).
# The left lung's boxes are mirrored (u -> -u) by `_lobe_box`.
_LOBE_BOXES = {
    "right upper lobe": (-0.62, -0.25, -0.55, -0.15),
    "right middle lobe": (-0.45, -0.24, 0.02, 0.28),
    "right lower lobe": (-0.68, -0.46, 0.05, 0.32),
    "left upper lobe": (0.30, 0.62, -0.55, -0.08),
    "left lower lobe": (0.56, 0.72, 0.02, 0.30),
}
_SIZE_GAP = {"small": 0.06, "moderate": 0.12, "large": 0.20}  # pneumothorax: lung edge to chest wall
_SIZE_LEVEL = {"small": 0.10, "moderate": 0.26, "large": 0.46}  # effusion: fluid height above the angle


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    x, y = np.meshgrid(centres, centres)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside (distance > 0), 0 outside, with a linear edge `width` wide: cheap anti-aliasing."""
    return np.clip(0.5 + distance / width, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """Band-limited noise: a `cells`² grid of normal draws upsampled bicubically to `size`²."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))


class _Frame:
    """The random positioning: maps anatomical (u, v) to pixels and back."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.size = size
        angle = np.deg2rad(rng.uniform(-4.0, 4.0))
        self.cos, self.sin = float(np.cos(angle)), float(np.sin(angle))
        self.zoom = float(rng.uniform(0.94, 1.06))
        self.shift = rng.uniform(-0.04, 0.04, size=2).astype(np.float32)
        x, y = _pixel_grid(size)
        xs, ys = (x - self.shift[0]) / self.zoom, (y - self.shift[1]) / self.zoom
        self.u = self.cos * xs + self.sin * ys
        self.v = -self.sin * xs + self.cos * ys

    def to_pixels(self, points) -> list[tuple[float, float]]:
        out = []
        for u, v in points:
            x = (self.cos * u - self.sin * v) * self.zoom + self.shift[0]
            y = (self.sin * u + self.cos * v) * self.zoom + self.shift[1]
            out.append(((x + 1.0) / 2.0 * self.size - 0.5, (y + 1.0) / 2.0 * self.size - 0.5))
        return out

    def pixels(self, length: float) -> float:
        return length / 2.0 * self.size * self.zoom


class _Lung:
    """A lung field: an egg-shaped outline cut from below by the diaphragm dome. `side` -1 = patient right."""

    def __init__(self, side: int, width: float, dome: float, rng: np.random.Generator):
        self.side = side
        self.cx = side * 0.42 * width
        self.cy = -0.02 + rng.uniform(-0.02, 0.02)
        self.rx_lat = 0.40 * width
        self.rx_med = 0.31 * width
        self.ry_top = 0.74 + rng.uniform(-0.03, 0.03)
        self.ry_bot = 0.95
        self.dome = dome
        self.dome_curve = rng.uniform(1.4, 1.8)

    def radius(self, u, v, shrink_lat=0.0, shrink_top=0.0):
        du, dv = u - self.cx, v - self.cy
        rx = np.where(du * self.side > 0, np.float32(self.rx_lat - shrink_lat), np.float32(self.rx_med))
        ry = np.where(dv < 0, np.float32(self.ry_top - shrink_top), np.float32(self.ry_bot))
        return np.sqrt((du / rx) ** 2 + (dv / ry) ** 2)

    def dome_level(self, u):
        return self.dome + self.dome_curve * (u - self.cx + self.side * 0.03) ** 2

    def mask(self, u, v, edge):
        outline = _ramp((1.0 - self.radius(u, v)) * 0.35, edge)
        return outline * _ramp(self.dome_level(u) - v, edge)

    def lateral_fraction(self, u):
        return np.clip((u - self.cx) * self.side / self.rx_lat, 0.0, 1.0)


def _segment_distance(u, v, a, b):
    au, av = u - a[0], v - a[1]
    bu, bv = b[0] - a[0], b[1] - a[1]
    t = np.clip((au * bu + av * bv) / (bu * bu + bv * bv), 0.0, 1.0)
    return np.hypot(au - t * bu, av - t * bv)


def _blob(u, v, cu, cv, radius, edge):
    return _ramp(radius - np.hypot(u - cu, v - cv), edge)


def draw_phantom(phantom: Phantom, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `phantom` as a `size`×`size` uint8 grayscale radiograph; anatomy and noise come from `rng`."""
    # Findings draw from their own stream, so the same study with and without a finding has the same anatomy.
    finding_rng = rng.spawn(1)[0]
    frame = _Frame(rng, size)
    u, v = frame.u, frame.v
    edge = 2.0 / size * 1.5  # ~1.5 px
    width = float(rng.uniform(0.95, 1.03))
    lungs = {
        -1: _Lung(-1, width, 0.40 + rng.uniform(-0.04, 0.04), rng),
        1: _Lung(1, width, 0.45 + rng.uniform(-0.04, 0.04), rng),
    }
    thorax_width = 2 * (0.42 * width + 0.40 * width)  # between the lateral lung edges (inner ribs)
    sides = {"right": -1, "left": 1}

    # Body: neck above the shoulders, torso below; thicker (brighter) in the middle.
    half_width = 0.26 + 0.64 / (1.0 + np.exp(-(v + 0.74) / 0.05))
    body = _ramp(half_width * width - np.abs(u), edge * 2)
    image = 0.05 + body * (0.40 + 0.10 * (1.0 - np.minimum(u * u, 1.0)) + rng.uniform(-0.03, 0.03))

    # Heart, mediastinum, trachea.
    # The heart bulges to the patient's left: 38% of its width lies right of its centre, 62% left.
    heart_width = phantom.ctr * thorax_width
    heart_cx = 0.0 + 0.1 * (phantom.ctr - 0.42) + rng.uniform(-0.02, 0.02)
    heart_cy = 0.36 + 0.2 * (phantom.ctr - 0.42)
    heart_ry = 0.29 + 0.20 * (phantom.ctr - 0.42)
    heart_rx = np.where(u < heart_cx, np.float32(0.38 * heart_width), np.float32(0.62 * heart_width))
    heart = _ramp((1.0 - np.hypot((u - heart_cx) / heart_rx, (v - heart_cy) / heart_ry)) * heart_ry, edge)
    mediastinum = _ramp(0.11 + 0.03 * np.clip(v + 0.3, 0, 1) - np.abs(u - 0.015), edge) * _ramp(0.35 - v, edge)
    aortic_knob = _blob(u, v, 0.12, -0.36, 0.065, edge)
    cover = np.maximum(np.maximum(heart, mediastinum), aortic_knob)

    # Lungs: air minus the fluid of an effusion, with vascular markings that a pneumothorax wipes out.
    # Vessels radiate from each hilum and taper: a periodic 1-D noise along the angle, wobbled by 2-D noise.
    fine = _smooth_noise(rng, 48, size)
    hilum_u = np.where(u < 0, -0.15, 0.15)
    spoke = (np.arctan2(v + 0.04, u - hilum_u) / np.pi * 0.5 + 0.5) * 96.0 + 1.5 * _smooth_noise(rng, 12, size)
    profile = rng.standard_normal(97).astype(np.float32)
    profile[-1] = profile[0]
    vessels = np.clip(1.0 - np.abs(np.interp(spoke % 96.0, np.arange(97, dtype=np.float32), profile)) * 2.5, 0, 1)
    markings_field = vessels**2 + 0.2 * np.clip(fine, -1.0, 1.0)
    air = np.zeros_like(u)
    markings = np.zeros_like(u)
    for side, lung in lungs.items():
        lung_mask = lung.mask(u, v, edge) * (1.0 - cover)
        visible = lung_mask
        hilar = np.exp(-np.hypot(u - side * 0.15, v + 0.04) / 0.3)
        lung_markings = markings_field * (0.25 + hilar) * 0.09
        extra_air = 0.0
        if phantom.pneumothorax and sides[phantom.pneumothorax] == side:
            gap = _SIZE_GAP[phantom.pneumothorax_size] * finding_rng.uniform(0.9, 1.1)
            collapsed_r = lung.radius(u, v, shrink_lat=gap, shrink_top=gap * 1.3)
            collapsed = _ramp((1.0 - collapsed_r) * 0.3, edge)
            space = lung_mask * (1.0 - collapsed)
            pleural_line = np.clip(1.0 - np.abs(1.0 - collapsed_r) * 0.3 / (edge * 0.8), 0.0, 1.0) * lung_mask
            # The collapsed lung is a little denser; the space around it is black and free of markings.
            lung_markings = lung_markings * (1.0 - space) + 0.14 * pleural_line + 0.03 * collapsed * lung_mask
            extra_air = 0.10 * space
        if phantom.effusion in ("bilateral", "right" if side == -1 else "left"):
            level = _SIZE_LEVEL[phantom.effusion_size] * finding_rng.uniform(0.9, 1.1)
            lateral = lung.lateral_fraction(u)
            top = 0.58 - level + 0.10 * (1.0 - lateral) - (0.10 + 0.15 * level) * lateral**2
            fluid = _ramp(v - top, 0.06)
            visible = visible * (1.0 - fluid)
            # The fluid is denser than the diaphragm it hides: it fills the angle down to the dome line.
            image = image + 0.05 * fluid * lung.mask(u, v + 0.04, edge) * (1.0 - cover)
        air = air + visible * (0.30 + extra_air)
        markings = markings + visible * lung_markings
    image = image - air + markings

    # Bones: ribs (posterior arcs and fainter anterior ones), spine, clavicles.
    a = np.abs(u)
    rib_coord = v + 0.5 * a - 0.9 * a * a
    rib_phase = rng.uniform(0.0, 1.0)
    ribs = np.clip((np.cos(2 * np.pi * (rib_coord / 0.125 + rib_phase)) - 0.15) * 2.5, 0.0, 1.0)
    cage = _ramp(0.84 * width - a, edge * 3) * _ramp(a - 0.07, edge) * _ramp(0.5 - rib_coord, 0.2)
    cage = cage * _ramp(rib_coord + 0.85, 0.05)
    anterior = np.clip((np.cos(2 * np.pi * ((v + 0.5 * a) / 0.16 + rib_phase)) - 0.55) * 3.0, 0.0, 1.0)
    anterior = anterior * _ramp(a - 0.18, 0.1) * _ramp(0.8 * width - a, 0.05) * _ramp(0.3 - v, 0.1)
    image = image + cage * (1.0 - 0.6 * cover) * (0.06 * ribs + 0.03 * anterior)
    spine = _ramp(0.075 - np.abs(u - 0.005), edge) * _ramp(v + 0.95, 0.05)
    discs = 0.8 + 0.2 * np.clip(np.cos(2 * np.pi * v / 0.095) * 3.0 + 1.5, 0.0, 1.0)
    image = image + 0.06 * spine * discs
    # The clavicles lie in the top third of the film whatever the positioning: draw only those rows.
    top = slice(0, int(size * 0.4))
    clavicles = np.zeros_like(u[top])
    for side in (-1, 1):
        medial = (side * 0.09, -0.60 + rng.uniform(-0.02, 0.02))
        middle = (side * 0.38, -0.70)
        lateral = (side * 0.66 * width, -0.80)
        distance = np.minimum(
            _segment_distance(u[top], v[top], medial, middle), _segment_distance(u[top], v[top], middle, lateral)
        )
        clavicles = np.maximum(clavicles, _ramp(0.03 - distance, edge))
    image[top] += 0.17 * clavicles
    image = image + 0.03 * heart

    # Gastric bubble under the left dome.
    if rng.random() < 0.6:
        bubble_u = 0.40 + rng.uniform(-0.05, 0.05)
        bubble_v = lungs[1].dome_level(bubble_u) + 0.08
        image = image - 0.12 * _ramp((1.0 - np.hypot((u - bubble_u) / 0.09, (v - bubble_v) / 0.05)) * 0.05, edge)

    # Lesions and airspace disease.
    if phantom.lesion:
        u0, u1, v0, v1 = _LOBE_BOXES[phantom.lesion_lobe]
        radius = phantom.lesion_size_mm / 2.0 / MM_PER_UNIT
        margin = min(radius, (u1 - u0) / 2 - 1e-3, (v1 - v0) / 2 - 1e-3) * 0.8
        cu, cv = finding_rng.uniform(u0 + margin, u1 - margin), finding_rng.uniform(v0 + margin, v1 - margin)
        lesion = _blob(u, v, cu, cv, radius, edge)
        if phantom.lesion == "mass":
            for _ in range(2):  # lobulated contour
                du, dv = finding_rng.uniform(-0.45, 0.45, size=2) * radius
                lesion = np.maximum(
                    lesion, _blob(u, v, cu + du, cv + dv, radius * finding_rng.uniform(0.6, 0.85), edge)
                )
        image = image + 0.36 * lesion
        phantom.extras["lesion_centre"] = (round(float(cu), 3), round(float(cv), 3))  # recorded in the ground truth
    if phantom.consolidation:
        u0, u1, v0, v1 = _LOBE_BOXES[phantom.consolidation]
        centres = zip(
            *(finding_rng.uniform(low, high, size=5) for low, high in ((u0, u1), (v0, v1), (0.06, 0.11))), strict=True
        )
        field = np.zeros_like(u)
        for cu, cv, sigma in centres:
            field = field + np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma * sigma))
        patch = np.clip(field * 1.3 - 0.25, 0.0, 1.0) * (0.8 + 0.2 * np.clip(fine, -1.0, 1.0))
        side = -1 if phantom.consolidation.startswith("right") else 1
        image = image + 0.22 * patch * lungs[side].mask(u, v, edge)

    image = image + _draw_devices(phantom, frame, finding_rng)

    # Exposure, detector noise and the heel effect.
    gamma = rng.uniform(0.85, 1.15)
    gradient = 1.0 + rng.uniform(-0.06, 0.06) * u + rng.uniform(-0.06, 0.06) * v
    image = np.clip(image * gradient, 0.0, 1.0) ** gamma
    image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.008, 0.02)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _draw_devices(phantom: Phantom, frame: _Frame, rng: np.random.Generator) -> np.ndarray | float:
    """Support devices drawn with PIL in pixel space (thin lines), returned as added density."""
    if not phantom.devices:
        return 0.0
    size = frame.size
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)

    def line(points, thickness, value):
        width = max(1, round(frame.pixels(thickness)))
        draw.line(frame.to_pixels(points), fill=value, width=width, joint="curve")

    if "endotracheal tube" in phantom.devices:
        tip = -0.46 + rng.uniform(-0.05, 0.05)
        line([(0.01, -1.1), (0.0, -0.8), (-0.005, tip)], 0.022, 150)
    if "central venous catheter" in phantom.devices:
        if phantom.central_line_route == "right internal jugular":
            path = [(-0.30, -1.1), (-0.24, -0.82), (-0.15, -0.64), (-0.08, -0.46), (-0.06, -0.28)]
        else:
            path = [(0.78, -0.72), (0.45, -0.67), (0.20, -0.60), (0.02, -0.50), (-0.05, -0.36), (-0.06, -0.26)]
        line([(pu, pv + rng.uniform(-0.01, 0.01)) for pu, pv in path], 0.014, 160)
    if "pacemaker" in phantom.devices:
        gu, gv = 0.55 + rng.uniform(-0.05, 0.05), -0.58 + rng.uniform(-0.04, 0.04)
        lead = [(gu - 0.04, gv), (0.28, -0.64), (0.06, -0.56), (-0.05, -0.32), (-0.04, 0.02), (0.15, 0.30)]
        line(lead, 0.012, 170)
        corners = [(gu - 0.08, gv - 0.055), (gu + 0.08, gv - 0.055), (gu + 0.08, gv + 0.055), (gu - 0.08, gv + 0.055)]
        draw.polygon(frame.to_pixels(corners), fill=230)
    layer = layer.filter(ImageFilter.GaussianBlur(radius=max(0.5, size / 512)))
    return np.asarray(layer, dtype=np.float32) * (0.5 / 255.0)
