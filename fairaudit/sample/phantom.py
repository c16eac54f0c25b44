"""A chest-radiograph-like phantom: anatomy, an optional lesion, and a per-site acquisition.

The image model works in the projection domain, as a radiograph is made:

1. Anatomy (:class:`Anatomy`, drawn once per patient) gives a map of line integrals of
   attenuation ``mu_t``: a chest wall of elliptical cross-section, two lung fields that
   remove tissue (air), a heart shadow and mediastinum, spine, posterior ribs, clavicles.
2. A finding (:class:`Lesion`) adds a rounded opacity inside one lung.
3. The acquisition (:class:`Site` and :class:`Exposure`) turns ``mu_t`` into a detector
   signal: primary transmission ``exp(-mu_t)`` blurred by the detector, plus scatter (a
   wide blur of the primary times the scatter-to-primary ratio: large without an
   anti-scatter grid, which lowers contrast), a Poisson number of quanta around the
   site's exposure, additive Gaussian detector (electronic) noise, then the logarithm and
   the site's processing (gain and offset) into 12-bit stored values.

The portable site has fewer quanta (more quantum noise), much more scatter (no grid, so
lower contrast for the lungs and for a lesion), more blur, a less stable exposure, an AP
view (magnified heart, less inflated lungs) and looser positioning.

Every random draw comes from the ``numpy.random.Generator`` handed in; nothing here
touches numpy's global random state. Coordinates are normalised: x from -1 (image left,
the patient's right in a PA view) to 1, y from -1 (top) to 1 (bottom), pixel centres at
``(i + 0.5) / size * 2 - 1``; so the same patient looks the same at any image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MAX_STORED = 4095  # 12 bits stored
LUNG, LESION = 1, 2  # mask labels
REFERENCE_SIZE = 512  # pixel pitches below are for a 512-pixel image; smaller images scale them


@dataclass(frozen=True)
class Site:
    """One acquisition site: its unit, DICOM identity and physics."""

    name: str
    modality: str  # "DX" (fixed digital units) or "CR" (portable computed radiography)
    view: str  # "PA" or "AP"
    manufacturer: str
    model: str
    station: str
    institution: str
    pitch_mm: float  # detector pixel pitch at REFERENCE_SIZE pixels
    kvp: float
    sid_mm: float  # source-to-image distance
    quanta: float  # mean quanta per pixel for unattenuated beam at nominal exposure
    exposure_sd: float  # sd of log exposure across images (automatic exposure control error)
    scatter_ratio: float  # scatter-to-primary scale (grid: low; no grid: high)
    blur_mm: float  # detector / focal-spot blur (Gaussian sigma)
    electronic_sd: float  # additive detector noise, in quanta
    gain: float  # stored values per unit of log signal
    offset: float  # stored value of the unattenuated beam
    heart_magnification: float  # AP views magnify the heart
    lung_inflation: float  # supine, portable patients inhale less
    rotation_sd_deg: float  # positioning: in-plane rotation
    shift_sd: float  # positioning: translation (normalised units)

    def spacing_mm(self, size: int) -> float:
        """Pixel spacing of a `size`-pixel image (the field of view is fixed per site)."""
        return round(self.pitch_mm * REFERENCE_SIZE / size, 4)


SITES: dict[str, Site] = {
    "fixed_1": Site(
        name="fixed_1",
        modality="DX",
        view="PA",
        manufacturer="Synthetic Imaging Co",
        model="SynthDR 5000",
        station="FIXED1-DR",
        institution="Synthetic General Hospital",
        pitch_mm=0.7,
        kvp=120.0,
        sid_mm=1800.0,
        quanta=3000.0,
        exposure_sd=0.08,
        scatter_ratio=0.12,
        blur_mm=0.6,
        electronic_sd=4.0,
        gain=700.0,
        offset=250.0,
        heart_magnification=1.0,
        lung_inflation=1.0,
        rotation_sd_deg=1.5,
        shift_sd=0.015,
    ),
    "fixed_2": Site(
        name="fixed_2",
        modality="DX",
        view="PA",
        manufacturer="Phantom Medical Systems",
        model="PMS Digital Chest 2",
        station="FIXED2-DR",
        institution="Synthetic Community Clinic",
        pitch_mm=0.75,
        kvp=125.0,
        sid_mm=1800.0,
        quanta=2600.0,
        exposure_sd=0.10,
        scatter_ratio=0.15,
        blur_mm=0.7,
        electronic_sd=5.0,
        gain=680.0,
        offset=290.0,
        heart_magnification=1.0,
        lung_inflation=1.0,
        rotation_sd_deg=1.5,
        shift_sd=0.015,
    ),
    "portable": Site(
        name="portable",
        modality="CR",
        view="AP",
        manufacturer="Mobile Radiography Ltd",
        model="MobileCR 200",
        station="WARD-PORTABLE",
        institution="Synthetic General Hospital",
        pitch_mm=0.8,
        kvp=90.0,
        sid_mm=1000.0,
        quanta=400.0,
        exposure_sd=0.30,
        scatter_ratio=0.9,
        blur_mm=1.4,
        electronic_sd=12.0,
        gain=800.0,
        offset=360.0,
        heart_magnification=1.12,
        lung_inflation=0.92,
        rotation_sd_deg=4.0,
        shift_sd=0.04,
    ),
}


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest, in normalised coordinates."""

    body_half_width: float
    tissue: float  # mu_t through the centre of the chest wall
    lung_cx: float  # distance of each lung centre from the midline
    lung_top: float
    lung_height: float
    lung_width: float  # half-width of a lung at its widest
    lung_air: float  # mu_t removed at the thickest part of a lung
    heart_cx: float
    heart_cy: float
    heart_w: float
    heart_h: float
    heart_angle: float  # radians
    rib_top: float
    rib_spacing: float
    rib_width: float
    rib_mu: float
    clavicle_y: float
    spine_mu: float


