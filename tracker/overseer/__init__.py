"""The overseer: a frame-wise detector (or drift guard) that re-prompts any tracking engine.

Surgical scenes change: instruments enter and leave, and a tracker prompted
once on frame 0 misses what comes later and keeps ghosts of what left. After
SASVi (SAM2 + a Mask R-CNN "overseer"), but causal: see
:mod:`tracker.overseer.policy` for the rules and :mod:`tracker.overseer.engine`
for the wrapper that applies them to any engine session.

Modules (torch is imported only by ``model``/``train``/``export``):

* ``policy``: the re-prompt rules, pure NumPy;
* ``engine``: ``OverseenEngine``/``OverseenSession``;
* ``build``: overseer spec (``oracle``/``guard``/``W.pt``/``W.onnx``) -> engine;
* ``coco``: COCO annotations and the ground-truth ``oracle`` detector;
* ``model``/``train``/``export``: torchvision Mask R-CNN, fine-tuning, ONNX;
* ``onnx_runner``: ONNX Runtime detector (no torch needed);
* ``scoring``: per-object scoring with entry/exit delays for replay reports;
* ``cli``: ``tracker overseer train|export``.
"""
