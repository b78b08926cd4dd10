"""Loading a checkpoint into a model: strictly, and without unpickling anything but tensors."""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.weights.errors import CheckpointError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_MAX_LISTED_KEYS = 10


def _is_legacy_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle protocol >= 2 opcode, the legacy torch.save format


def load_checkpoint(model: torch.nn.Module, path: Path | str) -> None:
    """Load a checkpoint's weights into ``model``, strictly and without unpickling objects.

    Accepts sam2's layout (the state dict under ``"model"``, as ``build_sam._load_checkpoint``
    reads it) or a bare state dict. Keys and shapes are compared before anything is copied, so a
    mismatch leaves ``model`` untouched and the error names up to ten missing and unexpected keys
    with their counts.
    """

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path) and not _is_legacy_pickle(path):
        with open(path, "rb") as f:
            head = f.read(16)
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle;"
            f" it starts with {head!r})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):
            raise CheckpointError(
                f"refusing to load {path}: it contains pickled Python objects other than tensors and plain"
                " containers, which could run code when loaded (torch.load weights_only=True rejected it)"
            ) from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_line(exc)}") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_line(exc)}") from exc

    state = _state_dict_of(obj, path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: "
            f"{len(missing)} missing key(s){_listing(missing)}; "
            f"{len(unexpected)} unexpected key(s){_listing(unexpected)}"
        )
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: {len(mismatched)} shape mismatch(es)"
            f"{_listing(mismatched)}"
        )
    model.load_state_dict(state, strict=True)
    logger.info("loaded %d tensors from %s into %s", len(state), path, type(model).__name__)


def _state_dict_of(obj: Any, path: Path) -> Mapping[str, Any]:
    import torch

    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, Mapping):
        keys = sorted(str(k) for k in obj)
        raise CheckpointError(
            f"{path} holds no state dict: expected tensors under 'model' or at the top level;"
            f" top-level keys{_listing(keys) or ': none'}"
        )
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")


def _listing(items: list[str]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    more = f", … {len(items) - _MAX_LISTED_KEYS} more" if len(items) > _MAX_LISTED_KEYS else ""
    return f": {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
