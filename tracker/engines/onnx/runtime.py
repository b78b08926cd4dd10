"""ONNX Runtime sessions behind thin torch modules that take the place of SAM2's heavy parts.

:func:`build_onnx_model` builds the same ``SAM2VideoPredictor`` as the ``sam2`` engine
(:func:`tracker.engines.sam2.model.build_model`, same config, weights from the checkpoint or seed
recorded in the manifest) and swaps four submodules for shells: ``image_encoder``,
``memory_attention``, ``memory_encoder`` and the pair ``sam_prompt_encoder`` /
``sam_mask_decoder``. ``SAM2Base``'s own methods (``forward_image``, ``track_step``,
``_prepare_memory_conditioned_features``, ``_forward_sam_heads``, ``_encode_new_memory``)
still run unchanged in torch, so memory selection, prompts, object pointers and the stage
timing hooks are shared with the ``sam2`` engine, not re-implemented.

Providers are explicit: each requested one must be in
``onnxruntime.get_available_providers()`` and must actually be active in the created
session, or start-up fails. There is no silent fallback to the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tracker.engines.onnx.manifest import RANDOM_WEIGHTS, Manifest
from tracker.engines.sam2.options import Sam2Settings

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    """How the sessions run (see :class:`tracker.engines.onnx.options.OnnxOptions`)."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0  # 0: ORT's default (one per physical core)
    optimization: str = "all"  # basic | extended | all


def check_providers_available(providers: tuple[str, ...]) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise RuntimeError(
            f"onnx engine: provider(s) {', '.join(missing)} not available in this onnxruntime"
            f" ({ort.__version__}, available: {', '.join(available)}); install onnxruntime-gpu or"
            " choose providers=cpu"
        )


