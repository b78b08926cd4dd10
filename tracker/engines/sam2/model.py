"""Building the SAM 2.1 model with sam2's own configs and builder (no model code here).

The model is built with ``sam2.build_sam.build_sam2_video_predictor`` so that it carries
exactly the inference settings Meta's video predictor applies on top of the YAML config
(``binarize_mask_from_pts_for_mem_enc=true``, ``fill_hole_area=8``, dynamic multimask via
stability). The returned object is a ``SAM2VideoPredictor``, i.e. a ``SAM2Base``; the
engine drives only its ``SAM2Base`` methods and never its whole-video state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.engines.sam2.options import Sam2Settings

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def hydra_overrides(image_size: int) -> list[str]:
    """Config overrides for a model input of ``image_size`` pixels (square).

    Besides ``image_size`` itself, the RoPE tables of the memory attention are sized for
    the stride-16 feature map up front. sam2 would otherwise rebuild them on the first
    forward pass (``RoPEAttention.forward`` reassigns ``self.freqs_cis``), i.e. mutate the
    shared model while sessions run; the values are the same either way.
    """
    f = image_size // 16
    attn = "++model.memory_attention.layer"
    return [
        f"++model.image_size={image_size}",
        f"{attn}.self_attention.feat_sizes=[{f},{f}]",
        f"{attn}.cross_attention.feat_sizes=[{f},{f}]",
    ]


def build_model(settings: Sam2Settings) -> torch.nn.Module:
    """The SAM 2.1 model for ``settings``, in eval mode on its device, weights loaded.

    Random weights are drawn from a private RNG stream seeded with ``settings.seed`` (the
    caller's global torch RNG is left as it was), so two builds with the same seed are
    identical. A checkpoint is loaded with :func:`tracker.weights.load_checkpoint`
    (``weights_only=True``, strict key and shape check).
    """

    import torch
    from sam2.build_sam import build_sam2_video_predictor

    if settings.checkpoint and not Path(settings.checkpoint).is_file():
        # Before building: a typo should not cost a model construction to find out.
        raise FileNotFoundError(f"checkpoint not found: {settings.checkpoint}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build_sam2_video_predictor(
            settings.config,
            ckpt_path=None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=hydra_overrides(settings.image_size),
        )
    if settings.checkpoint:
        from tracker.weights import load_checkpoint

        load_checkpoint(model, settings.checkpoint)
    else:
        logger.warning(
            "sam2 engine: RANDOM WEIGHTS (%s, seed %d): masks are meaningless; not for clinical use",
            settings.model,
            settings.seed,
        )
    model = model.to(settings.device)
    model.eval()
    return model


def fill_holes_available() -> bool:
    """Whether sam2's compiled hole-filling kernel (``sam2._C``, CUDA only) is present.

    Without it sam2's ``fill_holes_in_mask_scores`` catches the ImportError on every call,
    warns and returns its input unchanged; skipping the call gives the identical result
    without the per-frame failed import.
    """
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True
