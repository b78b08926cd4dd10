"""The torch side of the SAM2 parity and batching tests: random weights, mask logits sharpened.

Import it where sam2 is importable (after ``pytest.importorskip("sam2")``): it loads the
sam2 engine, and with it torch.
"""

from __future__ import annotations

from tracker.engines.sam2.engine import Sam2Engine
from tracker.engines.sam2.options import parse_options
from tracker.engines.sam2.parity import sharpen_random_logits


def sharpened_random_engine(image_size: int, device: str = "cpu") -> Sam2Engine:
    """The sam2 engine with random weights at ``image_size`` px on ``device``, its mask logits sharpened.

    See :func:`tracker.engines.sam2.parity.sharpen_random_logits` (x40) for why.
    """
    engine = Sam2Engine(
        parse_options({"random_weights": "true", "image_size": str(image_size), "device": device})
    )
    sharpen_random_logits(engine.model)
    return engine
