"""Video-level classification: a classifier on pooled video features, external video scores, and their fusion
with class-agnostic detections."""
