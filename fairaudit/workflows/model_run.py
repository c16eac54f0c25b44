"""`fairaudit audit DICOM_DIR --model ...`: run the model, then the same audit as for a CSV.

Classification: the model's scores go, with the DICOM ids, into a private predictions
table (in memory, ids in clear, read from the run's compact records a chunk at a time) that
`audit_predictions` joins with --labels and --demographics exactly as it joins a user's
predictions CSV; the files
the run read (and the reasons of those it could not use) are handed over, so every file
appears once in manifest.csv and the folder is not scanned twice. OUT_DIR/predictions.csv
gets the scores with pseudonymized ids (the same salted hash as manifest.csv; --keep-ids
keeps them, and then the file can be audited again with --predictions).

Segmentation: the predicted label maps, restored to each image's original grid, are
written to OUT_DIR/pred_masks/<id>.png (hashed id unless --keep-ids), listed in
pred_masks/index.csv so that `--pred-masks OUT_DIR/pred_masks` audits them again
(fairaudit.workflows.mask_index), and handed to the segmentation audit
(fairaudit.workflows.segmentation) keyed by the real id.

results.json's `model` object names the model (name, sha256 of the weights or file,
source, task, device) and the run (files, images/s, batch size).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fairaudit._util.atomic import atomic_path
from fairaudit.errors import InputError, arg

if TYPE_CHECKING:
    from fairaudit.io.tables import Table

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
PRED_MASKS_DIR = "pred_masks"
_MODEL_IDS = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "patient_id", "path")


class MaskFolder(Mapping[str, np.ndarray]):
    """id -> predicted mask, read from its PNG when asked (the run holds no masks in memory)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def __getitem__(self, key: str) -> np.ndarray:
        from PIL import Image

        with Image.open(self._files[key]) as im:
            return np.asarray(im)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _id_column(req: Any) -> str:
    """The join key of a model run: --id-column, else the first id column every table has."""
    from fairaudit.io.tables import detect_id_column, read_header, read_table

    paths = list(dict.fromkeys(x for x in (req.demographics, req.labels) if x is not None))
    for p in paths:  # bad files fail before the model runs; no cell is kept (memory)
        read_table(p, keep=[])
    tables = [read_header(p) for p in paths]
    if not tables:
        raise InputError(
            f"{arg('model')} needs {arg('demographics')} (the attributes per image) to audit by.",
            argument="demographics",
        )
    found = detect_id_column(tables, req.id_column, _candidates(req))
    if found is None:
        raise InputError(
            f"no id column to join the model's predictions on (tried {', '.join(_candidates(req))}).",
            file=tables[0].name,
            hint=f"Pass {arg('id_column')} NAME with one of those columns.",
        )
    if found.lower() not in _MODEL_IDS:  # e.g. ChestX-ray14's `Image Index` (docs/images.md)
        log.info(
            "id column '%s' is not a DICOM id: it is matched with each file's path relative to the "
            "folder, with or without its extension",
            found,
        )
    return found


def _candidates(req: Any) -> tuple[str, ...]:
    from fairaudit.cohort.dicom_files import id_candidates

    return id_candidates(req.unit)


def _check(req: Any, model: str, segmentation: bool, masks: Path | None) -> None:
    """The arguments (fairaudit.workflows.audit.check_audit), then what the files must hold
    for a model run, before the model is loaded."""
    from fairaudit.workflows.audit import check_audit

    check_audit(req, task="segmentation" if segmentation else "classification", model=model, masks=masks)
    if not Path(req.dicom_dir).is_dir():
        raise InputError("is not a folder.", file=str(req.dicom_dir), hint="Pass the folder of DICOM files.")
    if req.gate:
        from fairaudit.gate import check_policy_task, load_policy

        # A policy naming the other task's metrics fails now, not after the model has run.
        check_policy_task(
            load_policy(req.gate), "segmentation" if segmentation else "classification", req.gate
        )
    if segmentation:
        return
    if req.labels is None:
        from fairaudit.io.tables import read_table

        if req.demographics is None or not read_table(req.demographics, keep=[req.label_column]).has(
            req.label_column
        ):
            raise InputError(
                f"{arg('model')} (classification) needs the ground truth: pass {arg('labels')} labels.csv "
                f"with a '{req.label_column}' column (0/1), or {arg('label_column')} NAME.",
                argument="labels",
            )


