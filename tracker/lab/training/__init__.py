"""Training the overseer's Mask R-CNN detector and exporting it to ONNX (``tracker overseer train|export``).

The trained detector runs in the product through :mod:`tracker.overseer.build`.
"""
