"""Scoring tracked masks: per-frame metrics, TrackRAD2025's and DAVIS's definitions, per-object J.

* :mod:`tracker.lab.scoring.metrics`: Dice, HD95, ASD, centroid distance per frame;
* :mod:`tracker.lab.scoring.challenge`: TrackRAD2025's numbers as its evaluation code computes them;
* :mod:`tracker.lab.scoring.davis`: DAVIS J, F and J&F as davis2017-evaluation computes them;
* :mod:`tracker.lab.scoring.objects`: per-object scoring when objects come and go (overseer).
"""