def _check_attributes(req: Any, id_col: str, segmentation: bool) -> None:
    """The attribute checks of the join (fairaudit.cohort.identifiers), on the demographics,
    before the model runs: an identifier column as an attribute, or a column (attribute,
    label) that is not in its file, is refused (exit 2) now, not after the inference."""
    from fairaudit.cohort.identifiers import (
        DEFAULT_MAX_GROUPS,
        check_group_count,
        refuse_identifier_attributes,
    )
    from fairaudit.io.tables import is_missing, read_header

    names = list(dict.fromkeys([*req.attributes, *(a for parts in req.intersections for a in parts)]))
    refuse_identifier_attributes(names, id_column=id_col, cluster_columns=(req.cluster_column, "patient_id"))
    if req.demographics is None:
        return
    demo = read_header(req.demographics)
    # A column that is not there fails now, with the join's own message, not after the model
    # has run on every image (the model's predictions hold no demographic column).
    for a in names:
        if not a.strip().startswith("dicom:"):
            demo.column(a, argument="attributes")
    labels = getattr(req, "labels", None)
    if labels is not None and not segmentation and getattr(req, "findings", None) is None:
        read_header(labels).column(req.label_column, argument="label_column")
    max_groups = getattr(req, "max_groups", DEFAULT_MAX_GROUPS)
    if max_groups <= 0:
        return
    binned = getattr(req, "bins", {}) or {}
    for a in names:
        if a.strip().startswith("dicom:") or a in binned:
            continue  # dicom: attributes are vetted by name; binned ones have few groups
        col = demo.column(a)
        seen: set[str] = set()
        n = 0
        for frame, _ in demo.chunks([col]):
            n += len(frame)
            seen.update(str(v) for v in frame[col] if not is_missing(v))
            if len(seen) > max_groups:  # enough to refuse: no need to hold them all
                break
        check_group_count(a, len(seen), n, max_groups, file=demo.name)


def publish_masks(
    req: Any,
    mask_dir: Path,
    rows: list[dict[str, str]],
    hasher: Any,
    info: dict[str, Any],
    unreadable: list[tuple[str, str]],
    what: str,
) -> None:
    """A segmentation model run's predictions.csv (id, mask; docs/reports.md), its sha256 in
    `info`, and pred_masks/index.csv, so that `--pred-masks OUT/pred_masks` audits the masks
    again (fairaudit.workflows.mask_index); one warning for the files that gave no `what`
    ("mask" of a 2-D run, "volume" of a 3-D one). Both kinds of run share it."""
    from fairaudit._util.sanitize import write_csv
    from fairaudit.report.provenance import file_sha256
    from fairaudit.workflows.mask_index import write_mask_index

    path = req.outputs.path(PREDICTIONS_FILE)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        write_csv(pd.DataFrame(rows, columns=["id", "mask"]), fh)
    info["predictions_file"] = {"name": PREDICTIONS_FILE, "sha256": file_sha256(path)}
    write_mask_index(mask_dir, [(r["id"], r["mask"]) for r in rows], hasher)
    if unreadable:
        reasons = Counter(why for _, why in unreadable)
        log.warning(
            "%d files gave no predicted %s: %s",
            len(unreadable),
            what,
            "; ".join(f"{why} x {k}" for why, k in reasons.most_common(5)),
        )


def dicom_keywords(req: Any) -> tuple[str, ...]:
    """The header fields that `--attribute dicom:KEYWORD` (and --within, --intersect) need
    from each file, vetted by name (fairaudit.io.dicom_attributes); () when none is asked."""
    from fairaudit.io import dicom_attributes

    named = [*req.attributes, *getattr(req, "within", [])]  # --within dicom: columns are read too
    wanted = dicom_attributes.requested(named, req.intersections, getattr(req, "bins", {}), True)
    return tuple(a.keyword for a in wanted)


def audit_with_model(req: Any, model: str, **options: Any) -> Any:
    """Run `model` on req.dicom_dir and audit its predictions, the files reaching --out as
    one set: predictions.csv and pred_masks/ are written before the reports, and a run
    killed in between must not leave them beside another run's results.json
    (fairaudit._util.atomic.output_set)."""
    from fairaudit._util.atomic import output_set
    from fairaudit.workflows.core import input_paths

    folders = (PRED_MASKS_DIR,) if options.get("segmentation") else ()
    with output_set(
        req.out, protect=input_paths(req), shared=getattr(req, "outputs", None), folders=folders
    ) as outs:
        return _audit_with_model(replace(req, outputs=outs), model, **options)


