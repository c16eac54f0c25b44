"""The synthetic chest-radiograph cohort of `fairaudit sample-data`.

``generate_cohort(out_dir, n, size, seed)`` writes::

    images/<site>/<NNNN>.dcm   one DICOM file per image (a few without the .dcm suffix)
    masks/<SOPInstanceUID>.png ground truth, 8-bit: 0 background, 1 lung fields, 2 lesion
    demographics.csv           sop_instance_uid, patient_id, sex, age_group, race, site
    labels.csv                 sop_instance_uid, finding (any finding present: 0/1)
    findings.csv               sop_instance_uid, one column per finding and No Finding,
                               CheXpert style: 1, 0, -1 (uncertain) or blank (not mentioned)
    predictions.csv            sop_instance_uid, label, score (a simulated model; with
                               ``model``, that model's scores, one column per finding)
    images.csv                 sop_instance_uid, path, mask and what each acquisition drew
    README.md                  the command, the seed and what each file is

The findings (FINDINGS) are drawn into the phantom (:mod:`fairaudit.sample.phantom`), each
with a severity from a wide range, so the mildest are hard to see; findings.csv is what a
report labeller would write: a mild finding is often "uncertain" (-1) and an absent one
often not mentioned (blank). labels.csv's `finding` is the truth: any finding present.

The planted disparity: group "C" is imaged on the portable unit far more often than "A"
or "B", and portable images are noisier and lower in contrast (see
:mod:`fairaudit.sample.phantom`), so a lesion is harder to see there; and the portable
unit's supine AP view spreads an effusion into a faint haze instead of a meniscus, so
effusion is underdiagnosed in group C. The simulated model's evidence for a finding grows
with its visibility (for the consolidation, the lesion's contrast-to-noise ratio in the
rendered image), so it misses more findings in group C. Sex is drawn independently of
everything, so an audit should find no disparity by sex beyond chance.

All randomness flows from ``seed`` through numpy Generators (one stream for the plan, one
per image for its noise, one for the simulated model); the same seed, n and size write
byte-identical files, whatever the number of worker processes: images are rendered and
written in forked workers (FAIRAUDIT_WORKERS or ``workers``), each from its own generator
seeded by (seed, image index), and the CSVs are written by the parent in image order.
"""

from __future__ import annotations

import csv
import gc
import logging
import multiprocessing
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from fairaudit._util.workers import fork_pool, worker_init
from fairaudit.errors import InputError, arg
from fairaudit.sample import phantom
from fairaudit.sample.phantom import SITES, Anatomy, Exposure, Findings, Lesion

log = logging.getLogger(__name__)

RACES = ("A", "B", "C")
RACE_P = (0.45, 0.2, 0.35)
# Share of each race's images taken on the portable unit (the rest split evenly between
# the two fixed units).
PORTABLE_P = {"A": 0.1, "B": 0.15, "C": 0.85}
AGE_GROUPS = {"18-39": (18, 39), "40-64": (40, 64), "65+": (65, 90)}
AGE_P = (0.3, 0.45, 0.25)
#: The findings, in findings.csv's order, and each one's prevalence among patients (drawn
#: independently). Consolidation is the focal lesion (mask label 2).
FINDINGS = ("Cardiomegaly", "Effusion", "Consolidation", "Atelectasis", "Pneumothorax")
NO_FINDING = "No Finding"
FINDING_PREVALENCE = {
    "Cardiomegaly": 0.15,
    "Effusion": 0.15,
    "Consolidation": 0.15,  # kept from the lesions drawn for LESION_DRAWN_P of patients
    "Atelectasis": 0.15,
    "Pneumothorax": 0.10,
}
LESION_DRAWN_P = 0.3
# The report labeller (findings.csv): a finding in the mildest third of its severity range is
# written uncertain (-1) with UNCERTAIN_MILD_P; an absent one is not mentioned (blank) with
# BLANK_P, or written uncertain with UNCERTAIN_ABSENT_P.
UNCERTAIN_MILD_P = 0.3
UNCERTAIN_ABSENT_P = 0.03
BLANK_P = 0.25
FOLLOW_UP_P = 0.12  # share of patients with a second (follow-up) image
MONOCHROME1_EVERY = 5  # 1 in 5 files stored MONOCHROME1
NO_SUFFIX_P = 0.12  # share of files written without the .dcm suffix
# The simulated model: logit = N(0, 1) + separation * label - BIAS, with separation
# = SEPARATION_MAX * cnr^2 / (cnr^2 + CNR_HALF^2) (a psychometric curve of the lesion's
# contrast-to-noise ratio in the rendered image).
SEPARATION_MAX = 4.0
CNR_HALF = 5.5
BIAS = 1.4

