"""Full fine-tuning: images -> trunk -> head, trained end to end (the paper's setting), for DAH and, with
another :class:`~dahash.train.objectives.Objective`, for the comparison methods (:func:`train_finetune`).

Head mode (:func:`dahash.train.head.train_dah`) trains only the head on cached features; here the
backbone's trunk is trained too, on augmented images, following the authors' ``cnn_train_dah.m``:

* Batches are those of head mode: ``k*C`` source images (k per class, class order;
  :class:`~dahash.train.sampler.KPerClassSampler`) followed by ``k*C`` target images; one epoch is one
  pass over the shuffled target set (:func:`~dahash.train.sampler.target_batches`). With the same seed the
  source/target indices of every batch equal head mode's (the numpy generator is consumed in the
  same order). The joint batch goes through trunk and head in ONE forward pass.
* Loss per batch: the objective's (:mod:`dahash.train.objectives`). DAH's
  (:class:`~dahash.train.objectives.DAHObjective`): :func:`dahash.train.head.batch_losses` (hash + beta
  quant + eta entropy [gated] + gamma MK-MMD on ``config.mmd_layers`` of the head); backpropagated as
  ``J / (2 k C)`` when ``config.divide_by_batch`` (MatConvNet's ``cnn_train``), as in head mode. An
  objective that does not read the target (``reads_target = False``: source-only, NoDA, SuH) gets the
  source rows only; its epochs keep DAH's length and the same source batches.
* SGD with momentum; epoch ``e``'s rate is ``lr_schedule(lr_start, lr_end, epochs)[e]`` times each
  parameter group's ``lr_mult``:

  - pretrained trunk, conv/linear weight and bias: ``config.pretrained_lr_mult``, weight decay;
  - trunk from scratch, conv/linear: ``config.new_lr_mult``, weight decay;
  - pretrained trunk, norm-layer scale/shift: ``config.pretrained_lr_mult``, no weight decay;
  - trunk from scratch, norm-layer scale/shift: ``config.bn_lr_mult``, no weight decay;
  - head (fc6, fc7, fc8, BN): :meth:`DAHHead.param_groups` (pretrained fc6/fc7 at
    ``pretrained_lr_mult``, new layers at ``new_lr_mult``, BN at ``bn_lr_mult`` without decay).

  (The authors fine-tune every VGG-F layer at 0.1/0.2 and VGG-F has no BatchNorm; the norm-layer
  rules apply to other trunks, e.g. EfficientNet-Lite0, and are our choice: no weight decay on
  scale/shift, as the head's BN.)
* BatchNorm layers of a PRETRAINED trunk are kept in eval mode throughout training: their running
  mean/variance stay the ImageNet statistics the weights were trained with (frozen: not updated and
  not replaced by batch statistics), while their scale/shift are still trained. A trunk trained from scratch (digits)
  uses ordinary train-mode BatchNorm.

Randomness: ``np.random.default_rng(seed)`` (batches), ``torch.Generator().manual_seed(seed)``
(MK-MMD halves) and, for the augmentation of slot ``j`` of batch ``b`` of epoch ``e``,
``np.random.default_rng([seed, e, b, j])``, so results do not depend on ``num_workers``. The global
torch RNG is not used. The trunk and head are initialised by the caller (so, unlike head mode, the
MMD generator is not first advanced by the head's initialisation: the halves differ from head mode's). On CPU a fixed seed gives
bit-identical histories and weights.

With ``checkpoint_dir`` the run is checkpointed and resumed from its newest checkpoint
(:mod:`dahash.train.checkpoint`), as head mode does: after every ``checkpoint_every``-th epoch and after the last
one (never mid-epoch) ``epoch-XXXX.pt`` is saved atomically with the trunk, head, objective and optimizer state,
the torch and numpy generator states, the sampler's permutations and cursors, the history, the epoch and the run's
fingerprint (config, seed, ``num_classes``, ``trunk_pretrained``, the objective, the image paths -- or a digest
of PIL images' bytes --, the labels and the initial trunk, head and objective state); the last 2 are kept. On
start the newest readable checkpoint with the same fingerprint is resumed. The per-image augmentation generators
are derived from ``(seed, epoch, batch, slot)``, so they carry no state between epochs; on CPU a resumed run ends
bit-identical (history and state_dicts) to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from dahash.data.image_cache import CachedImages
from dahash.nn.augment import ImageInput
from dahash.progress import label, loss_postfix, progress_for
from dahash.progress import progress as progress_bar
from dahash.train.checkpoint import (
    capture_rng_state,
    checkpoint_progress,
    cpu_state_dict,
    load_latest_checkpoint,
    restore_rng_state,
    run_fingerprint,
    save_checkpoint,
)
from dahash.train.losses import is_class_ordered_k_batch
from dahash.nn.model import DAHHead
from dahash.train.objectives import Batch, DAHObjective, Objective, objective_step
from dahash.train.inputs import ImageTransformFn, _EpochBatches, _inputs
from dahash.train.sampler import KPerClassSampler, target_batches
from dahash.train.head import CHECKPOINTS_KEPT, DAHConfig, lr_schedule, make_sgd

__all__ = [
    "FinetuneResult",
    "encode_images",
    "finetune_param_groups",
    "freeze_batchnorm",
    "trunk_features",
    "train_dah_finetune",
    "train_finetune",
]

_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)



@dataclass
class FinetuneResult:
    """Trained trunk and head (on the training device, train mode; a pretrained trunk's BatchNorm
    layers in eval mode) and one record per epoch: ``epoch`` (1-based), ``lr`` (schedule value before
    multipliers) and the epoch means of the objective's components (DAH: the keys of head mode's history,
    the unweighted ``hash``, ``quantization``, ``entropy``, ``mmd`` and the weighted ``total``).
    ``resumed_epoch``: epochs restored from a checkpoint (0 = trained from the start)."""

    trunk: nn.Module
    head: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_epoch: int = 0


# ---------------------------------------------------------------------------------------------
# model helpers
# ---------------------------------------------------------------------------------------------
def trunk_features(trunk: nn.Module, x: Tensor) -> Tensor:
    """``(N, C, H, W)`` images -> ``(N, f)`` features: ``trunk.features(x)`` when the trunk has such a
    method (VGG-F: pool5 flattened; EfficientNet-Lite0: pooled 1280-d; SmallCNN), else ``trunk(x)``;
    outputs with more than 2 dims are flattened in (C, H, W) order."""
    features = getattr(trunk, "features", None)
    out = features(x) if callable(features) else trunk(x)
    return out.flatten(1) if out.dim() > 2 else out


def freeze_batchnorm(module: nn.Module) -> int:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics used and not
    updated); returns how many. Their affine parameters stay trainable. Call after ``.train()``."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n


def finetune_param_groups(
    trunk: nn.Module, head: nn.Module, config: DAHConfig, *, trunk_pretrained: bool
) -> list[dict[str, Any]]:
    """SGD parameter groups ``{"params": [p], "name", "lr_mult", "lr", "weight_decay"}``, one per tensor.

    Trunk (names ``"trunk.<param name>"``): conv/linear weights and biases at
    ``config.pretrained_lr_mult`` (pretrained) or ``config.new_lr_mult`` (scratch), weights with
    ``config.weight_decay`` and biases with ``config.bias_decay * config.weight_decay`` (the code: 0); normalisation layers' scale/shift at ``config.pretrained_lr_mult``
    (pretrained) or ``config.bn_lr_mult`` (scratch), no weight decay. Parameters with
    ``requires_grad=False`` are left out. Head: its ``param_groups`` (:meth:`DAHHead.param_groups`, or a
    comparison method's head with the same signature; names ``"head.<name>"``).
    Trunk parameters that the features never reach (e.g. a classifier layer) get no gradient and are
    therefore never changed by SGD.
    """
    conv_mult = config.pretrained_lr_mult if trunk_pretrained else config.new_lr_mult
    norm_mult = config.pretrained_lr_mult if trunk_pretrained else config.bn_lr_mult
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for mod_name, module in trunk.named_modules():
        is_norm = isinstance(module, _NORM_TYPES)
        for p_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_bias = p_name == "bias" or p_name.endswith("bias")
            mult = (norm_mult if is_norm else conv_mult)[1 if is_bias else 0]
            wd = 0.0 if is_norm else config.weight_decay * (config.bias_decay if is_bias else 1.0)
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            groups.append({"params": [param], "name": f"trunk.{full}", "lr_mult": float(mult),
                           "lr": config.lr_start * float(mult), "weight_decay": float(wd)})
    for g in head.param_groups(config.lr_start, config.weight_decay, config.pretrained_lr_mult,
                               config.new_lr_mult, config.bn_lr_mult, bias_decay=config.bias_decay):
        g["name"] = f"head.{g['name']}"
        groups.append(g)
    return groups


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _validate(source: Sequence, ys: np.ndarray, target: Sequence, num_classes: int, head: nn.Module,
              trunk: nn.Module, objective: Objective) -> None:
    if not (isinstance(head, nn.Module) and hasattr(head, "in_dim") and callable(getattr(head, "param_groups", None))):
        raise ValueError(f"head must be a dahash.nn.model.DAHHead (or an nn.Module with in_dim and param_groups), "
                         f"got {type(head).__name__}")
    if not isinstance(objective, Objective):
        raise ValueError(f"objective must be a dahash.train.objectives.Objective, got {type(objective).__name__}")
    if not isinstance(trunk, nn.Module):
        raise ValueError(f"trunk must be a torch.nn.Module, got {type(trunk).__name__}")
    if ys.ndim != 1 or ys.shape[0] != len(source):
        raise ValueError(f"ys must have shape ({len(source)},) (one label per source image), got {ys.shape}")
    if ys.size and not np.issubdtype(ys.dtype, np.integer):
        raise ValueError(f"ys must be integer labels, got dtype {ys.dtype}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if len(target) < 1:
        raise ValueError("target must hold at least one image")


def _image_id(item: ImageInput) -> str:
    """A path as its string; a PIL image as ``pil:<mode>:<w>x<h>:<sha256 of its pixel bytes>``."""
    if isinstance(item, Image.Image):
        digest = hashlib.sha256(item.tobytes()).hexdigest()
        return f"pil:{item.mode}:{item.size[0]}x{item.size[1]}:{digest}"
    return str(item)


def _fingerprint(source: Sequence[ImageInput], ys: np.ndarray, target: Sequence[ImageInput], num_classes: int,
                 config: DAHConfig, seed: int, trunk: nn.Module, head: nn.Module, trunk_pretrained: bool,
                 objective: Objective) -> str:
    """:func:`~dahash.train.checkpoint.run_fingerprint` of a :func:`train_finetune` call: the config,
    seed, ``num_classes``, ``trunk_pretrained``, the objective's settings, the source/target images
    (:func:`_image_id`), the source labels and the INITIAL trunk, head and objective state (every
    parameter and buffer)."""
    arrays: dict[str, Any] = {"ys": torch.from_numpy(ys)}
    for prefix, module in (("trunk", trunk), ("head", head), ("objective", objective)):
        for key, value in module.state_dict().items():
            arrays[f"{prefix}.{key}"] = value

    def ids(items: Sequence[ImageInput] | CachedImages) -> list[str]:
        return items.ids() if isinstance(items, CachedImages) else [_image_id(x) for x in items]

    extra = {"num_classes": int(num_classes), "trunk_pretrained": bool(trunk_pretrained),
             "source": ids(source), "target": ids(target)}
    if objective.method != "dah":  # DAH's fingerprint as before objectives existed (its checkpoints stay valid)
        extra["objective"] = objective.describe()
    return run_fingerprint(dataclasses.asdict(config), seed, arrays, extra)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def train_dah_finetune(
    source: Sequence[ImageInput],
    ys: Sequence[int] | np.ndarray | Tensor,
    target: Sequence[ImageInput],
    num_classes: int,
    config: DAHConfig,
    *,
    head: DAHHead,
    **kwargs: Any,
) -> FinetuneResult:
    """DAH fine-tuned end to end: :func:`train_finetune` with :class:`~dahash.train.objectives.DAHObjective`
    (``head`` must be a :class:`DAHHead`); the other arguments are :func:`train_finetune`'s."""
    if not isinstance(head, DAHHead):
        raise ValueError(f"head must be a dahash.nn.model.DAHHead, got {type(head).__name__}")
    return train_finetune(source, ys, target, num_classes, config, head=head,
                          objective=DAHObjective(config, num_classes), **kwargs)


@dataclass
class _Run:
    """What one epoch of :func:`train_finetune` reads: the networks, optimiser, loader and the run's draws."""

    trunk: nn.Module
    head: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    loader: Any
    to_input: Callable[[Any], Tensor]
    epoch_batches: _EpochBatches
    sampler: KPerClassSampler
    rng: np.random.Generator
    generator: torch.Generator
    ys_np: np.ndarray
    ys_d: Tensor
    n_target: int
    num_classes: int
    config: DAHConfig
    seed: int
    device: torch.device
    trunk_pretrained: bool
    bar_label: str | None = None  # the run's progress label (None: no bars)


def _train_modes(trunk: nn.Module, head: nn.Module, objective: Objective, trunk_pretrained: bool) -> None:
    """Training mode for the trunk, head and objective; a pretrained trunk keeps its BatchNorm statistics."""
    trunk.train()
    head.train()
    objective.train()
    if trunk_pretrained:
        freeze_batchnorm(trunk)


def _train_epoch(run: _Run, epoch_idx: int, lr: float) -> np.ndarray:
    """One epoch at learning rate ``lr``: ``ceil(nt / batch_ns)`` steps, each on ``batch_ns`` source items (K per
    class) plus a target batch when the objective reads the target. Draws are keyed by (seed, epoch, batch, slot).

    Returns:
        ``(len(objective.names),)`` mean of each loss term over the epoch's steps.
    """
    config, objective = run.config, run.objective
    epoch = epoch_idx + 1
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    _train_modes(run.trunk, run.head, objective, run.trunk_pretrained)
    batch_ns = run.sampler.batch_size
    t_batches = target_batches(run.n_target, batch_ns, run.rng)
    s_batches = [run.sampler.next_batch() for _ in t_batches]  # same rng order as head mode
    run.epoch_batches.batches = [
        [(0, int(i), (run.seed, epoch, b, j)) for j, i in enumerate(s)]
        + ([(1, int(i), (run.seed, epoch, b, batch_ns + j)) for j, i in enumerate(t)] if objective.reads_target
           else [])
        for b, (s, t) in enumerate(zip(s_batches, t_batches))
    ]
    sums = np.zeros(len(objective.names))
    with progress_bar(run.loader, total=len(t_batches), desc=f"{run.bar_label} epoch {epoch}", unit="batch",
                      leave=False, enabled=run.bar_label is not None) as batches:
        for b_idx, batch in enumerate(batches, start=1):
            s_np = s_batches[b_idx - 1]
            gate_open = (not config.entropy_gate) or is_class_ordered_k_batch(
                run.ys_np[s_np], run.num_classes, config.k_per_class
            )
            feats = trunk_features(run.trunk, run.to_input(batch))
            if feats.dim() != 2 or feats.shape[1] != run.head.in_dim:
                raise ValueError(
                    f"the trunk produced features of shape {tuple(feats.shape)} but the head expects "
                    f"(N, {run.head.in_dim}); build DAHHead with in_dim = the trunk's feature size"
                )
            s_idx = torch.from_numpy(s_np).to(run.device)
            step = epoch_idx * len(t_batches) + b_idx - 1
            info = Batch(n_source=batch_ns, ys=run.ys_d[s_idx], source_index=s_idx, epoch=epoch,
                         generator=run.generator, progress=step / (config.epochs * len(t_batches)), gate_open=gate_open)
            terms = objective.losses(run.head(feats), info)
            sums += objective_step(terms, objective.names, run.optimizer, epoch, b_idx)
    return sums / len(t_batches)


def _placed_optimizer(trunk: nn.Module, head: nn.Module, objective: Objective, config: DAHConfig,
                      device: torch.device, memory_format: torch.memory_format, trunk_pretrained: bool) -> torch.optim.Optimizer:
    """Move trunk (in ``memory_format``), head and objective to ``device``; their SGD with momentum over
    :func:`finetune_param_groups` plus the objective's own groups."""
    trunk.to(device=device, memory_format=memory_format)
    head.to(device)
    objective.to(device)
    groups = finetune_param_groups(trunk, head, config, trunk_pretrained=trunk_pretrained)
    groups += objective.param_groups(config.lr_start, config.weight_decay, config.new_lr_mult, config.bias_decay)
    return make_sgd(groups, config.lr_start, config.momentum)


def _resume(run: _Run, checkpoint_dir: Path | None, fingerprint: str) -> tuple[int, list[dict[str, float]]]:
    """Load the newest checkpoint of ``checkpoint_dir`` with ``fingerprint`` into ``run`` (networks, objective,
    optimiser, generators, sampler). Returns ``(epochs already trained, their history)``; ``(0, [])`` without one."""
    if checkpoint_dir is None:
        return 0, []
    ckpt = load_latest_checkpoint(checkpoint_dir, fingerprint)
    if ckpt is None:
        return 0, []
    start_epoch, history = checkpoint_progress(ckpt, run.config.epochs)
    run.trunk.load_state_dict(ckpt["trunk"])
    run.head.load_state_dict(ckpt["head"])
    run.objective.load_state_dict(ckpt.get("objective", {}))
    run.optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt, run.generator, run.rng, run.sampler)
    _train_modes(run.trunk, run.head, run.objective, run.trunk_pretrained)  # the modes training leaves (also
    # when no epoch is left to train)
    return start_epoch, history