def _audit_with_model(
    req: Any,
    model: str,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    segmentation: bool = False,
    masks: Path | None = None,
    mask_labels: str | tuple[int, ...] | None = None,
    pred_mask_labels: str | tuple[int, ...] | None = None,
    spacing: str | tuple[float, ...] | None = None,
    resume: bool = False,
    cache_dir: Path | None = None,
) -> Any:
    """Run `model` on req.dicom_dir and audit its predictions (see the module doc).

    Classification scores are cached as they come (fairaudit.models.pred_cache; default
    OUT_DIR/.fairaudit-cache) so that an interrupted run can be rerun with `resume`.
    """
    from fairaudit._util.privacy import IdHasher, use_for_logs
    from fairaudit._util.safe_paths import own_folder
    from fairaudit.models.inference import DEFAULT_BATCH_SIZE, run_inference
    from fairaudit.models.loading import load_predictor

    _check(req, model, segmentation, masks)
    if segmentation and resume:  # said, not silently ignored (docs/models.md, "Interrupting ...")
        log.warning(
            "%s: segmentation runs are not cached yet, so every file is predicted again", arg("resume")
        )
    # One salt for predictions.csv, pred_masks and manifest.csv, so their ids match; a
    # random one (never written) unless the user gave --salt.
    req = replace(req, salt=req.salt or secrets.token_hex(16))
    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    id_col = _id_column(req) if not segmentation else _segmentation_id(req)
    _check_attributes(req, id_col, segmentation)  # refused before the model runs
    if segmentation and masks is not None:
        _check_masks_match(req, Path(masks), id_col)
    path_ids = _path_ids(req, id_col)  # a path key: the path as the CSVs write it
    key = "path" if path_ids is not None else id_col.lower()
    predictor = load_predictor(
        model,
        device,
        task="segmentation" if segmentation else "classification",
        trust_model=getattr(req, "trust_model", False),
    )
    if not segmentation:
        _check_outputs(req, predictor, id_col)  # refused before the model runs
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    if segmentation and predictor.volume is not None:  # a 3D model, or 2D slice by slice (docs/models.md)
        from fairaudit.workflows.volume_run import audit_volumes_with_model

        return audit_volumes_with_model(
            req, predictor, id_col=id_col, path_ids=path_ids, hasher=hasher, masks=masks,
            mask_labels=mask_labels, pred_mask_labels=pred_mask_labels, spacing=spacing,
            batch_size=batch_size,
        )  # fmt: skip

    mask_files: dict[str, Path] = {}
    mask_rows: list[dict[str, str]] = []
    on_mask = None
    if segmentation:
        mask_dir = req.outputs.path(PRED_MASKS_DIR)
        own_folder(mask_dir)  # never a planted link: the masks would be written where it points

        from fairaudit.models.mask_writer import MaskWriter

        writer = MaskWriter(predictor.spec, _mask_workers(req.workers))
        idents: dict[str, str] = {}  # path -> id, for masks a worker fails to write

        def on_mask(rec: dict[str, str], mask: Any) -> None:
            ident = rec.get(key, "") if path_ids is None else path_ids([rec["path"]])[0]
            if not ident:
                return
            name = f"{_safe(hasher(ident))}.png"
            writer.add(rec["path"], mask_dir / name, mask)  # restored and written in a worker
            mask_files[ident] = mask_dir / name
            idents[rec["path"]] = ident
            mask_rows.append({"id": hasher(ident), "mask": f"{PRED_MASKS_DIR}/{name}"})

    # `--attribute dicom:KEYWORD`: keep those header fields of each file
    keywords = () if segmentation else dicom_keywords(req)
    cache = None
    if not segmentation:
        from fairaudit.models.pred_cache import CACHE_DIR, PredictionCache

        cache = PredictionCache(
            cache_dir if cache_dir is not None else out / CACHE_DIR,
            predictor.describe(),
            own_folder=cache_dir is None,  # a --cache-dir the user named may be a link
        )
    try:
        run = run_inference(
            predictor, Path(req.dicom_dir), batch_size=batch_size, workers=req.workers,
            progress=req.progress, on_mask=on_mask, header_keywords=keywords, id_columns=(key,), cache=cache,
            resume=resume,
            max_pixels=getattr(req, "max_pixels", None), max_file_size=getattr(req, "max_file_size", None),
            device=device, restore_masks=not segmentation,
        )  # fmt: skip
    finally:
        failed = writer.close() if segmentation else []
    if failed:  # restored or written badly: those files count as not predicted
        _drop_failed_masks(run, failed, idents, mask_files, mask_rows, hasher)
    info = predictor.describe()
    info["batch_size"] = batch_size or DEFAULT_BATCH_SIZE
    info["run"] = run.summary()

    if segmentation:
        from fairaudit.workflows.segmentation import audit_segmentation, request_from_audit

        publish_masks(req, mask_dir, mask_rows, hasher, info, run.unreadable, "mask")
        return audit_segmentation(
            request_from_audit(
                req, masks=masks, pred_masks=MaskFolder(mask_files), mask_labels=mask_labels,
                pred_mask_labels=pred_mask_labels, spacing=spacing, model=info,
                model_failures=dict(run.unreadable),
            )
        )  # fmt: skip
    return _audit_scores(req, run, id_col, hasher, info, path_ids)


