"""The training loop behind `fairaudit train`: seeded, early-stopped, fairness-penalised.

Same seed on CPU -> same weights: every random draw (initialisation, dropout, batch
order, augmentation) comes from torch generators seeded from `seed`, and deterministic
algorithms are enforced for the duration of the run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fairaudit.errors import InputError, arg
from fairaudit.models import losses
from fairaudit.models.architectures import build_model
from fairaudit.models.bundle import save_bundle
from fairaudit.stats._segmentation import dice_batch
from fairaudit.train.augment import AugmentConfig, augment_batch
from fairaudit.train.data import TrainingData
from fairaudit.train.split import patient_split, strata_of
from fairaudit.train.validation import classification_validation, segmentation_validation

log = logging.getLogger(__name__)

LOG_FILE = "training_log.jsonl"
MANIFEST_FILE = "manifest.csv"
CLASSIFICATION_PENALTIES = ("none", "demographic_parity", "equalized_odds", "calibration", "adversarial")
SEGMENTATION_PENALTIES = ("none", "dice_variance")


@dataclass
class TrainConfig:
    task: str
    architecture: str | None = None  # default: small_cnn (classification), unet (segmentation)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    fairness: str = "none"
    fairness_weight: float = 0.1
    fairness_attribute: str | None = None  # default: the first --attribute
    adversary_strength: float = 1.0  # maximum gradient-reversal strength (DANN schedule)
    patience: int = 5
    val_fraction: float = 0.2
    augment: bool = False
    device: str = "cpu"
    bootstrap: int = 1000
    name: str = "fairaudit_model"
    version: str = "0.1.0"

    def resolved_architecture(self) -> str:
        return self.architecture or ("unet" if self.task == "segmentation" else "small_cnn")

    def validate(self) -> None:
        allowed = SEGMENTATION_PENALTIES if self.task == "segmentation" else CLASSIFICATION_PENALTIES
        if self.fairness not in allowed:
            raise InputError(
                f"{arg('fairness')} {self.fairness} does not apply to {self.task}; choose one of {', '.join(allowed)}.",
                argument="fairness",
            )
        arch = self.resolved_architecture()
        if (self.task == "segmentation") != (arch == "unet"):
            raise InputError(
                f"{arg('architecture')} {arch} cannot do {self.task} (unet segments; resnet18/small_cnn classify).",
                argument="architecture",
            )
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size)):
            if value < 1:
                raise InputError(f"{arg(name)} must be at least 1, not {value}.", argument=name)
        if self.lr <= 0:
            raise InputError(f"{arg('lr')} must be positive, not {self.lr}.", argument="lr")


ARCHITECTURES = ("unet", "small_cnn", "resnet18")


def architecture_options(
    task: str,
    architecture: str | None,
    *,
    width: int | None = None,
    depth: int | None = None,
    pool: str | None = None,
    dropout: float = 0.0,
) -> tuple[str, dict[str, Any]]:
    """The architecture (by default the task's) and its keyword arguments for build_model;
    InputError for an option the architecture does not have."""
    arch = architecture or ("unet" if task == "segmentation" else "small_cnn")
    if arch not in ARCHITECTURES:
        raise InputError(
            f"{arg('architecture')} must be unet, small_cnn or resnet18, not '{arch}'.",
            argument="architecture",
        )
    kwargs: dict[str, Any] = {}
    if width is not None:
        kwargs["base_channels" if arch == "unet" else "width"] = width
    if depth is not None:
        if arch != "unet":
            raise InputError(f"{arg('depth')} applies to {arg('architecture')} unet only.", argument="depth")
        kwargs["depth"] = depth
    if dropout:
        kwargs["dropout"] = dropout
    if pool is not None:
        if arch == "unet":
            raise InputError(
                f"{arg('pool')} applies to the classifiers (small_cnn, resnet18) only.", argument="pool"
            )
        kwargs["pool"] = pool
    return arch, kwargs


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"{arg('device')} {device}: CUDA is not available on this machine; use {arg('device')} cpu.",
            argument="device",
        )
    return device


@contextlib.contextmanager
def _deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _group_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(np.asarray(values).astype(str).tolist()))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[v] for v in np.asarray(values).astype(str)], dtype=np.int64), names


class _Objective:
    """Task loss + fairness penalty for one batch."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, progress: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, task loss, penalty) for a batch."""
        cfg = self.cfg
        zero = torch.zeros((), device=x.device)
        if cfg.task == "segmentation":
            logits = model(x)
            task = losses.dice_ce_loss(logits, y)
            penalty = zero
            if cfg.fairness == "dice_variance":
                penalty = losses.dice_variance_penalty(losses.soft_dice_per_case(logits, y), g)
            return task + cfg.fairness_weight * penalty, task, penalty
        if cfg.fairness == "adversarial" and model.training:
            strength = losses.reversal_schedule(progress, cfg.adversary_strength)
            logits, adv = model.forward_train(x, strength)
            penalty = losses.adversarial_loss(adv, g)
        else:
            logits = model(x)
            penalty = zero
        if y.ndim == 2:  # multi-label: no fairness penalty (refused in train_model)
            task = masked_bce(logits, y)
            return task, task, penalty
        logits = logits.reshape(-1)
        task = F.binary_cross_entropy_with_logits(logits, y.float())
        p = torch.sigmoid(logits)
        if cfg.fairness == "demographic_parity":
            penalty = losses.demographic_parity_penalty(p, g)
        elif cfg.fairness == "equalized_odds":
            penalty = losses.equalized_odds_penalty(p, y, g)
        elif cfg.fairness == "calibration":
            penalty = losses.calibration_penalty(p, y, g)
        return task + cfg.fairness_weight * penalty, task, penalty


def masked_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known (finite) targets of a multi-label batch:
    an uncertain or unmentioned finding (NaN) adds nothing to the loss (U-Ignore)."""
    known = torch.isfinite(y)
    target = torch.where(known, y, torch.zeros_like(y))
    total = F.binary_cross_entropy_with_logits(logits, target, weight=known.float(), reduction="sum")
    return total / known.sum().clamp(min=1)


def _predict(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str) -> torch.Tensor:
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(model(x[i : i + batch].to(device)).cpu())
    return torch.cat(outs)


@dataclass
class TrainResult:
    bundle: Path
    meta: dict[str, Any]
    history: list[dict[str, Any]]


def train_model(
    data: TrainingData,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    spec: dict[str, Any],
    attributes: list[str],
    show_progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Split, train with early stopping, validate per group, and write the bundle."""
    cfg.validate()
    device = resolve_device(cfg.device)
    arch = cfg.resolved_architecture()
    fair_attr = cfg.fairness_attribute or attributes[0]
    if fair_attr not in data.attributes:
        raise InputError(
            f"{arg('fairness_attribute')} {fair_attr} is not one of the {arg('attributes')} columns.",
            argument="fairness_attribute",
        )
    is_seg = cfg.task == "segmentation"
    multi = bool(data.classes)
    if multi and cfg.fairness != "none":
        raise InputError(
            f"{arg('fairness')} {cfg.fairness}: the fairness penalties train one finding; a multi-label "
            f"classifier ({arg('findings')}) trains with {arg('fairness')} none.",
            argument="fairness",
        )
    strata = strata_of(data.attributes, None if is_seg or multi else data.targets)
    train_idx, val_idx = patient_split(data.patients, strata, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise InputError(f"too few patients ({len(set(data.patients))}) for a train/validation split.")
    codes, group_names = _group_codes(data.attributes[fair_attr])

    kwargs = dict(cfg.arch_kwargs)
    kwargs.setdefault("in_channels", int(data.images.shape[1]))
    if is_seg:
        kwargs.setdefault("out_channels", 2)
    if multi:
        kwargs["num_outputs"] = len(data.classes)
    if cfg.fairness == "adversarial":
        kwargs["adversary_groups"] = len(group_names)

    x_all = torch.from_numpy(data.images)
    y_all = (
        torch.from_numpy(np.asarray(data.targets)).long()
        if is_seg
        else torch.from_numpy(np.asarray(data.targets)).float()
    )
    g_all = torch.from_numpy(codes)
    x_tr, y_tr, g_tr = x_all[train_idx], y_all[train_idx], g_all[train_idx]
    x_va, y_va, g_va = x_all[val_idx], y_all[val_idx], g_all[val_idx]

    objective = _Objective(cfg)
    aug_cfg = AugmentConfig() if cfg.augment else None
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    with _deterministic():
        torch.manual_seed(cfg.seed)
        model = build_model(arch, **kwargs).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        order_gen = torch.Generator().manual_seed(cfg.seed + 1)
        aug_gen = torch.Generator().manual_seed(cfg.seed + 2)
        best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
        n_batches = (len(x_tr) + cfg.batch_size - 1) // cfg.batch_size
        bar_ctx = _progress() if show_progress else contextlib.nullcontext(None)
        with bar_ctx as bar:
            task_id = bar.add_task("training", total=cfg.epochs * n_batches) if bar else None
            for epoch in range(cfg.epochs):
                t0 = time.perf_counter()
                model.train()
                perm = torch.randperm(len(x_tr), generator=order_gen)
                sums = np.zeros(3)
                for b in range(n_batches):
                    idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                    xb, yb, gb = x_tr[idx], y_tr[idx], g_tr[idx]
                    if aug_cfg is not None:
                        xb, mb = augment_batch(xb, yb if is_seg else None, aug_cfg, aug_gen)
                        yb = mb if is_seg else yb
                    xb, yb, gb = xb.to(device), yb.to(device), gb.to(device)
                    progress = (epoch * n_batches + b) / max(cfg.epochs * n_batches - 1, 1)
                    total, task, penalty = objective(model, xb, yb, gb, progress)
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    opt.step()
                    sums += [total.item() * len(idx), task.item() * len(idx), penalty.item() * len(idx)]
                    if bar:
                        bar.update(task_id, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs}")
                model.eval()
                with torch.inference_mode():
                    logits = _predict(model, x_va, 4 * cfg.batch_size, device)
                    v_total, v_task, v_pen = _val_objective(objective, logits, y_va, g_va)
                record = {
                    "epoch": epoch + 1,
                    "train_loss": sums[0] / len(x_tr),
                    "train_task_loss": sums[1] / len(x_tr),
                    "train_penalty": sums[2] / len(x_tr),
                    "val_loss": v_total,
                    "val_task_loss": v_task,
                    "val_penalty": v_pen,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
                history.append(record)
                log.info(
                    "epoch %d: train loss %.4f, val loss %.4f",
                    epoch + 1,
                    record["train_loss"],
                    record["val_loss"],
                )
                if v_total < best[0] - 1e-6:
                    best = (v_total, epoch + 1, copy.deepcopy(model.state_dict()))
                elif epoch + 1 - best[1] >= cfg.patience:
                    log.info("early stop at epoch %d (best %d)", epoch + 1, best[1])
                    record["early_stop"] = True
                    break
                if bar:
                    bar.update(task_id, completed=(epoch + 1) * n_batches)
        model.load_state_dict(best[2])
        model.eval()
        val_logits = _predict(model, x_va, 4 * cfg.batch_size, device)
    seconds = time.perf_counter() - start

    val_attrs = {a: np.asarray(v)[val_idx] for a, v in data.attributes.items()}
    if is_seg:
        pred = val_logits.argmax(dim=1).numpy()
        dice = dice_batch(y_va.numpy() >= 1, pred >= 1)
        validation = segmentation_validation(dice, val_attrs, n_resamples=cfg.bootstrap, seed=cfg.seed)
    elif multi:
        probs = torch.sigmoid(val_logits).numpy()
        targets = y_va.numpy()
        validation = {"findings": []}
        for j, name in enumerate(data.classes):
            known = np.isfinite(targets[:, j])
            one = classification_validation(
                targets[known, j].astype(int), probs[known, j],
                {a: v[known] for a, v in val_attrs.items()}, n_resamples=cfg.bootstrap, seed=cfg.seed,
            )  # fmt: skip
            validation["findings"].append({"finding": name, **one})
        for key in ("ci_method", "bootstrap", "ci_level", "seed", "threshold"):
            validation[key] = validation["findings"][0][key]
    else:
        scores = torch.sigmoid(val_logits.reshape(-1)).numpy()
        validation = classification_validation(
            y_va.numpy().astype(int), scores, val_attrs, n_resamples=cfg.bootstrap, seed=cfg.seed
        )
    validation["best_epoch"] = best[1]
    validation["best_val_loss"] = best[0]

    meta = _meta(
        cfg, arch, kwargs, spec, data, train_idx, val_idx, validation, history, seconds, device, attributes
    )
    if extra_meta:
        meta.update(extra_meta)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOG_FILE, "w", encoding="utf-8") as fh:
        for rec in history:
            fh.write(json.dumps(rec) + "\n")
    _write_manifest(out_dir / MANIFEST_FILE, data, train_idx, val_idx)
    save_bundle(model.cpu(), out_dir, meta)
    return TrainResult(out_dir, json.loads((out_dir / "model.json").read_text()), history)


def _write_manifest(path: Path, data: TrainingData, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    """Every input with status, reason and split; ids salted-hashed (FAIRAUDIT_SALT for stable hashes)."""
    import csv
    import os

    from fairaudit._util.privacy import IdHasher

    hasher = IdHasher(salt=os.environ.get("FAIRAUDIT_SALT"))
    split = {data.ids[i]: "train" for i in train_idx} | {data.ids[i]: "validation" for i in val_idx}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "id", "status", "reason", "split"])
        for row in data.manifest:
            ident = row["id"]
            writer.writerow(
                [
                    row["source"],
                    hasher(ident),
                    row["status"],
                    row["reason"],
                    split.get(ident, "") if row["status"] == "included" else "",
                ]
            )


def _val_objective(objective: _Objective, logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor):
    cfg = objective.cfg
    if cfg.task == "segmentation":
        task = losses.dice_ce_loss(logits, y)
        pen = (
            losses.dice_variance_penalty(losses.soft_dice_per_case(logits, y), g)
            if cfg.fairness == "dice_variance"
            else torch.zeros(())
        )
    else:
        if y.ndim == 2:
            task = masked_bce(logits, y)
            return float(task), float(task), 0.0
        flat = logits.reshape(-1)
        task = F.binary_cross_entropy_with_logits(flat, y.float())
        p = torch.sigmoid(flat)
        pen = {
            "demographic_parity": lambda: losses.demographic_parity_penalty(p, g),
            "equalized_odds": lambda: losses.equalized_odds_penalty(p, y, g),
            "calibration": lambda: losses.calibration_penalty(p, y, g),
        }.get(cfg.fairness, lambda: torch.zeros(()))()
    total = task + cfg.fairness_weight * pen
    return float(total), float(task), float(pen)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _channel_def(spec: dict[str, Any], c: int) -> dict[str, str]:
    names = ["X-ray"] * c
    if spec.get("highpass_sigma") is not None:
        names[-1] = f"X-ray high-pass (sigma {spec['highpass_sigma']} px)"
    return {str(i): n for i, n in enumerate(names)}


def _meta(
    cfg, arch, kwargs, spec, data, train_idx, val_idx, validation, history, seconds, device, attributes
):
    is_seg = cfg.task == "segmentation"
    h, w = spec["input_size"]
    c = int(data.images.shape[1])
    by_group: dict[str, Any] = {}
    for a, values in data.attributes.items():
        values = np.asarray(values).astype(str)
        rows = {}
        for g in sorted(set(values.tolist())):
            sel = values == g
            entry = {"train": int(sel[train_idx].sum()), "val": int(sel[val_idx].sum())}
            if data.classes:  # positives per finding
                t = np.nan_to_num(np.asarray(data.targets), nan=0.0)
                entry["train_positive"] = dict(
                    zip(
                        data.classes,
                        t[train_idx][sel[train_idx]].sum(axis=0).astype(int).tolist(),
                        strict=True,
                    )
                )
                entry["val_positive"] = dict(
                    zip(data.classes, t[val_idx][sel[val_idx]].sum(axis=0).astype(int).tolist(), strict=True)
                )
            elif not is_seg:
                t = np.asarray(data.targets)
                entry["train_positive"] = int(t[train_idx][sel[train_idx]].sum())
                entry["val_positive"] = int(t[val_idx][sel[val_idx]].sum())
            rows[g] = entry
        by_group[a] = rows
    excluded: dict[str, int] = {}
    for m in data.manifest:
        if m["status"] == "excluded":
            excluded[m["reason"]] = excluded.get(m["reason"], 0) + 1
    training = {k: v for k, v in asdict(cfg).items() if k not in ("name", "version", "arch_kwargs")}
    training.update(
        {
            "architecture": arch,
            "device": device,
            "optimizer": "AdamW",
            "loss": "dice + cross-entropy"
            if is_seg
            else "binary cross-entropy per finding, uncertain and blank labels left out (U-Ignore)"
            if data.classes
            else "binary cross-entropy",
            "fairness_attribute": cfg.fairness_attribute or attributes[0],
            "augmentation": AugmentConfig().to_dict() if cfg.augment else None,
            "epochs_run": len(history),
            "best_epoch": validation["best_epoch"],
            "seconds": round(seconds, 1),
            "torch_version": torch.__version__,
            "log": LOG_FILE,
            "split": "patient-level, stratified by "
            + ("attributes" if is_seg or data.classes else "label and attributes"),
        }
    )
    outputs = (
        {
            "type": "image",
            "format": "segmentation",
            "num_channels": 2,
            "spatial_shape": [h, w],
            "dtype": "float32",
            "value_range": [],
            "is_patch_data": False,
            "channel_def": {"0": "background", "1": "lung"},
            "activation": "softmax over channels, argmax -> label map",
        }
        if is_seg
        else {
            "type": "probabilities",
            "format": "classification",
            "num_channels": len(data.classes),
            "spatial_shape": [1],
            "dtype": "float32",
            "value_range": [],
            "is_patch_data": False,
            "channel_def": {str(i): c for i, c in enumerate(data.classes)},
            "activation": "sigmoid per output -> P(finding), one per class (multi-label)",
        }
        if data.classes
        else {
            "type": "probabilities",
            "format": "classification",
            "num_channels": 1,
            "spatial_shape": [1],
            "dtype": "float32",
            "value_range": [],
            "is_patch_data": False,
            "channel_def": {"0": "finding"},
            "activation": "sigmoid -> P(finding)",
        }
    )
    return {
        "format_version": "1",
        "name": cfg.name,
        "version": cfg.version,
        "task": cfg.task,
        "intended_use": "Trained by fairaudit train. Not validated for clinical use.",
        "description": f"{arch} trained by `fairaudit train` for {cfg.task}.",
        "authors": ["fairaudit"],
        "license": "Apache-2.0",
        "architecture": {"name": arch, "kwargs": kwargs},
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "X-ray",
                    "num_channels": c,
                    "spatial_shape": [h, w],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": _channel_def(spec, c),
                }
            },
            "outputs": {"pred": outputs},
        },
        "preprocessing": spec,
        "classes": ["background", "lung"] if is_seg else list(data.classes) or ["no_finding", "finding"],
        **({"multilabel": True} if data.classes else {}),
        "training": training,
        "data_summary": {
            "n_cases": data.n,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_patients_train": int(len(set(data.patients[train_idx]))),
            "n_patients_val": int(len(set(data.patients[val_idx]))),
            "id_column": data.id_column,
            "patient_column": data.patient_column,
            "attributes": list(data.attributes),
            "by_group": by_group,
            "excluded": [{"reason": r, "count": n} for r, n in sorted(excluded.items())],
        },
        "validation": validation,
    }