MIN_SIZE, MAX_SIZE = 32, 2048
OUTPUTS = (
    "images",
    "masks",
    "demographics.csv",
    "labels.csv",
    "findings.csv",
    "predictions.csv",
    "images.csv",
    "README.md",
)
_PLAN, _RENDER, _MODEL, _LABELLER, _FINDINGS = 0, 1, 2, 3, 4  # random streams
# Pixels per worker task (several small images per task, one large one): enough work to
# amortize a task's overhead, few images in flight.
_TASK_PIXELS = 128 * 128
_WINDOW = 3  # tasks in flight per worker


@dataclass(frozen=True)
class ImagePlan:
    """Everything drawn for one image before it is rendered."""

    index: int
    patient_id: str
    sex: str
    age_group: str
    age: int
    race: str
    site: str
    finding: int  # any finding present (the truth)
    anatomy: Anatomy
    lesion: Lesion | None  # the consolidation
    exposure: Exposure
    photometric: str
    transfer_syntax: str
    path: str  # relative to the cohort folder, POSIX separators
    study_date: str
    study_time: str
    study_uid: str
    series_uid: str
    sop_uid: str

    findings: Findings = phantom.NO_FINDINGS  # the diffuse findings

    @property
    def mask_path(self) -> str:
        return f"masks/{self.sop_uid}.png"

    @property
    def truth(self) -> dict[str, float]:
        """Each finding's severity as a fraction of its range (0: absent, else in (0, 1])."""
        f = self.findings
        out = {
            "Cardiomegaly": _fraction(f.cardiomegaly, phantom.CARDIOMEGALY_RANGE),
            "Effusion": _fraction(f.effusion, phantom.EFFUSION_RANGE),
            "Consolidation": 0.0
            if self.lesion is None
            else _fraction(self.lesion.mu, phantom.LESION_MU_RANGE),
            "Atelectasis": _fraction(f.atelectasis, phantom.ATELECTASIS_RANGE),
            "Pneumothorax": _fraction(f.pneumothorax, phantom.PNEUMOTHORAX_RANGE),
        }
        return out


@dataclass(frozen=True)
class CohortFiles:
    """What generate_cohort wrote (absolute paths) and a summary of the cohort."""

    out_dir: Path
    images: tuple[Path, ...]
    masks: tuple[Path, ...]
    demographics: Path
    labels: Path
    findings: Path
    predictions: Path
    index: Path
    readme: Path
    n: int
    size: int
    seed: int
    summary: dict = field(default_factory=dict)