def _check_outputs(req: Any, predictor: Any, id_col: str) -> None:
    """What a classifier's outputs must give, checked once it is loaded and before it runs:
    with --findings, a multi-output model with one output per audited finding; without, the
    output --label-column names (fairaudit.models.outputs). docs/models.md."""
    findings = getattr(req, "findings", None)
    if findings is None:
        if predictor.outputs:
            from fairaudit.models.outputs import output_for

            output_for(predictor.outputs, req.label_column)
        return
    if not predictor.outputs:
        raise InputError(
            f"{arg('findings')} with {arg('model')} needs a multi-output model (model.json lists one "
            f"class per output); {predictor.name} gives one score per image.",
            hint=f"Audit it with {arg('label_column')} NAME, or audit a predictions file with one score "
            "column per finding.",
            argument="findings",
        )
    if req.labels is None:
        raise InputError(
            f"{arg('findings')} with {arg('model')} reads the finding columns from {arg('labels')}: pass it.",
            argument="labels",
        )
    from fairaudit.cohort.findings import ALL, finding_candidates
    from fairaudit.io.tables import ID_CANDIDATES, read_header
    from fairaudit.models.outputs import fold

    labels = read_header(req.labels)
    if findings == (ALL,):
        skip = {id_col, *ID_CANDIDATES, *req.attributes, *(getattr(req, "within", None) or [])}
        if getattr(req, "cluster_column", None):
            skip.add(req.cluster_column)
        names = finding_candidates(labels, {c for c in skip if c})
    else:
        names = [labels.column(f, argument="findings") for f in findings]
    outputs = {fold(o) for o in predictor.outputs}
    missing = [n for n in names if fold(n) not in outputs]
    if missing:
        raise InputError(
            f"{arg('findings')}: the model has no output for {', '.join(missing)} (its outputs: "
            f"{', '.join(predictor.outputs)}).",
            file=labels.name,
            hint=f"Name the findings it has with {arg('findings')} A,B,C.",
            argument="findings",
        )


def _check_masks_match(req: Any, masks: Path, id_col: str) -> None:
    """A ground-truth folder none of whose masks is named by a demographics id is refused
    before the model runs on every image (issue 21, point 8), not after."""
    from fairaudit.io.masks import index_masks
    from fairaudit.io.tables import read_table

    index = index_masks(masks, argument="masks")
    demo = read_table(req.demographics, keep=[id_col])
    ids = {str(v) for v in demo.frame[demo.column(id_col)]}
    names = ids | {Path(i).stem for i in ids} | {Path(i).with_suffix("").as_posix() for i in ids}
    if index.files and not names.intersection(index.files):
        example = next(iter(sorted(index.files)))
        raise InputError(
            f"no mask in {arg('masks')} is named by an id of the '{id_col}' column ({len(index.files)} "
            f"masks, e.g. {example!r}); a mask is <id>.png or <id>.npy.",
            file=str(req.demographics),
            hint=f"Name the masks by that column's values, or pass {arg('id_column')} with the column that names them.",
            argument="masks",
        )


