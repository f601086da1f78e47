"""Detectors: training windows and batches, training, detection, single-video inference and its recipe."""
