"""A chest-radiograph-like phantom: anatomy, an optional lesion, and a per-site acquisition.

The image model works in the projection domain, as a radiograph is made:

1. Anatomy (:class:`Anatomy`, drawn once per patient) gives a map of line integrals of
   attenuation ``mu_t``: a chest wall of elliptical cross-section, two lung fields that
   remove tissue (air), a heart shadow and mediastinum, spine, posterior ribs, clavicles.
2. Findings: a focal consolidation (:class:`Lesion`) adds a rounded opacity inside one
   lung; the diffuse ones (:class:`Findings`) enlarge the heart (cardiomegaly), fill the
   base of a lung with fluid (effusion: a meniscus on an upright PA view, a faint graded
   haze on a supine AP one, as on real portable films), collapse a plate-like band of a
   lung (atelectasis), or put air between the lung and the chest wall (pneumothorax).
   Each has a severity drawn from a wide range, so the mildest are hard to see.
3. The acquisition (:class:`Site` and :class:`Exposure`) turns ``mu_t`` into a detector
   signal: primary transmission ``exp(-mu_t)`` blurred by the detector, plus scatter (a
   wide blur of the primary times the scatter-to-primary ratio: large without an
   anti-scatter grid, which lowers contrast), a Poisson number of quanta around the
   site's exposure, additive Gaussian detector (electronic) noise, then the logarithm and
   the site's processing (gain and offset) into 12-bit stored values.

The portable site has fewer quanta (more quantum noise), much more scatter (no grid, so
lower contrast for the lungs and for a lesion), more blur, a less stable exposure, an AP
view (less inflated lungs) and looser positioning. An AP view also magnifies the heart; the
portable site leaves that out (heart_magnification 1.0), or every heart it images would read
as enlarged and the sample's planted effect (findings missed there) would be hidden behind
cardiomegaly called for everyone imaged on it.

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
        heart_magnification=1.0,  # an AP view magnifies the heart; left out (see the module doc)
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
class Findings:
    """One patient's diffuse findings, each a severity (0: absent) and, where it has one,
    its side (-1: image-left lung, +1: image-right lung)."""

    cardiomegaly: float = 0.0  # heart enlargement, as a fraction of its size
    effusion: float = 0.0  # fluid height, as a fraction of the lung's half-height
    effusion_side: int = 1
    atelectasis: float = 0.0  # share of the air a band of lung loses
    atelectasis_side: int = -1
    atelectasis_v: float = 0.3  # the band's height in the lung (-1 apex, 1 base)
    pneumothorax: float = 0.0  # width of the pleural air, as a fraction of the lung's size
    pneumothorax_side: int = 1


NO_FINDINGS = Findings()


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


#: The consolidation's size and density: from a faint small opacity to a dense one.
LESION_RADIUS_RANGE = (0.06, 0.12)
LESION_MU_RANGE = (0.25, 0.55)


def draw_lesion(rng: np.random.Generator) -> Lesion:
    """A lesion placed well inside a lung, clear of the heart shadow."""
    side = int(rng.choice([-1, 1]))
    v = rng.uniform(-0.55, 0.45 if side < 0 else 0.15)
    u = rng.uniform(-0.45, 0.45)
    return Lesion(
        side=side,
        u=float(u),
        v=float(v),
        radius=float(rng.uniform(*LESION_RADIUS_RANGE)),
        aspect=float(rng.uniform(0.7, 1.0)),
        angle=float(rng.uniform(0.0, np.pi)),
        mu=float(rng.uniform(*LESION_MU_RANGE)),
    )


#: Severity ranges of the diffuse findings: wide, so that the mildest are within the normal
#: variation (a heart a few percent larger than another patient's) or under the noise.
CARDIOMEGALY_RANGE = (0.02, 0.20)
EFFUSION_RANGE = (0.03, 0.26)
ATELECTASIS_RANGE = (0.05, 0.35)
PNEUMOTHORAX_RANGE = (0.06, 0.32)


def draw_findings(
    rng: np.random.Generator,
    *,
    cardiomegaly: bool = False,
    effusion: bool = False,
    atelectasis: bool = False,
    pneumothorax: bool = False,
) -> Findings:
    """Severities and sides of the present findings (every draw is made whatever is present,
    so one finding's presence does not shift another's severity)."""
    u = rng.uniform
    sev = {
        "cardiomegaly": u(*CARDIOMEGALY_RANGE),
        "effusion": u(*EFFUSION_RANGE),
        "atelectasis": u(*ATELECTASIS_RANGE),
        "pneumothorax": u(*PNEUMOTHORAX_RANGE),
    }
    sides = rng.choice([-1, 1], size=3)
    band = u(0.0, 0.6)
    present = {
        "cardiomegaly": cardiomegaly,
        "effusion": effusion,
        "atelectasis": atelectasis,
        "pneumothorax": pneumothorax,
    }
    return Findings(
        **{k: float(v) if present[k] else 0.0 for k, v in sev.items()},
        effusion_side=int(sides[0]),
        atelectasis_side=int(sides[1]),
        atelectasis_v=float(band),
        pneumothorax_side=int(sides[2]),
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
    tiles = _Tiles.grid(size, exposure)
    return tiles.join(tiles.x), tiles.join(tiles.y)


def _lung_geometry(a: Anatomy, site: Site, side: int) -> tuple[float, float, float]:
    """(centre x, centre y, half-height) of the lung on `side`."""
    height = a.lung_height * site.lung_inflation
    return side * a.lung_cx, a.lung_top + height / 2.0, height / 2.0


def _lung_half_width(a: Anatomy, v: np.ndarray | float) -> np.ndarray | float:
    """Half-width of a lung at relative height v: narrow apex, full width from mid-lung down."""
    return a.lung_width * (0.5 + 0.5 * np.sqrt(np.clip((np.asarray(v) + 1.0) / 1.1, 0.0, 1.0)))


# The image is drawn in square tiles, and each feature is evaluated only on the tiles that
# can hold a nonzero part of it: at 1024 pixels most features cover a small part of the
# image. A skipped tile would only have added (or subtracted) exact zeros, so every pixel
# gets the same float64 operations in the same order as a full-image evaluation, hence the
# same bits at any size (tests compare with skip_tiles=False).
_TILE = 32
_MARGIN = 1.001  # relative slack on support radii: rounding never reaches it
_EPS = 1e-9  # absolute slack on band edges, in normalised units
# exp(-z**2) is exactly 0.0 in float64 from z**2 > 745.2, so a rib's ring term
# exp(-((d - 0.9) / 0.25) ** 2) is 0.0 from d = 0.9 + 0.25 * 27.5.
_RIB_TAIL = 0.9 + 0.25 * 27.5


class _Tiles:
    """Coordinates as (tiles, h, w) arrays of square tiles, with each tile's bounds."""

    def __init__(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int], skip: bool = True) -> None:
        self.x, self.y, self.shape, self.skip = x, y, shape, skip
        self.h, self.w = x.shape[1:]
        self.across = -(-shape[1] // self.w)  # tiles per row of tiles
        self.xlo, self.xhi = x.min(axis=(1, 2)), x.max(axis=(1, 2))
        self.ylo, self.yhi = y.min(axis=(1, 2)), y.max(axis=(1, 2))
        straddle = (self.xlo <= 0.0) & (self.xhi >= 0.0)
        self.axlo = np.where(straddle, 0.0, np.minimum(np.abs(self.xlo), np.abs(self.xhi)))
        self.axhi = np.maximum(np.abs(self.xlo), np.abs(self.xhi))

    @classmethod
    def grid(cls, size: int, exposure: Exposure) -> _Tiles:
        """The pixel centres of a `size`-pixel image, positioning undone.

        Built from the 1-D row and column coordinates by broadcasting: the same
        products and sums per pixel as on a full meshgrid, without its temporaries.
        """
        side = min(_TILE, size)
        n = -(-size // side)
        c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
        c = np.pad(c, (0, n * side - size), mode="edge")  # whole tiles; cut off by join
        t = np.deg2rad(exposure.rotation_deg)
        ct, st = np.cos(t), np.sin(t)
        cx = (c - exposure.shift_x).reshape(1, n, 1, side)  # x varies along a row
        cy = (c - exposure.shift_y).reshape(n, 1, side, 1)
        x = (ct * cx + st * cy).reshape(-1, side, side)
        y = (-st * cx + ct * cy).reshape(-1, side, side)
        return cls(x, y, (size, size))

    @classmethod
    def image(cls, x: np.ndarray, y: np.ndarray, skip: bool = True) -> _Tiles:
        """Tiles of 2-D coordinate arrays, edge-padded to whole tiles."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        h, w = min(_TILE, x.shape[0]), min(_TILE, x.shape[1])

        def split(a: np.ndarray) -> np.ndarray:
            a = np.pad(a, ((0, -a.shape[0] % h), (0, -a.shape[1] % w)), mode="edge")
            ty, tx = a.shape[0] // h, a.shape[1] // w
            return a.reshape(ty, h, tx, w).transpose(0, 2, 1, 3).reshape(-1, h, w)

        return cls(split(x), split(y), x.shape, skip)

    def join(self, t: np.ndarray) -> np.ndarray:
        """(tiles, h, w) -> (rows, cols), padding removed."""
        rows, cols = self.shape
        down = t.shape[0] // self.across
        a = t.reshape(down, self.across, self.h, self.w).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(a.reshape(down * self.h, self.across * self.w)[:rows, :cols])

    def at(self, t: np.ndarray, i: int, j: int) -> np.ndarray:
        """Pixel (i, j) of a tiled array, as a 1 x 1 array."""
        return t[
            (i // self.h) * self.across + j // self.w,
            i % self.h : i % self.h + 1,
            j % self.w : j % self.w + 1,
        ]

    def near(self, where: np.ndarray) -> np.ndarray:
        """Indices where the per-tile test `where` holds (all of them when not skipping)."""
        return np.flatnonzero(where) if self.skip else np.arange(where.size)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        """Indices of the tiles that may hold a point of [x0, x1] x [y0, y1]."""
        return self.near((self.xhi >= x0) & (self.xlo <= x1) & (self.yhi >= y0) & (self.ylo <= y1))


def mu_map(
    a: Anatomy,
    site: Site,
    lesion: Lesion | None,
    x: np.ndarray,
    y: np.ndarray,
    *,
    skip_tiles: bool = True,
    findings: Findings = NO_FINDINGS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu_t, lung-field mask, lesion mask) on anatomical coordinates x, y (2-D arrays).

    `skip_tiles=False` evaluates every feature on every pixel: slower, the same bits.
    """
    tiles = _Tiles.image(x, y, skip_tiles)
    parts = _mu_tiles(a, site, lesion, tiles, findings)
    return tuple(tiles.join(part) for part in parts)  # type: ignore[return-value]


def _mu_tiles(
    a: Anatomy, site: Site, lesion: Lesion | None, t: _Tiles, f: Findings = NO_FINDINGS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mu_map on tiles; temporaries are reused (in-place operations give the same bits)."""
    x, y = t.x, t.y
    # Chest wall: elliptical cross-section, narrowing to the neck at the top.
    # half = a.body_half_width * (1.0 - 0.45 * np.clip((-0.82 - y) / 0.18, 0.0, 1.0))
    half = np.subtract(-0.82, y)
    half /= 0.18
    np.clip(half, 0.0, 1.0, out=half)
    half *= 0.45
    np.subtract(1.0, half, out=half)
    half *= a.body_half_width
    # body = np.clip(1.0 - (x / half) ** 2, 0.0, None)
    body = np.divide(x, half, out=half)
    np.square(body, out=body)
    np.subtract(1.0, body, out=body)
    np.clip(body, 0.0, None, out=body)
    inside = body > 0.0
    root = np.sqrt(body, out=body)
    mu = a.tissue * root
    # Abdomen below the diaphragm: a little denser.
    # mu += 0.35 * root / (1.0 + np.exp(-(y - 0.62) / 0.04))
    below = np.subtract(y, 0.62)
    np.negative(below, out=below)
    below /= 0.04
    np.exp(below, out=below)
    below += 1.0
    root *= 0.35
    root /= below
    mu += root
    del half, body, root, below

    # Heart (magnified in AP views) and its occupancy of the lung volume; zero outside
    # the circle of its larger semi-axis.
    m = site.heart_magnification * (1.0 + f.cardiomegaly)
    ca, sa = np.cos(a.heart_angle), np.sin(a.heart_angle)
    hx0, reach = a.heart_cx * m, max(a.heart_w, a.heart_h) * m * _MARGIN
    k = t.box(hx0 - reach, hx0 + reach, a.heart_cy - reach, a.heart_cy + reach)
    hx, hy = x[k] - hx0, y[k] - a.heart_cy
    r2 = ((ca * hx + sa * hy) / (a.heart_w * m)) ** 2 + ((-sa * hx + ca * hy) / (a.heart_h * m)) ** 2
    heart = np.clip(1.0 - r2, 0.0, None)
    heart_occupancy = np.zeros_like(mu)
    heart_occupancy[k] = np.clip(heart * 5.0, 0.0, 1.0)
    mu[k] += 0.35 * np.sqrt(heart)
    beside_heart = np.ones_like(inside)
    beside_heart[k] = r2 >= 1.0

    # Lungs: superellipses with a narrow apex; air removes tissue, most at their centre.
    # Zero outside the box |x - cx| < lung_width, |y - cy| < half-height.
    lungs = np.zeros_like(inside)
    for side in (-1, 1):
        cx, cy, b = _lung_geometry(a, site, side)
        dx, dy = a.lung_width * _MARGIN, b * _MARGIN
        k = t.box(cx - dx, cx + dx, cy - dy, cy + dy)
        v = (y[k] - cy) / b
        u = (x[k] - cx) / _lung_half_width(a, v)
        r = np.abs(u) ** 2.4 + np.abs(v) ** 2.4
        thick = np.sqrt(np.clip(1.0 - r, 0.0, None))
        air = a.lung_air * thick * (1.0 - 0.9 * heart_occupancy[k])
        if _has_lung_finding(f, side):
            air = _lung_findings(f, site, side, u, v, r, air)
        mu[k] -= air
        lungs[k] |= r < 1.0
    lung_field = lungs & beside_heart & inside
    del heart_occupancy, beside_heart, lungs

    # Spine with a hint of vertebral bodies; zero from |x| = 0.075.
    k = t.near(t.axlo < 0.075 * _MARGIN)
    spine = np.sqrt(np.clip(1.0 - (x[k] / 0.075) ** 2, 0.0, None))
    mu[k] += a.spine_mu * spine * (0.85 + 0.15 * np.cos(2.0 * np.pi * y[k] / 0.11)) * inside[k]

    ax = np.abs(x)
    _add_ribs(a, t, mu, ax, inside)

    # Clavicles: centre line from clavicle_y (|x| = 0.04) to clavicle_y + 0.056 (|x| = 0.6).
    k = t.box(-0.6 - _EPS, 0.6 + _EPS, a.clavicle_y - 0.028 * _MARGIN, a.clavicle_y + 0.056 + 0.028 * _MARGIN)
    k = k[t.axhi[k] > 0.04 - _EPS] if t.skip else k
    axk = ax[k]
    cl = (axk > 0.04) & (axk < 0.6) & inside[k]
    d = np.abs(y[k] - (a.clavicle_y + 0.10 * (axk - 0.04))) / 0.028
    mu[k] += 0.32 * np.sqrt(np.clip(1.0 - d**2, 0.0, None)) * cl

    lesion_mask = np.zeros_like(inside)
    if lesion is not None:
        lx, ly = lesion_centre(a, site, lesion)
        reach = lesion.radius * _MARGIN  # the major semi-axis
        k = t.box(lx - reach, lx + reach, ly - reach, ly + reach)
        cl_, sl = np.cos(lesion.angle), np.sin(lesion.angle)
        dx, dy = x[k] - lx, y[k] - ly
        q2 = ((cl_ * dx + sl * dy) / lesion.radius) ** 2 + (
            (-sl * dx + cl_ * dy) / (lesion.radius * lesion.aspect)
        ) ** 2
        mu[k] += lesion.mu * np.sqrt(np.clip(1.0 - q2, 0.0, None)) ** 0.7
        lesion_mask[k] = q2 < 1.0
    np.clip(mu, 0.0, None, out=mu)
    return mu, lung_field, lesion_mask


def _has_lung_finding(f: Findings, side: int) -> bool:
    return (
        (f.effusion > 0 and f.effusion_side == side)
        or (f.atelectasis > 0 and f.atelectasis_side == side)
        or (f.pneumothorax > 0 and f.pneumothorax_side == side)
    )


def _lung_findings(
    f: Findings, site: Site, side: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, air: np.ndarray
) -> np.ndarray:
    """The air a lung removes from mu_t once its diffuse findings are drawn in.

    Fluid and collapsed lung replace air (a share `fill` of it is lost); pleural air adds
    lucency in a rim along the apex and the lateral wall, edged by the visceral pleural
    line. Every term is a multiple of the
    lung's own thickness or of (r < 1), so it is exactly 0.0 outside the lung and the tiled
    drawing keeps its bits.
    """
    fill = np.zeros_like(air)
    if f.effusion > 0 and f.effusion_side == side:
        h = 2.0 * f.effusion  # fluid height in units of v (the lung spans v in [-1, 1])
        if site.view == "PA":  # upright: fluid settles at the base, climbing the lateral wall
            top = 1.0 - h - 0.35 * h * np.clip(side * u, 0.0, None) ** 2
            fill += 0.6 * np.clip((v - top) / 0.05, 0.0, 1.0)  # partly aerated: not fully opaque
        else:  # supine AP (portable): it layers behind the lung, a faint haze graded to the base
            fill += 0.35 * f.effusion * np.clip((v + 0.6) / 1.6, 0.0, 1.0)
    if f.atelectasis > 0 and f.atelectasis_side == side:
        fill += f.atelectasis * np.exp(-(((v - f.atelectasis_v) / 0.06) ** 2)) * np.clip(1.0 - u**2, 0.0, 1.0)
    np.clip(fill, 0.0, 1.0, out=fill)
    out = air * (1.0 - fill)
    if f.pneumothorax > 0 and f.pneumothorax_side == side:
        inner = 1.0 - f.pneumothorax  # the collapsed lung's edge, in units of r
        upper = np.clip((0.3 - v) / 0.3, 0.0, 1.0) * (r < 1.0)  # apex and upper lateral wall
        rim = np.clip((r - inner) / 0.04, 0.0, 1.0) * upper
        line = np.exp(-(((r - inner) / 0.02) ** 2)) * upper
        out = out + 0.55 * rim - 0.12 * line
    return out


def _add_ribs(a: Anatomy, t: _Tiles, mu: np.ndarray, ax: np.ndarray, inside: np.ndarray) -> None:
    """Posterior ribs: arcs rising then falling away from the spine, with a denser cortex.

    Rib r is centred on y = top_r - arch(x) + drop(x); its profile in d = |y - centre| / width
    is a half-disc (d < 1) plus a Gaussian ring, exactly 0.0 from d = _RIB_TAIL. Tiles
    beyond d = 1 get the ring term only, and a tile is skipped where the ring adds less
    than 2**-56 of the smallest mu there: under half a unit in the last place, so
    mu + ring == mu. Ribs only add, so mu's smallest value before the ribs is a lower
    bound all along (tiles where it is 0 or negative are never skipped).
    """
    # s = np.clip((ax - 0.08) / 0.82, 0.0, 1.0)
    s = np.subtract(ax, 0.08)
    s /= 0.82
    np.clip(s, 0.0, 1.0, out=s)
    along_mask = (ax > 0.08) & inside
    along = along_mask.astype(np.float64)  # x * 1.0 and x * 0.0: the bits of x * True, x * False
    # Smallest mu a rib adds to in each tile (+inf: none); a ring under 2**-56 of it is lost.
    floor = np.where(along_mask, mu, np.inf).min(axis=(1, 2)) * 2.0**-56
    del along_mask
    # arch, drop = 0.09 * np.sin(np.pi * s), 0.30 * s**2
    arch = np.multiply(s, np.pi)
    np.sin(arch, out=arch)
    arch *= 0.09
    drop = np.square(s, out=s)
    drop *= 0.30
    offset = drop - arch  # centre - top_r, up to rounding (covered by _EPS)
    lo, hi = offset.min(axis=(1, 2)) - _EPS, offset.max(axis=(1, 2)) + _EPS
    del offset
    w = a.rib_width
    for r in range(10):
        top = a.rib_top + r * a.rib_spacing
        # Distance (normalised) between each tile's y range and the rib's range of centres.
        gap = np.maximum(t.ylo - (top + hi), (top + lo) - t.yhi)
        core = t.near((gap < w * _MARGIN) & (t.axhi > 0.08))
        z = (np.maximum(gap / w, 1.0) - 0.9) / 0.25
        seen = (gap < w * _RIB_TAIL * _MARGIN) & (a.rib_mu * 0.5 * np.exp(-(z**2)) >= floor)
        ring = np.setdiff1d(t.near(seen), core, assume_unique=True)
        for j, with_core in ((core, True), (ring, False)):
            if j.size == 0:
                continue
            # centre = top - arch + drop; d = |y - centre| / w
            d = np.subtract(top, arch[j])
            d += drop[j]
            np.subtract(t.y[j], d, out=d)
            np.abs(d, out=d)
            d /= w
            # rib = sqrt(clip(1 - d**2, 0)) + 0.5 * exp(-(((d - 0.9) / 0.25) ** 2))
            rib = np.subtract(d, 0.9)
            rib /= 0.25
            np.square(rib, out=rib)
            np.negative(rib, out=rib)
            np.exp(rib, out=rib)
            rib *= 0.5
            if with_core:  # elsewhere the half-disc is exactly 0.0, and 0.0 + z == z
                np.square(d, out=d)
                np.subtract(1.0, d, out=d)
                np.clip(d, 0.0, None, out=d)
                np.sqrt(d, out=d)
                rib = np.add(d, rib, out=rib)
            # mu += a.rib_mu * rib * along
            rib *= a.rib_mu
            rib *= along[j]
            mu[j] += rib


def lesion_centre(a: Anatomy, site: Site, lesion: Lesion) -> tuple[float, float]:
    """Anatomical coordinates of the lesion centre."""
    cx, cy, b = _lung_geometry(a, site, lesion.side)
    return cx + lesion.u * float(_lung_half_width(a, lesion.v)), cy + lesion.v * b


def _wide_blur(img: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Gaussian blur with sigma = `sigma_fraction` of the width, done on a 64-pixel copy."""
    size = img.shape[0]
    small = ndimage.zoom(img, 64.0 / size, order=1, mode="nearest", grid_mode=True)
    small = ndimage.gaussian_filter(small, sigma_fraction * 64.0, mode="nearest")
    return _zoom_linear(small, size)


def _zoom_linear(small: np.ndarray, size: int) -> np.ndarray:
    """``ndimage.zoom(small, size / n, order=1, mode="nearest", grid_mode=True)`` of an
    n x n array, with the same float64 operations in the same order (so the same bits;
    tested against scipy), three times faster at 1024: each output row mixes two input
    rows, computed once per row, and each output column repeats an input column.
    """
    n = small.shape[0]
    # Input coordinate of each output pixel centre; linear weights as scipy computes them.
    cc = np.arange(size, dtype=np.float64)
    cc += 0.5
    cc *= n / size
    cc -= 0.5
    floor = np.floor(cc)
    w0 = 1.0 - (cc - floor)
    w1 = 1.0 - w0
    first = np.clip(floor.astype(np.intp), 0, n - 1)  # "nearest": edge pixels repeat
    second = np.clip(floor.astype(np.intp) + 1, 0, n - 1)
    # scipy sums the four neighbours in this order, each as (value * row weight) * column weight.
    rows0, rows1 = small[first] * w0[:, None], small[second] * w1[:, None]
    reps0, reps1 = np.bincount(first, minlength=n), np.bincount(second, minlength=n)
    out = np.repeat(rows0, reps0, axis=1)  # the columns are sorted: repeat == take
    out *= w0
    for rows, reps, w in ((rows0, reps1, w1), (rows1, reps0, w0), (rows1, reps1, w1)):
        term = np.repeat(rows, reps, axis=1)
        term *= w
        out += term
    return out


def render(
    anatomy: Anatomy,
    lesion: Lesion | None,
    site: Site,
    exposure: Exposure,
    size: int,
    rng: np.random.Generator,
    findings: Findings = NO_FINDINGS,
) -> Rendered:
    """Render one radiograph of `size` x `size` pixels; noise from `rng`.

    Large temporaries are reused in place: the same float64 operations, the same bits.
    """
    tiles = _Tiles.grid(size, exposure)
    mu_t, lung_t, lesion_t = _mu_tiles(anatomy, site, lesion, tiles, findings)
    mask = np.where(tiles.join(lung_t), LUNG, 0).astype(np.uint8)
    lesion_mask = tiles.join(lesion_t)
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

    primary = np.negative(mu_t)
    primary = tiles.join(np.exp(primary, out=primary))
    sigma_px = site.blur_mm / site.spacing_mm(size)
    expected = ndimage.gaussian_filter(primary, sigma_px, mode="nearest")  # primary, blurred
    scatter = site.scatter_ratio * _wide_blur(primary, 0.12)
    # expected = site.quanta * exposure.factor * (primary_blurred + scatter)
    expected += scatter
    expected *= site.quanta * exposure.factor
    counts = rng.poisson(expected).astype(np.float64)
    del expected, primary
    counts += rng.normal(0.0, site.electronic_sd, size=counts.shape)
    # The site's processing normalises to its nominal exposure; exposure errors shift brightness.
    # stored = clip(rint(offset + gain * -log(max(counts, 0.5) / quanta)), 0, MAX_STORED)
    signal = np.maximum(counts, 0.5, out=counts)
    signal /= site.quanta
    np.log(signal, out=signal)
    np.negative(signal, out=signal)
    signal *= site.gain
    signal += site.offset
    np.rint(signal, out=signal)
    np.clip(signal, 0, MAX_STORED, out=signal)
    stored = signal.astype(np.uint16)

    cnr = 0.0
    if lesion is not None:
        # Contrast of the lesion at its centre in the log signal, over the quantum +
        # electronic noise there: what a reader's evidence for the finding scales with.
        ci, cj = centre
        mu_bg, _, _ = mu_map(
            anatomy, site, None, tiles.at(tiles.x, ci, cj), tiles.at(tiles.y, ci, cj), findings=findings
        )
        mu_lesion = float(tiles.at(mu_t, ci, cj)[0, 0])
        s = float(scatter[ci, cj])
        n_bg = float(np.exp(-mu_bg[0, 0])) + s
        n_lesion = np.exp(-mu_lesion) + s
        contrast = np.log(n_bg / n_lesion)
        quanta = site.quanta * exposure.factor * n_lesion
        noise = np.sqrt(quanta + site.electronic_sd**2) / quanta
        cnr = float(contrast / noise)
    return Rendered(pixels=stored, mask=mask, lesion_cnr=cnr)