def plan_cohort(n: int, size: int = 256, seed: int = 0) -> list[ImagePlan]:
    """Draw the demographics, anatomy, findings, sites and file formats of `n` images.

    Cheap (nothing is rendered): tests draw large cohorts with it to check the
    demographic structure.
    """
    _check(n, size, seed)
    rng = np.random.default_rng([seed, _PLAN])
    uid_base = (f"seed={seed}", f"n={n}", f"size={size}")
    from fairaudit.sample.dicom_writer import make_uid

    plans: list[ImagePlan] = []
    patient = 0
    start = date(2024, 1, 1)
    while len(plans) < n:
        patient += 1
        pid = f"SYN{patient:05d}"
        sex = str(rng.choice(["F", "M"]))
        race = str(rng.choice(RACES, p=RACE_P))
        age_group = str(rng.choice(list(AGE_GROUPS), p=AGE_P))
        lo, hi = AGE_GROUPS[age_group]
        age = int(rng.integers(lo, hi + 1))
        # The plan stream draws a lesion for LESION_DRAWN_P of patients (before the findings
        # existed, the one finding), so demographics, sites, anatomy and UIDs are those of
        # earlier cohorts of the same seed; which findings a patient has comes from its own
        # stream, which keeps a drawn lesion (the consolidation) with the share that gives
        # its prevalence.
        lesion_drawn = rng.random() < LESION_DRAWN_P
        anatomy = phantom.draw_anatomy(rng)
        lesion = phantom.draw_lesion(rng) if lesion_drawn else None
        frng = np.random.default_rng([seed, _FINDINGS, patient])
        chance = {**FINDING_PREVALENCE, "Consolidation": FINDING_PREVALENCE["Consolidation"] / LESION_DRAWN_P}
        present = {name: bool(frng.random() < chance[name]) for name in FINDINGS}
        present["Consolidation"] = lesion_drawn and present["Consolidation"]
        lesion = lesion if present["Consolidation"] else None
        finding = int(any(present.values()))
        diffuse = phantom.draw_findings(
            frng,
            cardiomegaly=present["Cardiomegaly"],
            effusion=present["Effusion"],
            atelectasis=present["Atelectasis"],
            pneumothorax=present["Pneumothorax"],
        )
        day = int(rng.integers(0, 300))
        visits = 2 if rng.random() < FOLLOW_UP_P else 1
        for visit in range(visits):
            if len(plans) >= n:
                break
            i = len(plans)
            portable = rng.random() < PORTABLE_P[race]
            site = "portable" if portable else str(rng.choice(["fixed_1", "fixed_2"]))
            exposure = phantom.draw_exposure(SITES[site], rng)
            when = start + timedelta(days=day + 30 * visit)
            seconds = int(rng.integers(7 * 3600, 20 * 3600))
            suffix = "" if rng.random() < NO_SUFFIX_P else ".dcm"
            plans.append(
                ImagePlan(
                    index=i,
                    patient_id=pid,
                    sex=sex,
                    age_group=age_group,
                    age=age,
                    race=race,
                    site=site,
                    finding=finding,
                    anatomy=anatomy,
                    lesion=lesion,
                    findings=diffuse,
                    exposure=exposure,
                    photometric="MONOCHROME2",
                    transfer_syntax="explicit_vr_little_endian",
                    path=f"images/{site}/{i + 1:04d}{suffix}",
                    study_date=when.strftime("%Y%m%d"),
                    study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
                    study_uid=make_uid(*uid_base, "study", i),
                    series_uid=make_uid(*uid_base, "series", i),
                    sop_uid=make_uid(*uid_base, "sop", i),
                )
            )
    # Storage formats: exact shares, spread over the cohort independently of site.
    mono1 = rng.permutation(n) % MONOCHROME1_EVERY == 0
    syntax = rng.permutation(n) % 4
    names = {0: "rle_lossless", 1: "jpeg_ls_lossless"}
    return [
        _replace(
            p,
            photometric="MONOCHROME1" if mono1[p.index] else "MONOCHROME2",
            transfer_syntax=names.get(int(syntax[p.index]), "explicit_vr_little_endian"),
        )
        for p in plans
    ]


def simulated_scores(
    labels: np.ndarray, cnr: np.ndarray, seed: int, visibility: np.ndarray | None = None
) -> np.ndarray:
    """Scores of a simulated model whose separation grows with the lesion's CNR, or with
    `visibility` (0..1 per image, see `visibility`) where it is given."""
    rng = np.random.default_rng([seed, _MODEL])
    if visibility is None:
        cnr2 = np.asarray(cnr, dtype=np.float64) ** 2
        visibility = cnr2 / (cnr2 + CNR_HALF**2)
    separation = SEPARATION_MAX * np.asarray(visibility, dtype=np.float64)
    logit = rng.normal(0.0, 1.0, len(labels)) + separation * np.asarray(labels) - BIAS
    return np.round(1.0 / (1.0 + np.exp(-logit)), 6)


#: How much less a diffuse finding shows on the portable unit (noise, scatter, supine AP),
#: and an effusion, which spreads into a haze there, less again.
PORTABLE_VISIBILITY = 0.35
PORTABLE_EFFUSION_VISIBILITY = 0.15