def _save(run: _Run, checkpoint_dir: Path, epoch: int, fingerprint: str, history: list[dict[str, float]]) -> None:
    """Checkpoint ``epoch`` atomically: networks, objective, optimiser, generators, sampler and history."""
    state = {"fingerprint": fingerprint, "trunk": cpu_state_dict(run.trunk), "head": cpu_state_dict(run.head),
             "objective": cpu_state_dict(run.objective), "optimizer": run.optimizer.state_dict(),
             **capture_rng_state(run.generator, run.rng, run.sampler), "history": [dict(h) for h in history]}
    save_checkpoint(checkpoint_dir, epoch, state, keep=CHECKPOINTS_KEPT)


def train_finetune(
    source: Sequence[ImageInput],
    ys: Sequence[int] | np.ndarray | Tensor,
    target: Sequence[ImageInput],
    num_classes: int,
    config: DAHConfig,
    *,
    trunk: nn.Module,
    head: nn.Module,
    objective: Objective,
    trunk_pretrained: bool,
    train_transform: ImageTransformFn,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_workers: int = 0,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    channels_last: bool = False,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 10,
    progress: bool | str = False,
) -> FinetuneResult:
    """Train ``trunk`` + ``head`` (+ the objective's own parameters) end to end with ``objective`` (module doc).

    Args:
        source: ``ns`` labelled source images: paths or PIL images, or a decode-once cache's
            :class:`~dahash.data.image_cache.CachedImages` (:mod:`dahash.train.inputs`; ``target`` likewise).
            ys: ``(ns,)`` labels in ``[0, num_classes)``, every class present. target: ``nt`` unlabelled target
            images (labels never seen; with ``objective.reads_target = False`` they only set the epoch length).
        config: hyper-parameters (``epochs``, ``k_per_class``, lr schedule, multipliers; DAH's loss weights).
        trunk: image -> features network (``trunk_features``); its output size must be ``head.in_dim``.
        head: the :class:`DAHHead` or a comparison method's head (an ``nn.Module`` with ``in_dim`` and
            ``param_groups`` as :meth:`DAHHead.param_groups`), already initialised.
        objective: the method's loss (:mod:`dahash.train.objectives`); it is moved to ``device``, its
            parameters are trained (:meth:`~dahash.train.objectives.Objective.param_groups`) and its state
            is checkpointed with the network.
        trunk_pretrained: True for ImageNet-pretrained trunks (VGG-F, EfficientNet-Lite0: lower lr
            multipliers, frozen BatchNorm statistics), False for a trunk trained from scratch (digits).
        train_transform: image -> ``(C, H, W)`` float tensor; a :class:`dahash.nn.augment.TrainTransform`
            (or anything with ``takes_rng = True``) is called as ``transform(image, rng)``.
        device: where trunk, head and batches live (``"cuda"`` trains on the GPU).
        seed: the only source of randomness (module docstring).
        num_workers: DataLoader worker processes for decoding/augmenting (0 = in this process).
        on_epoch: called with each epoch's history record, after that epoch's checkpoint (if any)
            is saved; only for the epochs trained by THIS call (not for epochs restored from a checkpoint).
        channels_last: run the trunk in ``torch.channels_last`` memory format (trunk converted in
            place, batches converted on the fly). Same maths, different kernels (results differ in the
            last bits, still deterministic); about 3x faster training steps for EfficientNet-Lite0 on
            CPU (depthwise-convolution backward), so recommended there.
        checkpoint_dir: folder of this run's checkpoints, or None for none (module docstring: what is saved,
            when, and how a run resumes; pass the same freshly initialised trunk and head to resume).
        checkpoint_every: epochs between checkpoints, ``>= 1``.
        progress: bars (:mod:`dahash.progress`) over the epochs (from the resumed epoch; postfix the epoch's
            losses) and over each epoch's batches: False none, True labelled "finetune", or a string: the label.
            They change no result.

    Returns:
        :class:`FinetuneResult` (trunk and head are the objects passed in, trained in place).

    Raises:
        ValueError: bad labels/sizes, a class without source images, trunk output not ``head.in_dim``,
            ``checkpoint_every < 1``, or a checkpoint in ``checkpoint_dir`` from a run with another
            fingerprint (the message names the file).
        NonFiniteLossError: a loss component became nan/inf (names epoch, batch and component).
    """
    if not isinstance(config, DAHConfig):
        raise ValueError(f"config must be a DAHConfig, got {type(config).__name__}")
    ys_np = (ys.detach().cpu().numpy() if isinstance(ys, Tensor) else np.asarray(ys)).reshape(-1)
    _validate(source, ys_np, target, num_classes, head, trunk, objective)
    ys_np = ys_np.astype(np.int64)
    if (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer))
            or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    device, seed = torch.device(device), int(seed)
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    fingerprint = "" if checkpoint_dir is None else _fingerprint(  # of the trunk and head as passed in
        source, ys_np, target, num_classes, config, seed, trunk, head, trunk_pretrained, objective)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = KPerClassSampler(ys_np, num_classes, config.k_per_class, rng)
    ys_d = torch.from_numpy(ys_np).to(device)

    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    optimizer = _placed_optimizer(trunk, head, objective, config, device, memory_format, trunk_pretrained)
    schedule = lr_schedule(config.lr_start, config.lr_end, config.epochs)
    epoch_batches = _EpochBatches()
    loader, to_input = _inputs((source, target), train_transform, epoch_batches, num_workers, device, memory_format)

    run = _Run(trunk=trunk, head=head, objective=objective, optimizer=optimizer, loader=loader, to_input=to_input,
               epoch_batches=epoch_batches, sampler=sampler, rng=rng, generator=generator, ys_np=ys_np, ys_d=ys_d,
               n_target=len(target), num_classes=num_classes, config=config, seed=seed, device=device,
               trunk_pretrained=trunk_pretrained, bar_label=label(progress, "finetune"))
    start_epoch, history = _resume(run, checkpoint_dir, fingerprint)
    _train_epochs(run, start_epoch, history, schedule, on_epoch, (checkpoint_dir, int(checkpoint_every), fingerprint))
    return FinetuneResult(trunk=trunk, head=head, history=history, resumed_epoch=start_epoch)


