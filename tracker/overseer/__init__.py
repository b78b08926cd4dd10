"""The overseer: a frame-wise detector (or drift guard) that re-prompts any tracking engine.

Surgical scenes change: instruments enter and leave, and a tracker prompted
once on frame 0 misses what comes later and keeps ghosts of what left. After
SASVi (SAM2 + a Mask R-CNN "overseer"), but causal: see
:mod:`tracker.overseer.policy` for the rules and :mod:`tracker.overseer.engine`
for the wrapper that applies them to any engine session.

Modules (torch is imported only by ``model``):

* ``policy``: the re-prompt rules, pure NumPy;
* ``engine``: ``OverseenEngine``/``OverseenSession``;
* ``build``: overseer spec (``oracle``/``guard``/``W.pt``/``W.onnx``) -> engine;
* ``coco``: COCO annotations and the ground-truth ``oracle`` detector;
* ``model``: the torchvision Mask R-CNN and its detector;
* ``onnx_runner``: ONNX Runtime detector (no torch needed).

Training and export are in :mod:`tracker.lab.training`; per-object scoring with entry
and exit delays in :mod:`tracker.lab.scoring.objects`.
"""