def _segmentation_id(req: Any) -> str:
    from fairaudit.io.tables import detect_id_column, read_table

    if req.demographics is None:
        raise InputError(
            f"a segmentation audit needs {arg('demographics')} (one row per case, with the attributes).",
            argument="demographics",
        )
    table = read_table(req.demographics)
    # series_instance_uid last: it names the volumes of a 3D model run (docs/models.md).
    found = detect_id_column([table], req.id_column) or detect_id_column(
        [table], None, ("series_instance_uid",)
    )
    if found is None:
        raise InputError(
            "a model run names each image by a DICOM id or by its path: the demographics need one of "
            f"{', '.join(_MODEL_IDS)}, or pass {arg('id_column')} with the column that names the images.",
            file=str(req.demographics),
        )
    return found


def _path_ids(req: Any, id_col: str) -> Any:
    """How the labels and demographics name each file when the key is its path (PathIds:
    with or without the extension); None when the key is a DICOM id."""
    from fairaudit.cohort.dicom_files import PathIds, is_path_id
    from fairaudit.io.tables import read_header

    if not is_path_id(id_col):
        return None
    paths = list(dict.fromkeys(x for x in (req.demographics, req.labels) if x is not None))
    return PathIds.from_tables([read_header(p) for p in paths], id_col)


def _audit_scores(
    req: Any, run: Any, id_col: str, hasher: Any, info: dict[str, Any], path_ids: Any = None
) -> Any:
    from fairaudit.cohort.dicom_files import FILES_LABEL, PATH_ID, refuse_empty_dicom_attributes
    from fairaudit.workflows.predictions import audit_predictions

    key = id_col.lower() if path_ids is None else PATH_ID
    if not run.records:
        reasons = Counter(why for _, why in run.unreadable).most_common(3)
        why = "; ".join(f"{reason} ({k} files)" for reason, k in reasons) or "no DICOM file found"
        raise InputError(
            f"the model predicted no image: none of the {run.n_files} files could be used: {why}.",
            file=str(req.dicom_dir),
        )
    # The run's records are handed over to the join and dropped from the run (its summary is
    # already taken; run.n_predicted reads 0 from here on). The join reads them a chunk at a
    # time from their compact store (fairaudit.models.inference.Records): no per-file string
    # is held for the whole cohort.
    from fairaudit.models.inference import Records

    records, run.records = run.records, Records()
    if path_ids is not None:  # each file's path as the CSVs name it (docs/images.md)
        records.derive(PATH_ID, "path", path_ids)
    elif not any(v for chunk in records.chunks([key], 1 << 16) for v in chunk[key]):
        raise InputError(
            f"no predicted file has a {key} (PNG and JPEG images have no DICOM ids): the join key "
            f"'{id_col}' matches none of them.",
            file=str(req.dicom_dir),
            hint=f"Name the images by their path: {arg('id_column')} path, or the column of the "
            "demographics that holds their file names (docs/images.md).",
            argument="id_column",
        )
    scores, outputs = _run_scores(req, run, info)
    names = records.names
    if any(n.startswith("dicom:") for n in names):
        # `--attribute dicom:KEYWORD`: the groups are made from the whole column (bins).
        frame = pd.DataFrame({n: records.column(n) for n in names}, dtype=str)
        refuse_empty_dicom_attributes({c: frame[c] for c in frame.columns}, req.dicom_dir)
        table = _table(Path(req.dicom_dir), names, None, label=FILES_LABEL, frame=frame)
    else:
        table = _table(
            Path(req.dicom_dir),
            names,
            _record_reader(records, {n: n for n in names}),
            label=FILES_LABEL,
            size=len(records),
        )
    if path_ids is not None:  # the key names the files' PATH_ID; the manifest shows the path
        table.aliases[id_col] = PATH_ID
    bad = pd.DataFrame(
        [
            {"source": f"{FILES_LABEL}/{p}", "row": "", "id": "", "status": "excluded", "reason": why}
            for p, why in run.unreadable
        ],
        columns=["source", "row", "id", "status", "reason"],
    )
    predictions = _write_predictions(req, id_col, records, key, scores, hasher, info, outputs)
    files = (table, bad)
    # Held by the tables' readers alone: audit_predictions lets go of them after the join.
    del table, bad, records, scores
    return audit_predictions(
        replace(
            req, predictions=predictions, files=files, model=info, score_column="score",
            score_column_given=True,
        )
    )  # fmt: skip


