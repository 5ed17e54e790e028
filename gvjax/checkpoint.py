"""The gvjax checkpoint format: one directory, a JSON config and orbax-written variables.

    CKPT/
      config.json     {"format": "gvjax", "version": 2, "family": "stylegan2" | "stylegan3",
                       "generator": {...the family's Config...}, "networks": ["G_ema", ...],
                       "provenance": {...}, "extra": {...}}
      G_ema/          orbax checkpoint of {'params': ..., 'buffers': ...}
      G/, D/          optional (training state from a converted pickle)

Writes go to a temporary sibling that is renamed into place at the end, so a failure
never leaves a half-written checkpoint. Loading checks every array's shape against the
shapes the config implies. Version 1 (StyleGAN2 only, no `family`) is read through
`migrate_v1`, the one place that knows older layouts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any

import jax
import numpy as np

from gvjax import models
from gvjax.errors import GvjaxError

FORMAT = "gvjax"
VERSION = 2
CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: `networks['G_ema']` is `{'params': ..., 'buffers': ...}` of numpy arrays."""

    config: Any  # the family's Config (GeneratorConfig for StyleGAN2)
    networks: dict[str, Any]
    provenance: dict[str, Any]
    extra: dict[str, Any]

    @property
    def variables(self) -> dict:
        """Variables of the generator to render with (G_ema)."""
        return self.networks["G_ema"]


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a gvjax checkpoint directory."""
    return (pathlib.Path(path) / CONFIG_FILE).is_file()


def _checkpointer():
    """An orbax checkpointer of host (numpy) trees that involves this process only.

    A gvjax checkpoint is a folder of files on one host: in a multi-process run, process 0
    alone writes the final model (orbax's default would wait at a barrier for every process)
    and each process reads its starting model by itself.
    """
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"gvjax-ckpt-{me}")
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=alone), multiprocessing_options=alone)


def _to_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def save_checkpoint(
    path: str | os.PathLike,
    config: Any,
    networks: dict[str, Any],
    *,
    provenance: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> pathlib.Path:
    """Write a checkpoint directory atomically.

    Args:
      path: destination directory; must not exist unless `force`.
      config: the generator config.
      networks: name -> variables, at least 'G_ema'; values are pytrees of arrays.
      provenance: where the weights came from (source file, sha256, format, ...).
      extra: other JSON-serialisable configs (e.g. a discriminator's init kwargs).
      force: replace an existing `path`.
    """
    from gvjax import chatter
    from gvjax.outputs import check_dir_output, check_free_space, new_sibling, os_error_message, remove, replace_into

    path = pathlib.Path(path).absolute()
    if "G_ema" not in networks:
        raise ValueError("a checkpoint needs at least the 'G_ema' network")
    check_dir_output(path, force=force)  # replaces only an old gvjax checkpoint, and only with force
    arrays = {name: _to_numpy(variables) for name, variables in networks.items()}
    nbytes = sum(leaf.nbytes for tree in arrays.values() for leaf in jax.tree.leaves(tree))
    check_free_space(path, int(nbytes * 1.1) + 64 * 1024 * len(arrays))  # orbax fails noisily on a full disk
    tmp = new_sibling(path, directory=True)
    try:
        checkpointer = _checkpointer()
        for name, tree in arrays.items():
            try:
                with chatter.quiet_stderr("orbax"):
                    checkpointer.save(tmp / name, tree)
            except Exception as e:  # tensorstore reports a full disk as RESOURCE_EXHAUSTED, not as an OSError
                if isinstance(e, OSError):
                    raise
                raise GvjaxError(f"could not write {path}: {str(e).splitlines()[0][:200]}") from None
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "family": models.family_of(config),
            "generator": config.to_dict(),
            "networks": sorted(networks),
            "provenance": provenance or {},
            "extra": extra or {},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")
        replace_into(tmp, path)
    except OSError as e:
        remove(tmp, attempts=20)
        raise GvjaxError(f"could not write {path}: {os_error_message(e, path)}") from None
    except BaseException:
        remove(tmp, attempts=20)
        raise
    return path


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(v)) for path, v in flat}


def check_shapes(expected: dict, actual: dict, what: str) -> None:
    """Raise GvjaxError naming the first difference between two trees' array shapes."""
    exp, act = _shapes(expected), _shapes(actual)
    missing, unexpected = sorted(set(exp) - set(act)), sorted(set(act) - set(exp))
    if missing:
        raise GvjaxError(f"{what}: missing {missing[0]} (and {len(missing) - 1} more)" if len(missing) > 1 else f"{what}: missing {missing[0]}")
    if unexpected:
        raise GvjaxError(f"{what}: unexpected {unexpected[0]}")
    for key in exp:
        if exp[key] != act[key]:
            raise GvjaxError(f"{what}: {key} has shape {act[key]}, the config implies {exp[key]}")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed `config.json` of checkpoint `path`."""
    path = pathlib.Path(path)
    if not path.exists():
        raise GvjaxError(f"no such checkpoint: {path}")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise GvjaxError(f"{path} is not a gvjax checkpoint (no {CONFIG_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GvjaxError(f"{path / CONFIG_FILE} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GvjaxError(f"{path} is not a gvjax checkpoint (config.json has no format '{FORMAT}')")
    if meta.get("version") == 1:
        meta = migrate_v1(meta)
    if meta.get("version") != VERSION:
        raise GvjaxError(f"{path}: checkpoint version {meta.get('version')} is not supported (expected 1 or {VERSION})")
    where = path / CONFIG_FILE
    if not isinstance(meta.get("generator"), dict):
        raise GvjaxError(f"{where}: 'generator' must be an object of generator settings")
    networks = meta.get("networks", ["G_ema"])
    if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks) or "G_ema" not in networks:
        raise GvjaxError(f"{where}: 'networks' must be a list of network names that includes G_ema")
    for key in ("provenance", "extra"):
        if not isinstance(meta.get(key, {}), dict):
            raise GvjaxError(f"{where}: '{key}' must be an object")
    try:
        models.config_from_dict(meta.get("family"), meta["generator"])
    except GvjaxError as e:
        raise GvjaxError(f"{where}: {e}") from None
    return meta


def migrate_v1(meta: dict) -> dict:
    """A version-1 `config.json` (StyleGAN2 only, written before model families) as version 2."""
    return {**meta, "version": VERSION, "family": "stylegan2"}


def load_checkpoint(path: str | os.PathLike, networks: tuple[str, ...] = ("G_ema",)) -> Checkpoint:
    """Load a checkpoint; every generator network's shapes are checked against its config."""
    path = pathlib.Path(path).absolute()
    meta = read_config(path)
    config = models.config_from_dict(meta["family"], meta["generator"])
    expected = models.variable_shapes(config)
    checkpointer = _checkpointer()
    loaded = {}
    for name in networks:
        if name not in meta.get("networks", []):
            raise GvjaxError(f"{path} has no {name} network (it has {', '.join(meta.get('networks', []))})")
        try:
            tree = checkpointer.restore(path / name)
        except Exception as e:  # orbax raises many types for damaged data
            raise GvjaxError(f"{path / name} cannot be read: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        tree = _to_numpy(tree)
        if name in ("G_ema", "G"):
            check_shapes(expected, tree, f"{path}: {name}")
        loaded[name] = tree
    return Checkpoint(config, loaded, meta.get("provenance", {}), meta.get("extra", {}))
