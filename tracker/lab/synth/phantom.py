"""The static reference slice of a synthetic sagittal cine-MRI case: anatomy, texture, motion patterns.

:func:`build_anatomy` draws, once per case, a sagittal thorax/abdomen slice on a canvas
:data:`PAD` rows taller than the field of view at both ends (body outline, fat, muscle, spine,
lung with vessels, heart, diaphragm, liver with vessels, bowel, kidney), with texture everywhere
so that trackers have features to lock onto, warps it elastically into organic shapes, and
derives the unit displacement patterns (SI and AP breathing, cardiac contraction) that
:mod:`tracker.lab.synth.motion` scales frame by frame, and the coil sensitivity of the scanner.
Image axes as in :mod:`tracker.lab.synth.cine_mri`: rows head to feet, columns anterior to posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Pixels are 1 mm, as in TrackRAD2025.
SPACING_MM = 1.0
# Rows of anatomy drawn above and below the field of view, so that the warp pulls
# real anatomy (not a smeared border) into the image at the top and bottom.
PAD = 64

# bSSFP contrast, relative to liver (T2/T1-weighted: fluid, fat and blood bright;
# lung and bone cortex dark). Jittered per case.
_TISSUE_LEVELS: dict[str, float] = {
    "air": 0.0,
    "fat": 2.0,
    "muscle": 0.55,
    "lung": 0.07,
    "liver": 1.0,
    "diaphragm": 0.5,
    "blood": 2.1,
    "myocardium": 0.65,
    "csf": 2.4,
    "cord": 0.9,
    "marrow": 1.35,
    "cortex": 0.12,
    "disc": 1.15,
    "kidney": 1.25,
    "medulla": 0.85,
    "abdomen": 1.25,
    "bowel_fluid": 2.2,
    "bowel_wall": 0.75,
    "gas": 0.03,
    "bile": 2.3,
}
# Texture amplitude (low-frequency, fine) per tissue, relative to its level.
_TEXTURE: dict[str, tuple[float, float]] = {
    "lung": (0.35, 0.25),
    "liver": (0.07, 0.05),
    "fat": (0.05, 0.04),
    "muscle": (0.08, 0.07),
    "abdomen": (0.12, 0.08),
    "kidney": (0.06, 0.05),
    "marrow": (0.08, 0.06),
}
_DEFAULT_TEXTURE = (0.05, 0.04)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def noise_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise: the base of every texture."""
    f = rng.standard_normal(shape, dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    f -= f.mean()
    return f / (f.std() + 1e-8)


def _draw_tree(
    canvas: np.ndarray,
    start: tuple[float, float],
    angle: float,
    length: float,
    thickness: float,
    depth: int,
    rng: np.random.Generator,
) -> None:
    """A branching vessel tree (bronchovascular or hepatic) drawn into ``canvas`` (uint8)."""
    if depth <= 0 or length < 3 or thickness < 0.6:
        return
    x0, y0 = start
    x1 = x0 + length * np.cos(angle)
    y1 = y0 + length * np.sin(angle)
    value = int(np.clip(60 + 45 * thickness, 0, 255))  # thin vessels are partial-volumed
    cv2.line(
        canvas,
        (round(x0 * 4), round(y0 * 4)),
        (round(x1 * 4), round(y1 * 4)),
        value,
        max(1, round(thickness)),
        cv2.LINE_AA,
        2,
    )
    n_children = 2 if rng.random() < 0.85 else 3
    for _ in range(n_children):
        _draw_tree(
            canvas,
            (x1, y1),
            angle + rng.uniform(-0.7, 0.7),
            length * rng.uniform(0.6, 0.85),
            thickness * rng.uniform(0.6, 0.8),
            depth - 1,
            rng,
        )


def _ellipse_mask(
    shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float], angle_deg: float
) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(
        m,
        (round(centre[0] * 4), round(centre[1] * 4)),
        (max(1, round(axes[0] * 4)), max(1, round(axes[1] * 4))),
        angle_deg,
        0,
        360,
        1,
        -1,
        cv2.LINE_8,
        2,
    )
    return m.astype(bool)