@dataclass(frozen=True)
class Lesion:
    """A rounded opacity (nodule or focal consolidation) inside one lung."""

    side: int  # -1: image-left lung, +1: image-right lung
    u: float  # position across the lung, in units of its half-width (|u| < 1)
    v: float  # position down the lung, in units of its half-height (|v| < 1)
    radius: float  # normalised units
    aspect: float  # minor / major axis
    angle: float  # radians
    mu: float  # extra mu_t at its centre


@dataclass(frozen=True)
class Exposure:
    """What one acquisition drew: exposure factor and patient positioning."""

    factor: float  # quanta multiplier (1 = nominal)
    rotation_deg: float
    shift_x: float
    shift_y: float


@dataclass(frozen=True)
class Rendered:
    """A rendered image and what a reader could see of its lesion."""

    pixels: np.ndarray  # uint16 (size, size), 0..4095, bright = attenuating (MONOCHROME2 sense)
    mask: np.ndarray  # uint8 (size, size): 0 background, 1 lung field, 2 lesion
    lesion_cnr: float  # lesion contrast over noise sd at its centre, in the log signal (0: none)


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """A patient's chest, varied within a plausible adult range."""
    u = rng.uniform
    return Anatomy(
        body_half_width=u(0.84, 0.93),
        tissue=u(3.0, 3.5),
        lung_cx=u(0.43, 0.49),
        lung_top=u(-0.80, -0.70),
        lung_height=u(1.25, 1.45),
        lung_width=u(0.31, 0.37),
        lung_air=u(1.7, 2.1),
        heart_cx=u(0.12, 0.17),
        heart_cy=u(0.28, 0.34),
        heart_w=u(0.32, 0.38),
        heart_h=u(0.24, 0.29),
        heart_angle=u(-0.45, -0.25),
        rib_top=u(-0.80, -0.74),
        rib_spacing=u(0.135, 0.155),
        rib_width=u(0.022, 0.030),
        rib_mu=u(0.18, 0.26),
        clavicle_y=u(-0.80, -0.72),
        spine_mu=u(0.7, 0.9),
    )


def draw_lesion(rng: np.random.Generator) -> Lesion:
    """A lesion placed well inside a lung, clear of the heart shadow."""
    side = int(rng.choice([-1, 1]))
    v = rng.uniform(-0.55, 0.45 if side < 0 else 0.15)
    u = rng.uniform(-0.45, 0.45)
    return Lesion(
        side=side,
        u=float(u),
        v=float(v),
        radius=float(rng.uniform(0.055, 0.11)),
        aspect=float(rng.uniform(0.7, 1.0)),
        angle=float(rng.uniform(0.0, np.pi)),
        mu=float(rng.uniform(0.28, 0.44)),
    )