def _run_scores(req: Any, run: Any, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the `score` column, the `score_<output>` columns of a multi-output model).

    A multi-output model's `score` is the output --label-column names (or 1 - P(No Finding)
    for `finding`; fairaudit.models.outputs), recorded in results.json's model.score_output;
    with --findings every finding takes its own `score_<output>` column and `score` is
    the `finding` score where the model has a No Finding output, else empty (NaN)."""
    if not run.outputs:
        return np.asarray(run.scores, dtype=np.float64), {}
    from fairaudit.models.outputs import single_score

    names = list(run.outputs)
    outputs = {f"score_{n}": np.asarray(v, dtype=np.float64) for n, v in run.outputs.items()}
    by_output = {n: outputs[f"score_{n}"] for n in names}
    label = "finding" if getattr(req, "findings", None) is not None else req.label_column
    try:
        scores, how = single_score(by_output, names, label)
    except InputError:  # --findings without a No Finding output (checked before the run otherwise)
        scores, how = np.full(len(by_output[names[0]]), np.nan), None
    info["score_output"] = how
    info["output_columns"] = {n: f"score_{n}" for n in names}
    return scores, outputs


def _table(
    path: Path,
    columns: list[str],
    reader: Any,
    *,
    label: str | None = None,
    frame: pd.DataFrame | None = None,
    size: int | None = None,
) -> Table:
    """A join table over a model run's records: read through `reader` a chunk at a time
    (or held as `frame`, its records numbered from 1, as the files are)."""
    from fairaudit.io.tables import Table

    if frame is not None:
        return Table(path=path, frame=frame, rows=pd.Series(range(1, len(frame) + 1)), label=label)
    empty = pd.DataFrame(columns=columns)
    return Table(path=path, frame=empty, rows=pd.Series([], dtype=int), label=label, reader=reader, size=size)


def _record_reader(
    records: Any, sources: dict[str, str], extra: dict[str, np.ndarray] | None = None, first_row: int = 1
) -> Any:
    """Chunks of a run's records as a table's: column name -> record field (`sources`) or
    per-record array (`extra`: the scores, the labels); rows numbered from `first_row`."""
    from fairaudit.io.tables import _CHUNK_ROWS

    extra = extra or {}

    def read(keep: list[str]) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
        # Every record has a path: read it when no other field is wanted, to count the rows.
        fields = list(dict.fromkeys(sources[k] for k in keep if k in sources)) or ["path"]
        at = 0
        for chunk in records.chunks(fields, _CHUNK_ROWS):
            m = len(next(iter(chunk.values())))
            index = pd.RangeIndex(m)
            frame = pd.DataFrame(
                {
                    k: pd.Series(chunk[sources[k]], index=index, dtype=object)
                    if k in sources
                    else pd.Series(extra[k][at : at + m], index=index)
                    for k in keep
                },
                index=index,
            )
            yield frame, pd.Series(np.arange(at + first_row, at + m + first_row), index=index)
            at += m

    return read


def _write_predictions(
    req: Any,
    id_col: str,
    records: Any,
    key: str,
    scores: np.ndarray,
    hasher: Any,
    info: dict[str, Any],
    outputs: Mapping[str, np.ndarray] | None = None,
) -> Table:
    """Write OUT_DIR/predictions.csv (pseudonymized ids) a chunk of records at a time; return
    the table the audit joins on: the ids in clear and the scores as numbers (the exact
    numbers predictions.csv holds as text), read from the run's records when joined."""
    from fairaudit._util.sanitize import write_csv
    from fairaudit.io.tables import _CHUNK_ROWS
    from fairaudit.report.provenance import file_sha256

    label_values = _labels_by_id(req, id_col, records, key)
    path = req.outputs.path(PREDICTIONS_FILE)
    at = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        for chunk in records.chunks([key], _CHUNK_ROWS):
            ids = chunk[key]
            b = at + len(ids)
            # The user-facing predictions.csv: pseudonymized ids, score, and the label when known.
            public = pd.DataFrame({"id" if not req.keep_ids else id_col: [hasher(i) for i in ids]})
            public["score"] = [repr(float(v)) for v in scores[at:b]]  # the numbers the audit used, exactly
            for name, values in (outputs or {}).items():  # a multi-output model: score_<output>
                public[name] = [repr(float(v)) for v in values[at:b]]
            if label_values is not None:
                public["label"] = label_values[at:b]
            # Formula-like ids neutralised; scores and labels stay numbers (docs/reports.md).
            write_csv(public, fh, header=at == 0, numeric=("score", "label", *(outputs or {})))
            at = b
    info["predictions_file"] = {"name": PREDICTIONS_FILE, "sha256": file_sha256(path)}
    extra: dict[str, np.ndarray] = {"score": scores, **(outputs or {})}
    columns = [id_col, "score", *(outputs or {})]
    if req.labels is None:  # the labels sit in the demographics: carry them in the predictions
        extra[req.label_column] = (
            label_values if label_values is not None else np.full(len(scores), "", dtype=object)
        )
        columns.append(req.label_column)
    # Named and numbered as the predictions CSV it stands for (manifest.csv: predictions.csv, rows 2...).
    return _table(
        Path(PREDICTIONS_FILE), columns, _record_reader(records, {id_col: key}, extra, 2), size=len(scores)
    )


