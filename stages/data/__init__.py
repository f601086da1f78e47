"""The data part of the chain: frame sampling, I3D features, feature import and the time grid they share."""