def draw_exposure(site: Site, rng: np.random.Generator) -> Exposure:
    """Exposure and positioning of one acquisition at `site`."""
    return Exposure(
        factor=float(np.exp(rng.normal(0.0, site.exposure_sd))),
        rotation_deg=float(rng.normal(0.0, site.rotation_sd_deg)),
        shift_x=float(rng.normal(0.0, site.shift_sd)),
        shift_y=float(rng.normal(0.0, site.shift_sd)),
    )


def _grid(size: int, exposure: Exposure) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical coordinates of each pixel centre (positioning undone)."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    x, y = x - exposure.shift_x, y - exposure.shift_y
    t = np.deg2rad(exposure.rotation_deg)
    ct, st = np.cos(t), np.sin(t)
    return ct * x + st * y, -st * x + ct * y


def _lung_geometry(a: Anatomy, site: Site, side: int) -> tuple[float, float, float]:
    """(centre x, centre y, half-height) of the lung on `side`."""
    height = a.lung_height * site.lung_inflation
    return side * a.lung_cx, a.lung_top + height / 2.0, height / 2.0


def _lung_half_width(a: Anatomy, v: np.ndarray | float) -> np.ndarray | float:
    """Half-width of a lung at relative height v: narrow apex, full width from mid-lung down."""
    return a.lung_width * (0.5 + 0.5 * np.sqrt(np.clip((np.asarray(v) + 1.0) / 1.1, 0.0, 1.0)))


def mu_map(
    a: Anatomy, site: Site, lesion: Lesion | None, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu_t, lung-field mask, lesion mask) on anatomical coordinates x, y."""
    # Chest wall: elliptical cross-section, narrowing to the neck at the top.
    half = a.body_half_width * (1.0 - 0.45 * np.clip((-0.82 - y) / 0.18, 0.0, 1.0))
    body = np.clip(1.0 - (x / half) ** 2, 0.0, None)
    mu = a.tissue * np.sqrt(body)
    # Abdomen below the diaphragm: a little denser.
    mu += 0.35 * np.sqrt(body) / (1.0 + np.exp(-(y - 0.62) / 0.04))
    inside = body > 0.0

    # Heart (magnified in AP views) and its occupancy of the lung volume.
    m = site.heart_magnification
    ca, sa = np.cos(a.heart_angle), np.sin(a.heart_angle)
    hx, hy = x - a.heart_cx * m, y - a.heart_cy
    r2 = ((ca * hx + sa * hy) / (a.heart_w * m)) ** 2 + ((-sa * hx + ca * hy) / (a.heart_h * m)) ** 2
    heart = np.clip(1.0 - r2, 0.0, None)
    heart_occupancy = np.clip(heart * 5.0, 0.0, 1.0)
    mu += 0.35 * np.sqrt(heart)

    # Lungs: superellipses with a narrow apex; air removes tissue, most at their centre.
    lungs = np.zeros_like(mu, dtype=bool)
    for side in (-1, 1):
        cx, cy, b = _lung_geometry(a, site, side)
        v = (y - cy) / b
        u = (x - cx) / _lung_half_width(a, v)
        r = np.abs(u) ** 2.4 + np.abs(v) ** 2.4
        thick = np.sqrt(np.clip(1.0 - r, 0.0, None))
        mu -= a.lung_air * thick * (1.0 - 0.9 * heart_occupancy)
        lungs |= r < 1.0
    lung_field = lungs & (r2 >= 1.0) & inside

    # Spine with a hint of vertebral bodies.
    spine = np.sqrt(np.clip(1.0 - (x / 0.075) ** 2, 0.0, None))
    mu += a.spine_mu * spine * (0.85 + 0.15 * np.cos(2.0 * np.pi * y / 0.11)) * inside

    # Posterior ribs: arcs rising then falling away from the spine, with a denser cortex.
    ax = np.abs(x)
    t = np.clip((ax - 0.08) / 0.82, 0.0, 1.0)
    along = (ax > 0.08) & inside
    for k in range(10):
        centre = a.rib_top + k * a.rib_spacing - 0.09 * np.sin(np.pi * t) + 0.30 * t**2
        d = np.abs(y - centre) / a.rib_width
        rib = np.sqrt(np.clip(1.0 - d**2, 0.0, None)) + 0.5 * np.exp(-(((d - 0.9) / 0.25) ** 2))
        mu += a.rib_mu * rib * along
    # Clavicles.
    cl = (ax > 0.04) & (ax < 0.6) & inside
    d = np.abs(y - (a.clavicle_y + 0.10 * (ax - 0.04))) / 0.028
    mu += 0.32 * np.sqrt(np.clip(1.0 - d**2, 0.0, None)) * cl

    lesion_mask = np.zeros_like(lung_field)
    if lesion is not None:
        lx, ly = lesion_centre(a, site, lesion)
        cl_, sl = np.cos(lesion.angle), np.sin(lesion.angle)
        dx, dy = x - lx, y - ly
        q2 = ((cl_ * dx + sl * dy) / lesion.radius) ** 2 + (
            (-sl * dx + cl_ * dy) / (lesion.radius * lesion.aspect)
        ) ** 2
        mu += lesion.mu * np.sqrt(np.clip(1.0 - q2, 0.0, None)) ** 0.7
        lesion_mask = q2 < 1.0
    return np.clip(mu, 0.0, None), lung_field, lesion_mask


def lesion_centre(a: Anatomy, site: Site, lesion: Lesion) -> tuple[float, float]:
    """Anatomical coordinates of the lesion centre."""
    cx, cy, b = _lung_geometry(a, site, lesion.side)
    return cx + lesion.u * float(_lung_half_width(a, lesion.v)), cy + lesion.v * b


def _wide_blur(img: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Gaussian blur with sigma = `sigma_fraction` of the width, done on a 64-pixel copy."""
    size = img.shape[0]
    small = ndimage.zoom(img, 64.0 / size, order=1, mode="nearest", grid_mode=True)
    small = ndimage.gaussian_filter(small, sigma_fraction * 64.0, mode="nearest")
    out = ndimage.zoom(small, size / 64.0, order=1, mode="nearest", grid_mode=True)
    return out[:size, :size]