def _labels_by_id(req: Any, id_col: str, records: Any, key: str) -> np.ndarray | None:
    """Per record, its label as written in --labels, else in the demographics ("" where the
    id is absent or not unique there), matched on digests of the ids (memory)."""
    from fairaudit.cohort.keys import TextCodes, digest, first_rows, join_codes
    from fairaudit.io.tables import _CHUNK_ROWS, read_header

    source = req.labels if req.labels is not None else req.demographics
    if source is None:
        return None
    table = read_header(source)
    if not table.has(req.label_column) or not table.has(id_col):
        return None
    id_name, label_name = table.column(id_col), table.column(req.label_column)
    digests, texts = [], TextCodes()
    for frame, _ in table.chunks(list(dict.fromkeys([id_name, label_name]))):
        digests.append(digest(frame[id_name]))
        texts.add(frame[label_name])
    if not digests:
        return None
    asked = [digest(pd.Series(c[key], dtype=object)) for c in records.chunks([key], _CHUNK_ROWS)]
    (known, wanted), n_ids = join_codes([np.concatenate(digests), np.concatenate(asked)])
    del digests, asked
    first, count = first_rows(known, n_ids)
    pos = first[wanted]
    ok = (pos >= 0) & (count[wanted] == 1)
    codes = np.full(len(wanted), -1, dtype=np.int64)
    codes[ok] = texts.codes()[pos[ok]]
    return np.array([*texts.values, ""], dtype=object)[codes]


#: The longest file stem written for one case: with ".png" and the temporary name's
#: prefix and suffix (fairaudit._util.atomic.temporary_name) far below NAME_MAX, 255 bytes.
STEM_MAX = 100


def _safe(name: str) -> str:
    """A file stem from an id (ids in clear, --keep-ids, may hold '/', be 240 characters long
    or differ only in characters a file name cannot hold).

    A short id of ASCII letters, digits, '.', '-' and '_' is its own stem; any other gets a
    shortened, sanitized form plus 16 hex digits of its sha256, so that no name exceeds the
    file system's limit (ENAMETOOLONG after part of the run) and two ids never share a file.
    """
    plain = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "_" for c in name)
    if plain == name and 0 < len(name) <= STEM_MAX and not name.startswith("."):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{plain[: STEM_MAX - 17].lstrip('.')}-{digest}"


def _mask_workers(workers: int | None) -> int:
    """Processes that restore and write predicted masks: half the decode workers, at least
    one (they share the CPUs with decoding and the model; a mask costs about a tenth of a
    file's decoding and preparing at 1024 x 1024); none (this process) when the run
    decodes in this process too (`--workers 1`)."""
    from fairaudit.io.dicom import workers_default

    n = workers_default() if workers is None else max(1, int(workers))
    return 0 if n < 2 else max(1, n // 2)


def _drop_failed_masks(
    run: Any,
    failed: list[tuple[str, str]],
    idents: dict[str, str],
    mask_files: dict[str, Path],
    mask_rows: list[dict[str, str]],
    hasher: Any,
) -> None:
    """Files whose mask a worker could not restore or write: unreadable, with the reason,
    as if the model had failed on them (no record, no predictions.csv row)."""
    paths = {path for path, _ in failed}
    gone = {hasher(idents[p]) for p in paths if p in idents}
    for p in paths:
        mask_files.pop(idents.get(p, ""), None)
    mask_rows[:] = [r for r in mask_rows if r["id"] not in gone]
    keep = [i for i, p in enumerate(run.records.column("path")) if p not in paths]
    run.records.reorder(keep)
    run.unreadable.extend(failed)
    run.unreadable.sort()