def visibility(p: ImagePlan, cnr: float) -> float:
    """How visible image `p`'s most visible finding is, from 0 (none) to 1: for the
    consolidation the psychometric curve of its CNR, for a diffuse finding the square root
    of its severity, lower on the portable unit (the simulated model's evidence)."""
    best = 0.0
    for name, sev in p.truth.items():
        if sev <= 0:
            continue
        if name == "Consolidation":
            v = cnr**2 / (cnr**2 + CNR_HALF**2)
        else:
            v = float(np.sqrt(sev))
            if p.site == "portable":
                v *= PORTABLE_EFFUSION_VISIBILITY if name == "Effusion" else PORTABLE_VISIBILITY
        best = max(best, v)
    return best


def labeller_rows(plans: list[ImagePlan], seed: int) -> list[list[str]]:
    """findings.csv's rows: what a report labeller writes for each image (module doc).

    "No Finding" is 1 when no finding is written positive or uncertain (CheXpert's rule),
    else 0 (written out, so that its false-positive rate, the underdiagnosis rate, has
    negatives to count on).
    """
    rng = np.random.default_rng([seed, _LABELLER])
    rows = []
    for p in plans:
        draws = rng.random(len(FINDINGS))
        cells = []
        for name, u in zip(FINDINGS, draws, strict=True):
            sev = p.truth[name]
            if sev > 0:
                cells.append("-1" if sev < 1 / 3 and u < UNCERTAIN_MILD_P else "1")
            elif u < UNCERTAIN_ABSENT_P:
                cells.append("-1")
            else:
                cells.append("" if u < UNCERTAIN_ABSENT_P + BLANK_P else "0")
        no_finding = "1" if all(c in ("0", "") for c in cells) else "0"
        rows.append([p.sop_uid, *cells, no_finding])
    return rows


