"""Pruning masks: prunable weights, magnitude and random masks, sparsity.

A mask is a ``dict[str, Tensor]`` of bool tensors keyed by parameter name, shaped like the
parameter, True = kept (STYLE.md 2.7). Sparsity and density are fractions. Masks are enforced
only in ``apply`` and sparsity is computed only in ``sparsity``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import torch
from torch import Tensor
from torch import nn

from trainer import levels
from trainer.hparams import PruneHparams

_SCOPES = ("layerwise", "global")
_TOL = 1e-9  # slack for float sparsities such as 1 - 0.8**3 == 0.48799999999999993


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the ``.weight`` of every ``nn.Conv2d`` and ``nn.Linear``, in module order.

    Biases and normalization parameters are never prunable. A weight shared by several modules
    is listed once, under the name ``model.named_parameters()`` gives it.

    Returns:
        Names as in ``model.named_parameters()``, e.g. ``["conv1.weight", "fc.weight"]``.
    Source: open_lth ``models/base.py``; Frankle & Carbin 2019, App. B; METHODS.md 2.1.
    """
    param_names = {name for name, _ in model.named_parameters()}
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    names = [f"{name}.weight" if name else "weight" for name in layers]
    return [name for name in names if name in param_names]


def resolve_keep_dense(model: nn.Module, keep_dense: Sequence[str]) -> frozenset[str]:
    """Turn ``PruneHparams.keep_dense`` entries into the prunable names that stay dense.

    ``"output"`` resolves to ``model.output_layer`` and ``"first"`` to ``model.first_layer``:
    string attributes holding a parameter name such as ``"fc2.weight"`` (a module name such as
    ``"fc2"`` also works). Any other entry must be one of ``prunable_names(model)``.

    Args:
        model: A model with string attributes ``output_layer`` and ``first_layer``.
        keep_dense: Entries such as ``("output", "first", "conv2.weight")``.
    Raises:
        ValueError: an entry (or the attribute it points to) is not a prunable name.
    Source: METHODS.md 2.1 (output layer kept dense) and 2.2 (first conv not pruned, P1 §4.1).
    """
    names = prunable_names(model)
    resolved = set()
    for entry in keep_dense:
        is_alias = entry in ("output", "first")
        target = getattr(model, f"{entry}_layer", None) if is_alias else entry
        if isinstance(target, str) and target not in names and f"{target}.weight" in names:
            target = f"{target}.weight"
        if target not in names:
            where = f" (model.{entry}_layer of {type(model).__name__})" if is_alias else ""
            raise ValueError(
                f"keep_dense entry {entry!r} resolves to {target!r}{where}, which is not a "
                f"prunable weight; valid entries: 'output', 'first' or one of {names}"
            )
        resolved.add(target)
    return frozenset(resolved)


def layer_groups(model: nn.Module, exclude: frozenset[str]) -> dict[str, str]:
    """The rate group of every pruned layer of ``model``: ``output`` (``model.output_layer``),
    ``conv`` (any other weight with more than 2 dimensions: ``nn.Conv2d``) or ``fc`` (any
    other ``nn.Linear``).

    Args:
        model: The network (any device, meta included).
        exclude: Layers kept dense (``resolve_keep_dense``); they have no group.
    Returns:
        ``{name: group}`` in ``prunable_names`` order, pruned layers only.
    """
    params = dict(model.named_parameters())
    output = resolve_keep_dense(model, ["output"])
    return {name: "output" if name in output else "conv" if params[name].dim() > 2 else "fc"
            for name in prunable_names(model) if name not in exclude}


def layer_rates(model: nn.Module, prune: PruneHparams, exclude: frozenset[str]
                ) -> dict[str, float]:
    """The per-level IMP rate of every pruned layer: its group's (``layer_groups``) rate in
    ``prune.rates``, else ``prune.rate``.

    Returns:
        ``{name: rate}`` in ``prunable_names`` order, pruned layers only.
    Source: Frankle & Carbin 2019, App. B and Fig. 2 (Conv-2/4/6: convs 10 %, FC 20 %, output
        10 % per level).
    """
    return {name: prune.group_rate(group)
            for name, group in layer_groups(model, exclude).items()}


