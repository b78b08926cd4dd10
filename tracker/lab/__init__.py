"""The lab: everything that measures, validates or demonstrates the service, not serves it.

The serving product (``tracker.convert``, ``tracker.server``, ``tracker.engines``,
``tracker.gating``, ``tracker.overseer``, ``tracker.client``, ``tracker.io``,
``tracker.weights``, ``tracker.deploy`` and the shared types at the package root) imports
nothing from here; ``tests/test_layout.py`` checks that rule. The lab imports the product.

* :mod:`tracker.lab.synth`: synthetic cine-MRI and surgical video with ground truth;
* :mod:`tracker.lab.replay`: recorded sequences through the real gRPC API, scored;
* :mod:`tracker.lab.scoring`: TrackRAD2025 and DAVIS metrics, per-object scoring;
* :mod:`tracker.lab.report`: the HTML replay report, overlays and plots;
* :mod:`tracker.lab.bench`: streaming, capacity, engine and cluster benchmarks;
* :mod:`tracker.lab.training`: training and exporting the overseer's detector;
* :mod:`tracker.lab.live`: a live source through the tracker with a web view;
* :mod:`tracker.lab.demo`: ``make demo``;
* :mod:`tracker.lab.provenance`: the command, commit, machine and load behind each result.
"""