def make_session(path: Path, options: RuntimeOptions) -> Any:
    """An ``InferenceSession`` that uses exactly ``options.providers`` (checked after creation)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.optimization]
    if options.intra_op_threads > 0:
        so.intra_op_num_threads = options.intra_op_threads
    so.log_severity_level = 3  # shape-merge warnings from Hiera's padding are harmless
    # ORT's pool threads spin after each run by default; between graphs the torch glue
    # (and other sessions' threads) needs those cores, so spinning only steals time.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=list(options.providers))
    except Exception as exc:
        raise RuntimeError(
            f"onnx engine: could not start {path.name} with {options.providers}: {exc}"
        ) from exc
    active = sess.get_providers()
    missing = [p for p in options.providers if p not in active]
    if missing:
        raise RuntimeError(
            f"onnx engine: {path.name}: provider(s) {', '.join(missing)} failed to start (active: {active})"
        )
    return sess


class OrtGraph:
    """One session plus its I/O names; torch tensors in, torch tensors out.

    On CPU the tensors go through numpy (zero-copy where contiguous). With the CUDA
    provider and CUDA tensors, inputs and outputs are bound to device memory with
    ``IOBinding`` so nothing crosses the PCIe bus.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.on_gpu = any(
            p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in session.get_providers()
        )

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        import torch

        if self.on_gpu and all(x.is_cuda for x in inputs):
            return self._run_bound(inputs)
        feeds: dict[str, np.ndarray] = {
            n: x.detach().cpu().contiguous().numpy() for n, x in zip(self.input_names, inputs, strict=True)
        }
        return [torch.from_numpy(a) for a in self.session.run(self.output_names, feeds)]

    def _run_bound(self, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        import torch

        binding = self.session.io_binding()
        keep = []
        for name, x in zip(self.input_names, inputs, strict=True):
            x = x.contiguous()
            keep.append(x)
            binding.bind_input(
                name, "cuda", x.device.index or 0, _np_dtype(x.dtype), tuple(x.shape), x.data_ptr()
            )
        for name in self.output_names:
            binding.bind_output(name, "cuda", inputs[0].device.index or 0)
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return [
            torch.from_dlpack(o.to_dlpack()) if hasattr(o, "to_dlpack") else torch.as_tensor(o.numpy())
            for o in outs
        ]


def _np_dtype(dtype: torch.dtype) -> Any:
    import torch

    return {torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32, torch.bool: np.bool_}[
        dtype
    ]


def _shell_base() -> type:
    import torch

    return torch.nn.Module


class ImageEncoderShell(_shell_base()):  # type: ignore[misc]
    """Stands in for ``model.image_encoder``; returns ``forward_image``'s feature maps.

    The graph already applies ``conv_s0``/``conv_s1`` (see :mod:`tracker.engines.onnx.graphs`), so
    :class:`MaskDecoderShell` exposes identity convs to ``forward_image``. The sine position
    encodings are computed once per shape by the original neck's (parameter-free) module.
    """

    def __init__(self, graph: OrtGraph, position_encoding: Any) -> None:
        from tracker.engines.sam2.accel import CachedPositionEncoding

        super().__init__()
        self.graph = graph
        self.position_encoding = CachedPositionEncoding(position_encoding)

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        fpn = [x.to(image.device) for x in self.graph(image.float())]
        pos = [self.position_encoding(x).to(x.dtype) for x in fpn]
        return {"vision_features": fpn[-1], "vision_pos_enc": pos, "backbone_fpn": fpn}


class MemoryAttentionShell(_shell_base()):  # type: ignore[misc]
    """Stands in for ``model.memory_attention`` (same keyword interface)."""

    def __init__(self, graph: OrtGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(
        self,
        curr: Any,
        memory: torch.Tensor,
        curr_pos: Any = None,
        memory_pos: torch.Tensor | None = None,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        import torch

        if isinstance(curr, list):
            (curr,), (curr_pos,) = curr, curr_pos
        assert memory_pos is not None
        n = torch.tensor(int(num_obj_ptr_tokens), dtype=torch.int64, device=memory.device)
        (out,) = self.graph(curr.float(), memory.float(), curr_pos.float(), memory_pos.float(), n)
        return out.to(curr.device)


class MemoryEncoderShell(_shell_base()):  # type: ignore[misc]
    """Stands in for ``model.memory_encoder`` (called with ``skip_mask_sigmoid=True``)."""

    def __init__(self, graph: OrtGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> dict[str, Any]:
        if not skip_mask_sigmoid:
            raise ValueError("the exported memory encoder takes masks after sigmoid (skip_mask_sigmoid=True)")
        feats, pos = self.graph(pix_feat.float(), masks.float())
        return {"vision_features": feats.to(pix_feat.device), "vision_pos_enc": [pos.to(pix_feat.device)]}


@dataclass
class _PromptHandle:
    """What the prompt-encoder shell hands to the decoder shell: the raw prompt tensors."""

    point_coords: Any
    point_labels: Any
    masks: Any


class PromptEncoderShell(_shell_base()):  # type: ignore[misc]
    """Stands in for ``model.sam_prompt_encoder``: defers to the fused SAM-heads graph.

    ``_forward_sam_heads`` calls the prompt encoder, then the decoder with its outputs; the
    graph does both, so this shell only packs the prompts for :class:`MaskDecoderShell`.
    """

    def __init__(self, original: Any) -> None:
        super().__init__()
        self.mask_input_size = original.mask_input_size
        self.image_embedding_size = original.image_embedding_size
        self.input_image_size = original.input_image_size
        self.embed_dim = original.embed_dim

    def forward(self, points: Any, boxes: Any = None, masks: Any = None) -> tuple[_PromptHandle, None]:
        if boxes is not None:
            raise ValueError("box embeddings are not exported: SAM2Base passes boxes as two points")
        coords, labels = points
        return _PromptHandle(coords, labels, masks), None

    def get_dense_pe(self) -> None:
        return None  # baked into the SAM-heads graph


class MaskDecoderShell(_shell_base()):  # type: ignore[misc]
    """Stands in for ``model.sam_mask_decoder``: runs the SAM-heads graph, then sam2's selection.

    The selection (multimask / dynamic multimask via stability / token for the object
    pointer) is ``SAMMaskDecoder.forward``'s, on the graph's all-token outputs, using the
    original decoder's own ``_dynamic_multimask_via_stability``.
    """

    def __init__(self, graph: OrtGraph, original: Any) -> None:
        import torch

        super().__init__()
        self.graph = graph
        self._original = [original]  # not a submodule: its weights are in the graph
        self.conv_s0 = torch.nn.Identity()
        self.conv_s1 = torch.nn.Identity()
        self.dynamic_multimask_via_stability = bool(original.dynamic_multimask_via_stability)
        self.use_multimask_token_for_obj_ptr = bool(original.use_multimask_token_for_obj_ptr)
        self.num_mask_tokens = int(original.num_mask_tokens)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: Any,
        sparse_prompt_embeddings: _PromptHandle,
        dense_prompt_embeddings: Any,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        p = sparse_prompt_embeddings
        dev = image_embeddings.device
        if image_embeddings.shape[0] != 1:
            raise ValueError("the exported SAM heads take one object at a time (batch 1)")
        if high_res_features is None:
            raise ValueError("the exported SAM heads need the high-resolution features")
        s = self._original[0]
        has_mask = p.masks is not None
        h, w = (4 * image_embeddings.shape[-2], 4 * image_embeddings.shape[-1])
        mask = p.masks.float() if has_mask else torch.zeros(1, 1, h, w, device=dev)
        masks, iou_pred, mask_tokens_out, object_score_logits = (
            x.to(dev)
            for x in self.graph(
                image_embeddings.float(),
                high_res_features[0].float(),
                high_res_features[1].float(),
                p.point_coords.float(),
                p.point_labels.to(torch.int32),
                mask,
                torch.tensor(has_mask, device=dev),
            )
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:, :, :], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability:
            masks, iou_pred = s._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1, :, :], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            tokens = mask_tokens_out[:, 1:]
        else:
            tokens = mask_tokens_out[:, 0:1]
        return masks, iou_pred, tokens, object_score_logits


@dataclass(frozen=True)
class OnnxModelSpec:
    """What :func:`build_onnx_model` needs beyond the manifest."""

    export_dir: Path
    runtime: RuntimeOptions
    device: str = "cpu"
    checkpoint: str | None = None  # overrides the path recorded in the manifest (hash still checked)


def settings_for(manifest: Manifest, spec: OnnxModelSpec, crop_margin_px: int | None = None) -> Any:
    """The ``Sam2Settings`` that rebuild the model the export was made from."""

    w = manifest.weights
    checkpoint = None
    if w.source != RANDOM_WEIGHTS:
        checkpoint = spec.checkpoint or w.path
    return Sam2Settings(
        model=manifest.model,  # its config is the model's own, as the export recorded
        checkpoint=checkpoint,
        random_weights=w.source == RANDOM_WEIGHTS,
        seed=int(w.seed or 0),
        image_size=manifest.image_size,
        device=spec.device,
        dtype="float32",
        crop_margin_px=crop_margin_px,
    )


def build_onnx_model(
    manifest: Manifest,
    spec: OnnxModelSpec,
    settings: Any,
    make_graph: Callable[[str, Path], Any] | None = None,
) -> Any:
    """The SAM2 model of ``settings`` with its heavy parts replaced by ORT sessions.

    The torch weights of the replaced parts are dropped; what stays in torch (object
    pointer projection, no-memory/no-object embeddings, temporal position encodings,
    ``mask_downsample``) comes from the same checkpoint or seed as the export.
    ``make_graph(name, onnx_path)``: another backend with :class:`OrtGraph`'s calling
    convention (the TensorRT engine passes its own); default ORT with ``spec.runtime``.
    """
    from tracker.engines.sam2.model import build_model

    if make_graph is None:
        check_providers_available(spec.runtime.providers)

        def make_graph(name: str, path: Path) -> Any:
            return OrtGraph(make_session(path, spec.runtime))

    graphs = {
        name: make_graph(name, Path(spec.export_dir) / rec.file) for name, rec in manifest.graphs.items()
    }
    model = build_model(settings)
    _check_io(manifest, graphs)
    model.image_encoder = ImageEncoderShell(
        graphs["image_encoder"], model.image_encoder.neck.position_encoding
    )
    model.memory_attention = MemoryAttentionShell(graphs["memory_attention"])
    model.memory_encoder = MemoryEncoderShell(graphs["memory_encoder"])
    model.sam_mask_decoder = MaskDecoderShell(graphs["sam_heads"], model.sam_mask_decoder)
    model.sam_prompt_encoder = PromptEncoderShell(model.sam_prompt_encoder)
    model.eval()
    return model


def _check_io(manifest: Manifest, graphs: dict[str, OrtGraph]) -> None:
    """The sessions' input/output names must be the manifest's (guards hand-edited files)."""
    for name, g in graphs.items():
        rec = manifest.graphs[name]
        want_in = [t["name"] for t in rec.inputs]
        want_out = [t["name"] for t in rec.outputs]
        if g.input_names != want_in or g.output_names != want_out:
            raise RuntimeError(
                f"graph {name}: inputs {g.input_names} / outputs {g.output_names} differ from the manifest"
                f" ({want_in} / {want_out})"
            )