def full_mask(weights: Mapping[str, Tensor], names: Iterable[str]) -> dict[str, Tensor]:
    """All-True masks for ``names`` (e.g. ``prunable_names(model)``), shaped like ``weights``.

    Raises:
        ValueError: a name is missing from ``weights``.
    """
    names = list(names)
    missing = [name for name in names if name not in weights]
    if missing:
        raise ValueError(f"no weights named {missing}; known: {list(weights)}")
    return {name: torch.ones_like(weights[name], dtype=torch.bool) for name in names}


def _top_k(scores: Tensor, k: int) -> Tensor:
    """Bool mask of the k largest entries of a 1-D tensor; ties go to the lower index."""
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[:k]] = True
    return keep


def _kept_scores(weight: Tensor, mask: Tensor) -> Tensor:
    """|w| flattened to (N,) as float, with already-pruned entries set to -1 (never chosen)."""
    scores = weight.detach().abs().flatten().float()
    return scores.masked_fill(~mask.flatten().to(scores.device), -1.0)


def _check_shapes(weights: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> None:
    """Raise ValueError unless every mask layer is a bool tensor shaped like its weight."""
    for name, m in mask.items():
        if name not in weights:
            raise ValueError(f"mask layer {name!r} has no weight; known: {list(weights)}")
        if weights[name].shape != m.shape or m.dtype != torch.bool:
            raise ValueError(
                f"mask layer {name!r} must be bool with shape {tuple(weights[name].shape)}, "
                f"got {m.dtype} with shape {tuple(m.shape)}"
            )


def magnitude_prune(
    weights: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    target_sparsity: float | Mapping[str, float],
    scope: str,
    exclude: frozenset[str],
) -> dict[str, Tensor]:
    """New mask at ``target_sparsity`` over the pruned layers, keeping the largest |w|.

    The pruned layers are those in ``mask`` and not in ``exclude``; only kept weights can stay
    kept, so the new mask is a subset of the old one. ``layerwise``: each pruned layer keeps
    ``round((1 - target) * N_l)`` weights (Python round). ``global``: the pruned layers are pooled
    and ``round((1 - target) * sum N_l)`` are kept by one magnitude ranking. Ties go to the lower
    flat index (layers pooled in ``mask`` order), so results are reproducible.

    Args:
        weights: Weights by name (e.g. trained state dict), (out, in) or (out, in, kh, kw).
        mask: Current bool masks by name, shaped like the weights; its keys are the layers.
        target_sparsity: Fraction in [0, 1) of the pruned layers' weights removed afterwards;
            ``layerwise`` also takes one per pruned layer (``{name: fraction}``, per-layer
            rates).
        scope: ``"layerwise"`` or ``"global"``.
        exclude: Names in ``mask`` that keep their current mask unchanged.
    Returns:
        A new mask with the keys of ``mask``, on the mask's devices.
    Raises:
        ValueError: scope unknown, target outside [0, 1), mask and weights disagree, or the
            target would un-prune: (global) target < pooled current sparsity - 1e-9;
            (layerwise) a layer would have to keep more weights than it still has.
    Source: Frankle & Carbin 2019, App. B strategy 1 and Fig. 2 (layer-wise); open_lth
        ``pruning/sparse_global.py`` (global).
    """
    if scope not in _SCOPES:
        raise ValueError(f"pruning scope must be one of {_SCOPES}, got {scope!r}")
    pruned = [name for name in mask if name not in exclude]
    each = isinstance(target_sparsity, Mapping)
    per_layer = dict(target_sparsity) if each else dict.fromkeys(pruned, target_sparsity)
    if each and (scope != "layerwise" or set(per_layer) != set(pruned)):
        raise ValueError(f"per-layer targets need scope 'layerwise' and one target per pruned "
                         f"layer {pruned}, got {sorted(per_layer)}")
    for target in per_layer.values() if each else (target_sparsity,):
        if not 0.0 <= target < 1.0:
            raise ValueError(f"target sparsity must be in [0, 1), got {target}")
    _check_shapes(weights, mask)
    new = {name: m.clone() for name, m in mask.items()}
    if not pruned:
        return new
    scores = [_kept_scores(weights[name], mask[name]) for name in pruned]
    if scope == "layerwise":
        counts = [_kept_count(per_layer[name], name, mask[name]) for name in pruned]
        keeps = [_top_k(s, k) for s, k in zip(scores, counts, strict=True)]
    else:
        current = sparsity({name: mask[name] for name in pruned})
        if target_sparsity < current - _TOL:
            raise ValueError(
                f"cannot un-prune: target sparsity {target_sparsity} is below the current "
                f"sparsity {current} of the pruned layers {pruned}"
            )
        pooled = torch.cat([s.to(scores[0].device) for s in scores])  # (sum N_l,)
        k = round((1.0 - target_sparsity) * pooled.numel())
        keeps = list(torch.split(_top_k(pooled, k), [s.numel() for s in scores]))
    for name, keep in zip(pruned, keeps, strict=True):
        new[name] = keep.reshape(mask[name].shape).to(mask[name].device)
    return new


def _kept_count(target_sparsity: float, name: str, mask: Tensor) -> int:
    """Layer-wise kept count round((1 - target) * N_l), checked against what is still kept."""
    k = round((1.0 - target_sparsity) * mask.numel())
    kept = int(mask.sum())
    if k > kept:
        raise ValueError(
            f"cannot un-prune layer {name!r}: target sparsity {target_sparsity} keeps {k} "
            f"weights but only {kept} of {mask.numel()} are still kept"
        )
    return k


def random_mask_like(mask: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    """Random mask with the same number of kept weights per layer as ``mask``.

    Each layer's kept positions are drawn uniformly at random (a per-layer shuffle). All-True
    layers stay all-True and draw nothing from ``generator``.

    Args:
        mask: Bool masks by name; the result has its keys, shapes and devices.
        generator: CPU generator (e.g. seeded from the replicate and role ``random_mask``).
    Source: Frankle & Carbin 2019, App. E; open_lth ``lottery/branch/randomly_prune.py``.
    """
    new = {}
    for name, m in mask.items():
        kept = int(m.sum())
        if kept == m.numel():
            new[name] = m.clone()
        else:
            perm = torch.randperm(m.numel(), generator=generator, device="cpu")
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[perm[:kept]] = True  # the first `kept` positions of a uniform shuffle
            new[name] = flat.reshape(m.shape).to(m.device)
    return new


def random_prune(mask: Mapping[str, Tensor], target_sparsity: float, exclude: frozenset[str],
                 generator: torch.Generator) -> dict[str, Tensor]:
    """Prune uniformly random kept weights of each layer up to ``target_sparsity`` per layer.

    Each layer in ``mask`` and not in ``exclude`` ends with
    ``min(ceil(target * N_l), N_l - 1)`` removed entries (DLTH's rule: every layer keeps one
    weight); entries already removed stay removed and new ones are drawn uniformly from the
    kept ones. From an all-True mask this is a uniformly random layer-wise mask (RST's
    ``rand`` pick); from an earlier cycle's mask it is RST_Iter's ``iter_rand`` pick.

    Args:
        mask: Current bool masks by name (True = kept).
        target_sparsity: Fraction in [0, 1) of each pruned layer's weights removed afterwards.
        exclude: Layers kept as they are (``keep_dense``).
        generator: CPU generator; layers draw in ``mask`` order.
    Returns:
        The new masks (a subset of the kept entries of ``mask``), on ``mask``'s devices.
    Raises:
        ValueError: target outside [0, 1), or a layer already sparser than the target.
    Source: Bai et al. 2022 (DLTH) code, ``MetaPruner._pick_pruned``; METHODS.md 2.4.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
    new = {}
    for name, m in mask.items():
        flat = m.detach().to("cpu").flatten().clone()
        if name not in exclude:
            n = flat.numel()
            want = min(math.ceil(target_sparsity * n - _TOL), n - 1) - (n - int(flat.sum()))
            if want < 0:
                raise ValueError(f"{name} is already sparser than {target_sparsity}")
            kept = flat.nonzero().flatten()
            pick = kept[torch.randperm(len(kept), generator=generator)[:want]]
            flat[pick] = False
        new[name] = flat.reshape(m.shape).to(m.device)
    return new


def apply(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Zero the masked-out weights of ``model`` in place. The one place masks are enforced.

    Runs ``param.mul_(mask[name])`` under ``torch.no_grad()``; other parameters are untouched.

    Raises:
        ValueError: a mask name is not a parameter of ``model`` or its shape differs.
    """
    enforcer(model, mask)()


def enforcer(model: nn.Module, mask: Mapping[str, Tensor]) -> Callable[[], None]:
    """``apply(model, mask)`` as a function to call after every optimizer step.

    The names and shapes are checked once, and each mask is held in its weight's dtype and
    device, so a call is one in-place multiply per layer: a bool mask is promoted to the
    weight's dtype on every multiply, about 8x the cost of the multiply itself for
    LeNet-sized layers on the CPU. The product is the same (``w * True == w * 1.0``). The
    function keeps enforcing on the same parameter tensors (``load_state_dict`` copies into
    them); it costs one weight-sized tensor per masked layer.

    Raises:
        ValueError: as ``apply``.
    """
    params = dict(model.named_parameters())
    _check_shapes(params, mask)
    pairs = [(params[name], m.to(device=params[name].device, dtype=params[name].dtype))
             for name, m in mask.items()]

    def enforce() -> None:
        with torch.no_grad():
            for weight, keep in pairs:
                weight.mul_(keep)

    return enforce


def layer_sparsity(mask: Mapping[str, Tensor]) -> dict[str, float]:
    """Fraction of removed entries in each layer of ``mask``: ``{name: removed / numel}``.

    Raises:
        ValueError: a layer has no entries.
    """
    empty = [name for name, m in mask.items() if m.numel() == 0]
    if empty:
        raise ValueError(f"mask layers {empty} have no entries")
    return {name: (m.numel() - int(m.sum())) / m.numel() for name, m in mask.items()}


def sparsity(mask: Mapping[str, Tensor]) -> float:
    """Fraction in [0, 1] of removed entries over all layers of ``mask`` (removed / total).

    Every entry counts, including layers kept dense; biases and BN are never in a mask.

    Raises:
        ValueError: the mask has no entries.
    """
    total = sum(m.numel() for m in mask.values())
    if total == 0:
        raise ValueError("sparsity of an empty mask is undefined")
    return (total - sum(int(m.sum()) for m in mask.values())) / total


def density(mask: Mapping[str, Tensor]) -> float:
    """Fraction of kept entries over all layers of ``mask``: ``1 - sparsity(mask)``.

    Raises:
        ValueError: the mask has no entries.
    """
    return 1.0 - sparsity(mask)


@functools.lru_cache(maxsize=128)
def layer_schedule(model: str, input_shape: tuple[int, int, int], num_classes: int,
                   prune: PruneHparams) -> levels.Schedule:
    """The IMP level schedule of per-layer ``prune.rates``: (size, rate) of every pruned layer
    of ``model`` on inputs of ``input_shape`` (built on the ``meta`` device, cached).

    Raises:
        ValueError: unknown model, or every layer kept dense.
    Source: Frankle & Carbin 2019, App. B; METHODS.md §1.
    """
    from trainer import models

    net = models.skeleton(model, input_shape, num_classes)
    params = dict(net.named_parameters())
    rates = layer_rates(net, prune, resolve_keep_dense(net, prune.keep_dense))
    return levels.Schedule(tuple((params[n].numel(), r) for n, r in rates.items()))