def generate_cohort(
    out_dir: Path,
    n: int = 400,
    size: int = 256,
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    model: str | None = None,
    scorer: Callable[[str, Path, list[str], int | None], tuple[list[str], dict[str, np.ndarray]]]
    | None = None,
) -> CohortFiles:
    """Render and write the cohort into `out_dir` (see the module docstring).

    Refuses to write over an earlier cohort's files unless `overwrite`; with it, the
    `images/` and `masks/` folders are replaced and the CSVs and README rewritten.
    `progress(done, n)` is called after each image. `workers`: processes that render
    (default: FAIRAUDIT_WORKERS, else the CPUs); the files do not depend on it.
    `model` (a model reference, e.g. bundled:cxr_finding_classifier): predictions.csv holds
    that model's scores instead of the simulated model's, from `scorer(model, out_dir,
    sop_uids, workers)` -> (its classes, class -> scores and "score") run once the images are
    written (fairaudit.workflows.sample_scores: this package does not run models).
    """
    if model is not None and scorer is None:
        raise ValueError("a model needs a scorer (fairaudit.workflows.sample_scores.model_predictions)")
    _check(n, size, seed)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"{arg('workers')} must be at least 1, got {workers!r}.", argument="workers")
    if workers is None:
        from fairaudit.io.dicom._parallel import workers_default

        workers = workers_default()  # FAIRAUDIT_WORKERS checked before anything is removed
    out_dir = Path(out_dir)
    existing = [name for name in OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise InputError(
            f"already holds {', '.join(existing)}.",
            file=str(out_dir),
            hint=f"Pass {arg('overwrite')} to replace them, or choose another folder.",
            argument="overwrite",
        )
    for name in ("images", "masks"):
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    plans = plan_cohort(n, size, seed)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    cnr = np.zeros(n)
    for done, (index, value) in enumerate(_render_all(out_dir, plans, size, seed, workers), start=1):
        cnr[index] = value
        if progress is not None:
            progress(done, n)
    images = [out_dir / p.path for p in plans]
    masks = [out_dir / p.mask_path for p in plans]

    labels = np.array([p.finding for p in plans])
    scores = simulated_scores(labels, cnr, seed, np.array([visibility(p, cnr[p.index]) for p in plans]))
    demo = _write_csv(
        out_dir / "demographics.csv",
        ["sop_instance_uid", "patient_id", "sex", "age_group", "race", "site"],
        [[p.sop_uid, p.patient_id, p.sex, p.age_group, p.race, p.site] for p in plans],
    )
    lab = _write_csv(
        out_dir / "labels.csv", ["sop_instance_uid", "finding"], [[p.sop_uid, p.finding] for p in plans]
    )
    reported = labeller_rows(plans, seed)
    found = _write_csv(out_dir / "findings.csv", ["sop_instance_uid", *FINDINGS, NO_FINDING], reported)
    if model is None:
        pred = _write_csv(
            out_dir / "predictions.csv",
            ["sop_instance_uid", "label", "score"],
            [[p.sop_uid, p.finding, f"{s:.6f}"] for p, s in zip(plans, scores, strict=True)],
        )
    else:
        # label and score stay the simulated model's (the single-label examples); the model's
        # scores come beside them, one score_<class> column per output.
        classes, by_class = scorer(model, out_dir, [p.sop_uid for p in plans], workers)  # type: ignore[misc]
        pred = _write_csv(
            out_dir / "predictions.csv",
            ["sop_instance_uid", "label", "score", *(f"score_{c}" for c in classes)],
            [
                [p.sop_uid, p.finding, f"{s:.6f}", *(f"{by_class[c][p.index]:.6f}" for c in classes)]
                for p, s in zip(plans, scores, strict=True)
            ],
        )
    index = _write_csv(
        out_dir / "images.csv",
        [
            "sop_instance_uid",
            "patient_id",
            "path",
            "mask",
            "site",
            "modality",
            "view",
            "pixel_spacing_mm",
            "photometric",
            "transfer_syntax",
            "exposure_factor",
            "rotation_deg",
            "lesion_cnr",
            "findings",
        ],
        [
            [
                p.sop_uid,
                p.patient_id,
                p.path,
                p.mask_path,
                p.site,
                SITES[p.site].modality,
                SITES[p.site].view,
                f"{SITES[p.site].spacing_mm(size):g}",
                p.photometric,
                p.transfer_syntax,
                f"{p.exposure.factor:.4f}",
                f"{p.exposure.rotation_deg:.3f}",
                f"{cnr[p.index]:.3f}",
                ";".join(f"{k}:{v:.2f}" for k, v in p.truth.items() if v > 0),
            ]
            for p in plans
        ],
    )
    summary = summarize(plans, scores, reported)
    summary["model"] = model
    readme = out_dir / "README.md"
    from fairaudit.sample.volumes import volumes_note  # a 3-D cohort beside this one (sample_data/volumes)

    readme.write_text(
        _readme(out_dir.name or ".", n, size, seed, summary) + volumes_note(out_dir), encoding="utf-8"
    )
    return CohortFiles(
        out_dir=out_dir,
        images=tuple(images),
        masks=tuple(masks),
        demographics=demo,
        labels=lab,
        findings=found,
        predictions=pred,
        index=index,
        readme=readme,
        n=n,
        size=size,
        seed=seed,
        summary=summary,
    )


def _render_one(out_dir: Path, p: ImagePlan, size: int, seed: int) -> float:
    """Render image `p` from its own generator, write its DICOM file and mask; its lesion CNR."""
    from PIL import Image

    from fairaudit.sample.dicom_writer import ImageInfo, write_image

    rng = np.random.default_rng([seed, _RENDER, p.index])
    site = SITES[p.site]
    img = phantom.render(p.anatomy, p.lesion, site, p.exposure, size, rng, findings=p.findings)
    info = ImageInfo(
        patient_id=p.patient_id,
        patient_name=f"SYNTHETIC^{p.patient_id}",
        sex=p.sex,
        age_years=p.age,
        study_uid=p.study_uid,
        series_uid=p.series_uid,
        sop_uid=p.sop_uid,
        study_date=p.study_date,
        study_time=p.study_time,
        accession=f"ACC{p.index + 1:06d}",
    )
    write_image(
        out_dir / p.path, img.pixels, info, site, photometric=p.photometric, transfer_syntax=p.transfer_syntax
    )
    Image.fromarray(img.mask).save(out_dir / p.mask_path, format="PNG", optimize=True)
    return img.lesion_cnr


def _render_task(out_dir: str, plans: list[ImagePlan], size: int, seed: int) -> list[tuple[int, float]]:
    """A worker's task: (index, lesion CNR) of each image it wrote."""
    return [(p.index, _render_one(Path(out_dir), p, size, seed)) for p in plans]


def _render_all(
    out_dir: Path, plans: list[ImagePlan], size: int, seed: int, workers: int
) -> Iterator[tuple[int, float]]:
    """(index, lesion CNR) of each image as it is written, in forked worker processes.

    Every image depends only on its plan and its own generator, so the files are the
    same whichever worker writes them and in whatever order; with one worker, or where
    fork is unavailable, images are rendered in this process, in order.
    """
    per_task = max(1, _TASK_PIXELS // (size * size))
    tasks = [plans[i : i + per_task] for i in range(0, len(plans), per_task)]
    workers = min(workers, len(tasks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for p in plans:
            yield p.index, _render_one(out_dir, p, size, seed)
        return
    log.debug("rendering %d images in %d processes", len(plans), workers)
    pool = _fork_pool(workers)
    pending: set[Future] = set()
    queue = iter(tasks)
    try:
        while True:
            for task in queue:
                pending.add(pool.submit(_render_task, str(out_dir), task, size, seed))
                if len(pending) >= _WINDOW * workers:
                    break
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield from future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fork_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes forked now (before a progress bar's thread starts), with the
    modules they need already imported and the parent's objects frozen out of the
    garbage collector (a collection in a worker would otherwise copy every shared page)."""
    import importlib

    for name in (
        "PIL.PngImagePlugin",
        "fairaudit.sample.dicom_writer",
        "pydicom.pixels.encoders",
        "rle",
        "jpeg_ls",
    ):
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - an encoder that is missing fails in the worker
            log.debug("not preloading %s", name)
    gc.collect()
    return fork_pool(workers, _worker_init)


def _worker_init() -> None:
    """Ignore Ctrl-C (the parent stops the pool), and keep freed memory for reuse.

    A 1024-pixel image makes a few dozen temporaries of 8 MB; by default glibc returns
    them to the system when freed, and every new one is then page-faulted back in (about
    a sixth of the render time, measured). The worker only lives for this cohort.
    """
    import ctypes

    worker_init()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's largest; bigger arrays are still mapped
    libc.mallopt(m_trim_threshold, 512 * 2**20)


def summarize(
    plans: list[ImagePlan], scores: np.ndarray | None = None, reported: list[list[str]] | None = None
) -> dict:
    """Counts a reader of the cohort wants: by site and race, findings, storage formats."""
    n = len(plans)
    by_site = {s: sum(p.site == s for p in plans) for s in SITES}
    by_race = {r: sum(p.race == r for p in plans) for r in RACES}
    portable_share = {
        r: (sum(p.race == r and p.site == "portable" for p in plans) / by_race[r]) if by_race[r] else None
        for r in RACES
    }
    out: dict = {
        "n_images": n,
        "n_patients": len({p.patient_id for p in plans}),
        "by_site": by_site,
        "by_race": by_race,
        "by_sex": {s: sum(p.sex == s for p in plans) for s in ("F", "M")},
        "portable_share_by_race": portable_share,
        "findings": sum(p.finding for p in plans),
        "photometric": {k: sum(p.photometric == k for p in plans) for k in ("MONOCHROME2", "MONOCHROME1")},
        "transfer_syntax": {
            k: sum(p.transfer_syntax == k for p in plans)
            for k in ("explicit_vr_little_endian", "rle_lossless", "jpeg_ls_lossless")
        },
    }
    out["by_finding"] = {name: sum(p.truth[name] > 0 for p in plans) for name in FINDINGS}
    if reported is not None:
        columns = [*FINDINGS, NO_FINDING]
        out["reported"] = {
            name: {v: sum(r[j + 1] == v for r in reported) for v in ("1", "0", "-1", "")}
            for j, name in enumerate(columns)
        }
    if scores is not None:
        out["tpr_at_0.5_by_site"] = {}
        for s in SITES:
            pos = [p.index for p in plans if p.site == s and p.finding]
            out["tpr_at_0.5_by_site"][s] = round(float(np.mean(scores[pos] >= 0.5)), 3) if pos else None
    return out


def _fraction(value: float, bounds: tuple[float, float]) -> float:
    """A severity as a fraction of its range, in (0, 1] (0: absent)."""
    if value <= 0:
        return 0.0
    lo, hi = bounds
    return max(float((value - lo) / (hi - lo)), 1e-3)


def _check(n: int, size: int, seed: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise InputError(f"{arg('n')} must be a positive number of images, got {n!r}.", argument="n")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(
            f"{arg('size')} must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size!r}.", argument="size"
        )
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"{arg('seed')} must be a non-negative integer, got {seed!r}.", argument="seed")


def _replace(p: ImagePlan, **changes: object) -> ImagePlan:
    from dataclasses import replace

    return replace(p, **changes)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _readme(folder: str, n: int, size: int, seed: int, s: dict) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.0f}%"

    sites = "\n".join(
        f"| {site.name} | {site.modality} | {site.view} | {site.manufacturer} / {site.model} | "
        f"{site.spacing_mm(size):g} | {site.quanta:g} | {site.scatter_ratio:g} | {site.blur_mm:g} | "
        f"{s['by_site'][site.name]} |"
        for site in SITES.values()
    )
    share = ", ".join(f"{r} {pct(v)}" for r, v in s["portable_share_by_race"].items())
    races = ", ".join(f"{r} {k}" for r, k in s["by_race"].items())
    tpr = ", ".join(f"{k} {v}" for k, v in s.get("tpr_at_0.5_by_site", {}).items())
    ts = s["transfer_syntax"]
    model = s.get("model")
    with_model = "" if model is None else f" --{'model'} {model}"  # the README's command line
    command = f"fairaudit sample-data {folder} --n {n} --size {size} --seed {seed}{with_model}"
    reported = s.get("reported", {})
    finding_rows = "\n".join(
        f"| {name} | {s['by_finding'].get(name, '')} | {c['1']} | {c['0']} | {c['-1']} | {c['']} |"
        for name, c in reported.items()
    )
    return f"""# Synthetic chest-radiograph cohort

Made by

    {command}

(add `--overwrite` to regenerate it in place). The same command, seed, n and size write byte-identical files.
**Synthetic phantoms only: no real patient data.** Names, ids, dates and UIDs are made up;
every DICOM file says so in ImageComments.

## Files

| path | what |
|---|---|
| `images/<site>/<NNNN>.dcm` | one DICOM file per image ({n}); some have no `.dcm` suffix |
| `masks/<SOPInstanceUID>.png` | ground truth, 8-bit, {size}x{size}: 0 background, 1 lung fields, 2 lesion |
| `demographics.csv` | sop_instance_uid, patient_id, sex, age_group, race, site |
| `labels.csv` | sop_instance_uid, finding (1: any finding is present; the truth) |
| `findings.csv` | sop_instance_uid, {", ".join(FINDINGS)}, {NO_FINDING}: CheXpert-style report labels (see below) |
| `predictions.csv` | {_predictions_line(model)} |
| `images.csv` | sop_instance_uid, patient_id, path, mask, site, modality, view, pixel spacing, photometric, transfer syntax, and what each acquisition drew (exposure factor, rotation, lesion CNR, findings with their severity) |

`sop_instance_uid` (the files' SOPInstanceUID) joins every CSV.
`patient_id` (the files' PatientID) allows patient-level splits: {s["n_patients"]} patients, some with a follow-up image.

## Images

{n} images of {size}x{size} pixels, 12 bits stored in 16 allocated (values 0..4095).
Phantoms: chest wall, lung fields, heart shadow, spine, ribs and clavicles; {s["findings"]} images have at least one finding.
Storage varies on purpose, independently of site:
{s["photometric"]["MONOCHROME1"]} files are MONOCHROME1 (stored inverted, so they display the same),
{ts["rle_lossless"]} are RLE Lossless, {ts["jpeg_ls_lossless"]} JPEG-LS Lossless and {ts["explicit_vr_little_endian"]} Explicit VR Little Endian.
Fixed units write DX with PixelSpacing and ImagerPixelSpacing; the portable unit writes CR with ImagerPixelSpacing only.

| site | modality | view | unit | spacing (mm) | quanta / pixel | scatter ratio | blur (mm) | images |
|---|---|---|---|---|---|---|---|---|
{sites}

The portable unit (no anti-scatter grid, lower dose, AP view) gives noisier images with lower contrast,
a less stable exposure and less inflated lungs (parameters in `fairaudit/sample/phantom.py`).

## Findings

Each patient has each finding independently ({", ".join(f"{k} {100 * v:.0f}%" for k, v in FINDING_PREVALENCE.items())}),
drawn into the phantom with a severity from a wide range (`fairaudit/sample/phantom.py`), so the mildest are
hard to see: Cardiomegaly enlarges the heart (the mildest by a few percent, within the normal variation);
Effusion fills the base of one lung with fluid; Consolidation is a rounded opacity in one lung (mask label 2);
Atelectasis a plate-like band of collapsed lung; Pneumothorax a rim of air along the apex and the lateral wall.
The severity of each image's findings is in `images.csv` (column `findings`, as a fraction of its range).

`findings.csv` is what a report labeller writes, CheXpert style: 1 present, 0 absent, -1 uncertain, blank not
mentioned. A finding in the mildest third of its range is written uncertain with probability {UNCERTAIN_MILD_P:g};
an absent one is not mentioned with probability {BLANK_P:g} and written uncertain with {UNCERTAIN_ABSENT_P:g}.
{NO_FINDING} is 1 when no finding is written 1 or -1 (CheXpert's rule), else 0 (written out, so that its
false-positive rate, the underdiagnosis rate, has negatives to count on).

| finding | present (truth) | 1 | 0 | -1 | blank |
|---|---:|---:|---:|---:|---:|
{finding_rows}

## The planted disparity

Images by race: {races}. Share imaged on the portable unit: {share}.
Sex is drawn independently of everything. Images with a finding: {s["findings"]} of {n}.

The portable unit (noisier, lower contrast) hides mild findings, and its supine AP view spreads an effusion
into a faint haze graded to the lung base instead of the upright meniscus that blunts the costophrenic angle.
Group C, imaged there far more often, so has its effusions underdiagnosed: a model misses more of them (a lower
TPR for Effusion), which also raises the share of C's patients with a finding that it calls "No Finding" (the
underdiagnosis rate, the false-positive rate of {NO_FINDING}). Within a site the race gap mostly goes away
(`--within site`).

{_predictions_text(model, tpr)}
An audit should show that disparity for race C and none by sex:

    fairaudit audit --predictions {folder}/predictions.csv --demographics {folder}/demographics.csv \\
        --attribute sex --attribute race --out audit_out

With the DICOM folder as well, the audit checks that every prediction has its file:

    fairaudit audit {folder}/images --predictions {folder}/predictions.csv \\
        --demographics {folder}/demographics.csv --attribute race --out audit_out

Every finding at once, with the underdiagnosis rate by race (docs/multilabel.md):

    fairaudit audit --predictions {folder}/predictions.csv --labels {folder}/findings.csv --findings all \\
        --demographics {folder}/demographics.csv --attribute race --out audit_out
"""


def _predictions_line(model: str | None) -> str:
    if model is None:
        return "sop_instance_uid, label, score: a simulated model (see below)"
    return (
        "sop_instance_uid, label, score: a simulated model (see below); score_<finding>: the scores of "
        f"{model}, one per finding and No Finding"
    )


def _predictions_text(model: str | None, tpr: str) -> str:
    trained = (
        ""
        if model is None
        else f"\n\nIts columns score_Cardiomegaly ... score_No Finding are the trained classifier {model} "
        "run on these files (a model audit of the same files computes the same numbers)."
    )
    return (
        "The `score` of `predictions.csv` is not a trained network. It simulates a model whose evidence for a finding grows "
        "with its visibility v in [0, 1] (for the consolidation, the psychometric curve "
        f"cnr^2 / (cnr^2 + {CNR_HALF:g}^2) of the lesion's contrast-to-noise ratio in `images.csv`; for a "
        f"diffuse finding the square root of its severity, times {PORTABLE_VISIBILITY:g} on the portable unit, "
        f"{PORTABLE_EFFUSION_VISIBILITY:g} for an effusion there): "
        f"logit = N(0, 1) + {SEPARATION_MAX:g} * v * label - {BIAS:g}. "
        f"Its sensitivity at threshold 0.5 is lower on portable images ({tpr}), so group C gets a lower TPR "
        "and AUROC."
    ) + trained
