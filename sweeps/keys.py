"""Content keys and names of everything a sweep stores: the one naming rule (STYLE.md 2.4).

A trunk is keyed by what determines its dense run and IMP levels; a grid point by its trunk,
replicate, method, sparsity, the method's hparams and its recipe; masks, stages and rewind
walks by the content that determines them, with a readable prefix. ``sweeps.plan`` builds the
jobs with these names; the trainer only joins them to a trunk's artifact directory.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from sweeps.spec_groups import BASE_RECIPE
from sweeps.store import content_key
from trainer import methods
from trainer.hparams import RecipeHparams
from trainer.jobs import Trunk


@functools.lru_cache(maxsize=4096)  # a plan asks for each trunk's key once per point
def trunk_key(trunk: Trunk) -> str:
    """Content key of a trunk: model, data, training and pruning hparams (not the seed).

    ``data.root`` and ``data.download`` say where the files are, not what they are, so they
    are left out: moving a dataset does not relabel (or retrain) any result.
    """
    data = dataclasses.replace(trunk.data, root="", download=False)
    return content_key("imp_chain", {"model": trunk.model, "data": data,
                                     "train": trunk.train, "prune": trunk.prune})


@functools.lru_cache(maxsize=65536)  # a plan names each point's stage and mask by it too
def point_key(trunk: Trunk, method: str, target_sparsity: float, hparams: Any = None,
              recipe: tuple[str, RecipeHparams] = (BASE_RECIPE, RecipeHparams())) -> str:
    """The ``config_hash`` of a grid point (its trunk, replicate, method and sparsity, the
    method's own hparams when it has any (their non-default fields), and its recipe's name
    and settings unless it is the plain ``base``)."""
    payload: dict[str, Any] = {"trunk": trunk_key(trunk), "seed": trunk.seed,
                               "target_sparsity": float(target_sparsity)}
    if hparams is not None:
        payload["hparams"] = hparams
    if recipe[0] != BASE_RECIPE:
        payload["recipe"] = list(recipe)
    return content_key(method, payload)


def search_point_key(config_hash: str, search: str, trial: int) -> str:
    """The ``config_hash`` of a search trial's point: the grid point it trained (its own key)
    tried as trial ``trial`` of search ``search``, so every trial is its own row even when the
    search picks a configuration twice (the stages behind it are shared, being the same)."""
    return content_key("search_point", {"point": config_hash, "search": search,
                                        "trial": int(trial)})


@functools.lru_cache(maxsize=4096)
def mask_blob(target_sparsity: float, producer: str = "imp") -> str:
    """Blob of the stored mask at ``target_sparsity`` inside a trunk's artifact directory.

    Named by content key (0.9 and 0.9000001 never share a mask), with a readable prefix:
    ``masks/sparsity_<s>-<key>.pt`` for IMP masks, ``masks/one_shot-sparsity_<s>-<key>.pt``
    for one-shot masks of θT.
    """
    key = content_key(f"{producer}_mask", {"target_sparsity": float(target_sparsity)})
    prefix = "" if producer == "imp" else f"{producer}-"
    return f"masks/{prefix}sparsity_{target_sparsity:g}-{key}.pt"


def stage_dir(method: str, target_sparsity: float, key: str, mask_level: int,
              rewind: str = "") -> str:
    """Directory of a branch's training stage inside its trunk's artifact directory.

    ``level_<L>/...`` under the IMP level its mask stands on (``<rewind>/level_<L>/...`` for
    a rewind walk's mask), ``one_shot/...`` for a one-shot mask, ``random/...`` for a mask
    the method draws, ``small_dense/...`` for sdt; named by the content key ``key`` (the
    point's, or for a method's own phase the point's without its recipe).
    """
    producer = methods.get(method).mask
    parent = {"imp": f"level_{mask_level}", "rewind": f"{rewind}/level_{mask_level}"}.get(
        producer, producer)
    return f"{parent}/{method}-sparsity_{target_sparsity:g}-{key}"


def rewind_root(hp: Any) -> str:
    """Directory of a trunk's rewind walk (``lth_rewind``'s chain) inside its artifact dir:
    ``rewind-<epochs_1|iterations_500>-<key>``."""
    return f"rewind-{hp.label}-{content_key('rewind_walk', hp)}"