def _train_epochs(run: _Run, start_epoch: int, history: list[dict[str, float]], schedule: np.ndarray,
                  on_epoch: Callable[[dict[str, float]], None] | None,
                  checkpoints: tuple[Path | None, int, str]) -> None:
    """Train epochs ``start_epoch + 1 .. config.epochs`` of :func:`train_finetune`, appending each epoch's record
    to ``history``; ``checkpoints``: (folder or None, every how many epochs, the run's fingerprint)."""
    config, names = run.config, run.objective.names
    checkpoint_dir, every, fingerprint = checkpoints
    with progress_bar(total=config.epochs, initial=start_epoch, desc=run.bar_label, unit="epoch",
                      enabled=run.bar_label is not None) as bar:
        for epoch_idx in range(start_epoch, config.epochs):
            epoch = epoch_idx + 1
            lr = float(schedule[epoch_idx])
            means = _train_epoch(run, epoch_idx, lr)
            record: dict[str, float] = {"epoch": epoch, "lr": lr}
            record.update({name: float(v) for name, v in zip(names, means)})
            history.append(record)
            if checkpoint_dir is not None and (epoch % every == 0 or epoch == config.epochs):
                _save(run, checkpoint_dir, epoch, fingerprint, history)
            if on_epoch is not None:
                on_epoch(dict(record))
            bar.set_postfix_str(loss_postfix(record, names), refresh=False)
            bar.update()


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------
def encode_images(
    trunk: nn.Module,
    head: nn.Module,
    images: Sequence[ImageInput],
    eval_transform: ImageTransformFn,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    *,
    num_workers: int = 0,
    channels_last: bool = False,
    output: str = "u",
    progress: bool | str = False,
) -> np.ndarray:
    """Continuous hash outputs ``u = tanh(BN(fc8(head(trunk(x)))))`` of ``images`` as float32 ``(N, d)``
    (or, with ``output`` = ``"fc6"``, ``"fc7"``, ``"fc8"``, that layer of :class:`~dahash.nn.model.HeadOutput`:
    ``(N, h)``; e.g. fc7 for the feature analysis of Figure 3).

    Trunk and head run in eval mode (BatchNorm running statistics, deterministic) without gradients;
    both are moved to ``device`` in place and their train/eval modes (per module) are restored
    afterwards. ``eval_transform`` is called as ``transform(image, rng)`` when it has ``takes_rng``
    (e.g. :class:`dahash.nn.augment.EvalTransform`, which ignores ``rng``), else as
    ``transform(PIL image)``. Binary codes are ``u >= 0`` (see :func:`dahash.train.losses.hash_sign`).
    ``channels_last`` as in :func:`train_dah_finetune` (the trunk is converted in place). ``progress``: a bar over
    the images (:mod:`dahash.progress`): False none, True labelled "encode", or a string: the label.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if output not in ("u", "fc6", "fc7", "fc8"):
        raise ValueError(f"output must be one of u, fc6, fc7, fc8, got {output!r}")
    device = torch.device(device)
    n = len(images)
    if n == 0:
        return np.zeros((0, head.widths[output]), dtype=np.float32)
    modes = {m: m.training for m in (*trunk.modules(), *head.modules())}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    trunk.to(device=device, memory_format=memory_format)
    head.to(device)
    trunk.eval()
    head.eval()
    batches = [[(0, i, (0,)) for i in range(s, min(s + int(batch_size), n))] for s in range(0, n, int(batch_size))]
    loader, to_input = _inputs((images,), eval_transform, batches, num_workers, device, memory_format)
    chunks: list[np.ndarray] = []
    try:
        with torch.no_grad(), progress_for(progress, "encode", total=n, unit="img") as bar:
            for batch in loader:
                feats = trunk_features(trunk, to_input(batch))
                chunks.append(getattr(head(feats), output).float().cpu().numpy())
                bar.update(chunks[-1].shape[0])
    finally:
        for m, was_training in modes.items():
            m.training = was_training
    return np.concatenate(chunks).astype(np.float32, copy=False)