def render(
    anatomy: Anatomy,
    lesion: Lesion | None,
    site: Site,
    exposure: Exposure,
    size: int,
    rng: np.random.Generator,
) -> Rendered:
    """Render one radiograph of `size` x `size` pixels; noise from `rng`."""
    x, y = _grid(size, exposure)
    mu, lung_field, lesion_mask = mu_map(anatomy, site, lesion, x, y)
    mask = np.where(lung_field, LUNG, 0).astype(np.uint8)
    centre = (0, 0)
    if lesion is not None:
        # At any size the lesion covers at least the pixel nearest its centre.
        lx, ly = lesion_centre(anatomy, site, lesion)
        t = np.deg2rad(exposure.rotation_deg)
        px = np.cos(t) * lx - np.sin(t) * ly + exposure.shift_x
        py = np.sin(t) * lx + np.cos(t) * ly + exposure.shift_y
        i = int(np.clip(np.floor((py + 1.0) / 2.0 * size), 0, size - 1))
        j = int(np.clip(np.floor((px + 1.0) / 2.0 * size), 0, size - 1))
        lesion_mask[i, j] = True
        centre = (i, j)
        mask[lesion_mask] = LESION

    primary = np.exp(-mu)
    sigma_px = site.blur_mm / site.spacing_mm(size)
    primary_blurred = ndimage.gaussian_filter(primary, sigma_px, mode="nearest")
    scatter = site.scatter_ratio * _wide_blur(primary, 0.12)
    expected = site.quanta * exposure.factor * (primary_blurred + scatter)
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, site.electronic_sd, size=counts.shape)
    # The site's processing normalises to its nominal exposure; exposure errors shift brightness.
    log_signal = -np.log(np.maximum(counts, 0.5) / site.quanta)
    stored = np.clip(np.rint(site.offset + site.gain * log_signal), 0, MAX_STORED).astype(np.uint16)

    cnr = 0.0
    if lesion is not None:
        # Contrast of the lesion at its centre in the log signal, over the quantum +
        # electronic noise there: what a reader's evidence for the finding scales with.
        ci, cj = centre
        mu_bg, _, _ = mu_map(anatomy, site, None, x[ci : ci + 1, cj : cj + 1], y[ci : ci + 1, cj : cj + 1])
        mu_lesion = float(mu[ci, cj])
        s = float(scatter[ci, cj])
        n_bg = float(np.exp(-mu_bg[0, 0])) + s
        n_lesion = np.exp(-mu_lesion) + s
        contrast = np.log(n_bg / n_lesion)
        quanta = site.quanta * exposure.factor * n_lesion
        noise = np.sqrt(quanta + site.electronic_sd**2) / quanta
        cnr = float(contrast / noise)
    return Rendered(pixels=stored, mask=mask, lesion_cnr=cnr)