@dataclass
class Anatomy:
    """The static reference slice on the padded canvas (rows offset by ``PAD``)."""

    image: np.ndarray  # float32 (H + 2 pad, W), relative to liver = 1
    masks: dict[str, np.ndarray]  # bool masks of the regions a tumour can sit in, and "body"
    patterns: np.ndarray  # float32 (H + 2 pad, W, 4): SI, AP, cardiac x, cardiac y (unit amplitudes)
    bias: np.ndarray  # float32 (H, W) coil sensitivity, fixed to the scanner
    levels: dict[str, float]
    heart_hz: float


def build_anatomy(n: int, region: str, rng: np.random.Generator) -> Anatomy:
    """Draw a sagittal slice: body, fat, muscle, spine, lung, heart, diaphragm, liver, abdomen."""
    hp = n + 2 * PAD
    shape = (hp, n)
    rows = np.arange(hp, dtype=np.float32)
    xx = np.broadcast_to(np.arange(n, dtype=np.float32)[None, :], shape)
    yy = np.broadcast_to(rows[:, None], shape)
    levels = {
        k: v * float(rng.uniform(0.9, 1.1)) if k not in ("air", "liver") else v
        for k, v in _TISSUE_LEVELS.items()
    }

    # Where the diaphragm dome sits in the field of view decides what the slice shows.
    dome_frac = {"thorax": (0.52, 0.66), "liver": (0.22, 0.38), "abdomen": (0.12, 0.28)}[region]
    y_dome = PAD + rng.uniform(*dome_frac) * n

    def wobble(amp: float, sigma: float) -> np.ndarray:
        w = rng.standard_normal(hp + 200)
        k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
        w = np.convolve(w, k / k.sum(), mode="same")[100:-100]
        return (amp * w / (w.std() + 1e-8)).astype(np.float32)

    # Body outline: anterior skin (left), posterior skin (right).
    depth_ap = min(float(rng.uniform(200, 260)), n - 46.0)
    x_mid = n / 2 + rng.uniform(-0.03, 0.03) * n
    belly = rng.uniform(0, 25) / (1 + np.exp(-(rows - (y_dome + 80)) / 25))
    xa = np.clip(x_mid - depth_ap / 2 - belly + wobble(2.0, 25), 20, None)
    kyphosis = 10 / (1 + np.exp((rows - y_dome) / 60))
    xp = np.clip(x_mid + depth_ap / 2 + kyphosis + wobble(2.0, 25), None, n - 12)
    body = (xx > xa[:, None]) & (xx < xp[:, None])

    fat_a = rng.uniform(7, 18) + 0.4 * belly
    fat_p = rng.uniform(6, 14)
    muscle_a = rng.uniform(6, 12)
    paraspinal = rng.uniform(28, 42)
    x_wall = xa + fat_a + muscle_a  # inner anterior wall (pleura / peritoneum)
    x_canal_back = xp - fat_p - paraspinal + wobble(1.5, 40)
    # A midline slice cuts the spinal canal and full vertebral bodies; a paramedian one
    # (through the lung or liver, the usual tracking plane) only their lateral edge.
    midline = bool(rng.random() < 0.35)
    canal = rng.uniform(12, 16) if midline else 0.0
    x_canal_front = x_canal_back - canal
    x_vb_front = x_canal_front - (rng.uniform(28, 36) if midline else rng.uniform(14, 22))

    img = np.zeros(shape, np.float32)
    tex_lf = np.zeros(shape, np.float32)
    tex_hf = np.zeros(shape, np.float32)

    def paint(mask: np.ndarray, name: str) -> None:
        img[mask] = levels[name]
        lf, hf = _TEXTURE.get(name, _DEFAULT_TEXTURE)
        tex_lf[mask] = lf
        tex_hf[mask] = hf

    ant_dist = xx - xa[:, None]
    post_dist = xp[:, None] - xx
    paint(body, "muscle")
    paint(body & ((ant_dist < fat_a[:, None]) | (post_dist < fat_p)), "fat")

    # Spine: vertebral bodies with discs, canal with CSF and cord, spinous processes.
    spine_rows = rows[:, None]
    vert_h = rng.uniform(24, 29)
    disc_h = rng.uniform(5, 8)
    phase = (spine_rows - rng.uniform(0, vert_h + disc_h)) % (vert_h + disc_h)
    in_vb = (xx > x_vb_front[:, None]) & (xx < x_canal_front[:, None])
    paint(in_vb, "cortex")
    inner_vb = (
        (xx > x_vb_front[:, None] + 2)
        & (xx < x_canal_front[:, None] - 2)
        & (phase > 2)
        & (phase < vert_h - 2)
    )
    paint(inner_vb, "marrow")
    paint(in_vb & (phase >= vert_h), "disc")
    if midline:
        in_canal = (xx >= x_canal_front[:, None]) & (xx < x_canal_back[:, None])
        paint(in_canal, "csf")
        cord_c = (x_canal_front + x_canal_back) / 2
        paint(in_canal & (np.abs(xx - cord_c[:, None]) < 4.5), "cord")
    # Spinous processes (midline) or laminae / rib heads (paramedian), one per vertebra.
    n_vert = int(hp / (vert_h + disc_h)) + 2
    offset = rng.uniform(0, vert_h + disc_h)
    for k in range(-1, n_vert):
        yc = offset + k * (vert_h + disc_h) + vert_h * 0.6
        if not 0 <= yc < hp:
            continue
        xb = float(x_canal_back[int(yc)]) + (14 if midline else 7)
        ax = (13, 7) if midline else (rng.uniform(6, 9), rng.uniform(6, 9))
        m = _ellipse_mask(shape, (xb, yc), ax, rng.uniform(15, 35))
        paint(m & body, "cortex")
        m2 = _ellipse_mask(shape, (xb, yc), (ax[0] - 2.5, ax[1] - 2.5), 25)
        paint(m2 & body, "marrow")

    # Diaphragm dome: highest near the middle, a deep posterior recess.
    inner_w = float(np.median(x_vb_front - x_wall))
    x_apex = float(np.median(x_wall)) + rng.uniform(0.4, 0.6) * inner_w
    ka = rng.uniform(25, 45) / (x_apex - np.median(x_wall)) ** 2
    kp = rng.uniform(45, 75) / (np.median(x_vb_front) - x_apex) ** 2
    xs = np.arange(n, dtype=np.float32)
    y_dia = y_dome + np.where(xs < x_apex, ka, kp) * (xs - x_apex) ** 2  # per column
    inner = (xx > x_wall[:, None]) & (xx < x_vb_front[:, None] - 3) & body
    above = yy < y_dia[None, :]

    # Liver below the dome, thin anteriorly and deep posteriorly.
    frac = np.clip((xs - np.median(x_wall)) / inner_w, 0, 1)
    liver_h = rng.uniform(55, 90) + (rng.uniform(120, 170) - 70) * frac
    y_liver_bot = y_dia + liver_h
    liver = inner & ~above & (yy < y_liver_bot[None, :])
    abdomen = inner & ~above & ~liver
    lung = inner & above

    # Aorta along the front of the spine (some slices catch it).
    if rng.random() < 0.6:
        aorta = body & (xx > x_vb_front[:, None] - 24) & (xx < x_vb_front[:, None] - 3)
        lung &= ~aorta
        abdomen &= ~aorta
        liver &= ~aorta
        paint(aorta, "blood")

    # Lung with a bronchovascular tree (bright blood in bSSFP, thin so partial-volumed).
    paint(lung, "lung")
    hilum = (float(np.median(x_vb_front)) - rng.uniform(15, 35), y_dome - rng.uniform(70, 110))
    vessels = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(8, 13))):
        start = (hilum[0] + rng.uniform(-15, 15), hilum[1] + rng.uniform(-20, 20))
        _draw_tree(
            vessels, start, rng.uniform(-np.pi, np.pi), rng.uniform(20, 40), rng.uniform(2.0, 4.0), 7, rng
        )
    for _ in range(int(rng.integers(100, 200))):  # vessels cut across by the slice
        cx, cy = rng.uniform(0, n), rng.uniform(0, hp)
        value = int(rng.uniform(90, 220))
        cv2.circle(
            vessels,
            (round(cx * 4), round(cy * 4)),
            round(rng.uniform(0.7, 2.2) * 4),
            value,
            -1,
            cv2.LINE_AA,
            2,
        )
    vess = cv2.GaussianBlur(vessels.astype(np.float32) / 255.0, (0, 0), 0.6)

    # Heart: anterior, sitting on the dome; bright blood pool in a darker myocardium.
    heart_centre: tuple[float, float] | None = None
    heart_r = 0.0
    if rng.random() < (0.75 if region == "thorax" else 0.5):
        ha, hb = rng.uniform(38, 55), rng.uniform(32, 48)
        hx = float(np.median(x_wall)) + rng.uniform(0.2, 0.4) * inner_w
        hy = float(y_dia[int(np.clip(hx, 0, n - 1))]) - hb * rng.uniform(0.6, 0.9)
        ang = rng.uniform(-40, -10)
        heart = _ellipse_mask(shape, (hx, hy), (ha + 2, hb + 2), ang) & inner & (yy < y_dia[None, :] + 4)
        paint(heart & (yy > hy - 0.3 * hb), "fat")  # epicardial fat, mostly at the base and apex
        myo = _ellipse_mask(shape, (hx + rng.uniform(-3, 3), hy + rng.uniform(0, 3)), (ha, hb), ang) & heart
        paint(myo, "myocardium")
        t_wall = rng.uniform(7, 12)
        paint(_ellipse_mask(shape, (hx, hy), (ha - t_wall, hb - t_wall), ang) & myo, "blood")
        lung &= ~heart
        liver &= ~heart
        heart_centre, heart_r = (hx, hy), 0.5 * (ha + hb)

    # Ribs cut in cross-section in the chest wall.
    for side_x, lim in ((x_wall - 4, y_dome + 50), (x_vb_front + 4, y_dome + 10)):
        y = rng.uniform(0, 30)
        while y < min(lim, hp):
            cx = float(side_x[int(y)])
            rib = _ellipse_mask(shape, (cx, y), (5.5, 7.5), rng.uniform(-30, 30)) & body & ~lung
            paint(rib, "cortex")
            paint(_ellipse_mask(shape, (cx, y), (3.5, 5.5), 0) & rib, "marrow")
            y += rng.uniform(22, 32)

    # Liver with a thin dark diaphragm muscle on top and bright hepatic vessels.
    paint(liver, "liver")
    paint(liver & (yy < y_dia[None, :] + rng.uniform(2.5, 4.0)), "diaphragm")
    porta = (
        float(np.median(x_vb_front)) - rng.uniform(40, 70),
        float(np.median(y_dia)) + rng.uniform(50, 80),
    )
    hep = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        _draw_tree(hep, porta, rng.uniform(-np.pi, 0.2), rng.uniform(20, 35), rng.uniform(3, 6), 5, rng)
    hep_f = cv2.GaussianBlur(hep.astype(np.float32) / 255.0, (0, 0), 0.7) * liver
    if rng.random() < 0.5:  # gallbladder, anterior-inferior
        gx = float(np.median(x_wall)) + rng.uniform(15, 35)
        gy = float(y_liver_bot[int(np.clip(gx, 0, n - 1))]) - rng.uniform(10, 25)
        gb = (
            _ellipse_mask(shape, (gx, gy), (rng.uniform(10, 16), rng.uniform(18, 30)), rng.uniform(-30, 30))
            & liver
        )
        paint(gb, "bile")
        liver &= ~gb

    # Abdomen: mesenteric fat and bowel loops (fluid-filled, collapsed, gas), a kidney.
    paint(abdomen, "abdomen")
    area = int(abdomen.sum())
    for _ in range(int(area / 900) + 3):
        cx = rng.uniform(np.median(x_wall), np.median(x_vb_front))
        cy = rng.uniform(float(np.min(y_liver_bot)) - 10, hp)
        ax = (rng.uniform(6, 18), rng.uniform(6, 22))
        ang = rng.uniform(0, 180)
        loop = _ellipse_mask(shape, (cx, cy), ax, ang) & abdomen
        kind = rng.random()
        paint(loop, "bowel_wall")
        core = _ellipse_mask(shape, (cx, cy), (ax[0] - 2.5, ax[1] - 2.5), ang) & loop
        if kind < 0.55:
            paint(core, "bowel_fluid")
        elif kind < 0.75:
            paint(core, "gas")
        else:
            paint(core, "fat")
    kx = float(np.median(x_vb_front)) - rng.uniform(25, 40)
    ky = float(y_liver_bot[int(np.clip(kx, 0, n - 1))]) + rng.uniform(5, 30)
    kid = (
        _ellipse_mask(shape, (kx, ky), (rng.uniform(20, 28), rng.uniform(40, 55)), rng.uniform(-15, 15))
        & inner
        & ~above
    )
    paint(kid, "kidney")
    paint(_ellipse_mask(shape, (kx - 4, ky), (11, 30), 0) & kid, "medulla")
    paint(_ellipse_mask(shape, (kx - 12, ky), (6, 16), 0) & kid, "fat")
    abdomen &= ~kid

    # Texture: two scales of smooth variation and a fine grain, per-tissue amplitude.
    lf = 0.6 * noise_field(shape, 6.0, rng) + 0.4 * noise_field(shape, 18.0, rng)
    hf = noise_field(shape, 0.9, rng)
    img *= 1.0 + tex_lf * lf + tex_hf * hf
    # Lung density increases posteriorly (gravity-dependent lung).
    img += lung * (levels["lung"] * 0.8 * np.clip((xx - x_wall[:, None]) / inner_w, 0, 1))
    img += vess * lung * (levels["blood"] * 0.35)
    img += hep_f * (levels["blood"] - levels["liver"]) * 0.8
    img = np.clip(img, 0.0, None)
    img = cv2.GaussianBlur(img, (0, 0), 0.5)  # anti-alias the drawn edges

    # A random smooth elastic warp turns the drawn ellipses and straight bands into
    # organic shapes (bent spine, lumpy heart, irregular bowel) without changing topology.
    ex = 5.0 * noise_field(shape, 22.0, rng) + 1.2 * noise_field(shape, 8.0, rng)
    ey = 5.0 * noise_field(shape, 22.0, rng) + 1.2 * noise_field(shape, 8.0, rng)
    map_x = (xx + ex).astype(np.float32)
    map_y = (yy + ey).astype(np.float32)
    img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def warp_mask(m: np.ndarray) -> np.ndarray:
        return (
            cv2.remap(m.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT) > 0
        )

    lung, liver, abdomen, body = warp_mask(lung), warp_mask(liver), warp_mask(abdomen), warp_mask(body)

    # Displacement patterns (unit breathing amplitudes), forward: reference point -> displaced.
    d_spine = np.clip((x_vb_front[:, None] - 5 - xx) / 25.0, 0, 1)  # 0 at the spine, 1 well in front
    wall_fall = 0.35 + 0.65 * smoothstep((xx - xa[:, None]) / 30.0)  # chest wall slides less
    above_prof = np.exp(-np.clip(y_dia[None, :] - yy, 0, None) / rng.uniform(70, 110))
    below_prof = np.exp(-np.clip(yy - y_dia[None, :], 0, None) / rng.uniform(150, 300))
    p_si = np.where(above, above_prof, below_prof) * smoothstep(d_spine) * wall_fall
    ap_lin = np.clip((x_vb_front[:, None] - xx) / np.maximum(x_vb_front[:, None] - xa[:, None], 1), 0, None)
    p_ap = np.minimum(ap_lin, 1.2) * (0.6 + 0.4 * np.exp(-np.abs(yy - y_dome) / 150))
    p_cx = np.zeros(shape, np.float32)
    p_cy = np.zeros(shape, np.float32)
    if heart_centre is not None:
        dx, dy = xx - heart_centre[0], yy - heart_centre[1]
        r = np.sqrt(dx * dx + dy * dy) + 1e-3
        prof = np.where(r < heart_r, r / heart_r, np.exp(-0.5 * ((r - heart_r) / 25.0) ** 2))
        p_cx, p_cy = -prof * dx / r, -prof * dy / r  # contraction towards the centre
    patterns = np.stack([p_si, p_ap, p_cx, p_cy], axis=-1).astype(np.float32)
    patterns = cv2.GaussianBlur(patterns, (0, 0), 6.0, borderType=cv2.BORDER_REPLICATE)

    # Coil sensitivity: anterior and posterior surface coils, fixed to the scanner.
    xo = np.arange(n, dtype=np.float32)[None, :]
    ya = float(np.median(xa))
    yp = float(np.median(xp))
    bias = (
        0.7
        + 0.45 * np.exp(-np.clip(xo - ya, 0, None) / 90.0)
        + 0.45 * np.exp(-np.clip(yp - xo, 0, None) / 90.0)
    )
    bias = bias * (1.0 + 0.08 * noise_field((n, n), 60.0, rng))
    bias = (bias / np.mean(bias)).astype(np.float32)

    masks = {"lung": lung, "liver": liver, "abdomen": abdomen, "body": body}
    return Anatomy(
        image=img.astype(np.float32),
        masks=masks,
        patterns=patterns,
        bias=np.broadcast_to(bias, (n, n)).astype(np.float32),
        levels=levels,
        heart_hz=float(rng.uniform(0.9, 1.4)),
    )
