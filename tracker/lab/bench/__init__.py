"""The benchmarks: ``tracker bench stream|capacity|reference|cluster`` and what bench/ scripts share.

* :mod:`tracker.lab.bench.stream`: open-loop streaming of N sessions against a served engine;
* :mod:`tracker.lab.bench.capacity`: the largest session count that holds a p99 (search, confirm);
* :mod:`tracker.lab.bench.reference`: the SAM2 engine against sam2's own video predictor;
* :mod:`tracker.lab.bench.cluster`: replicas behind Envoy, with faults;
* :mod:`tracker.lab.bench.interleaved`: engines alternating frame by frame over one clip;
* :mod:`tracker.lab.bench.common`: the machine record, ping-pong playback, the shared clips;
* :mod:`tracker.lab.bench.cli`: the ``tracker bench`` sub-commands.

``bench/`` holds only runnable scripts and their results.
"""
