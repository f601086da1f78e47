"""Evaluation (mAP at tIoU thresholds) and the results report."""
