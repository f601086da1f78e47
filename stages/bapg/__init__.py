"""BAPG: sample pools, the contrastive encoder, similarity matrices, TSC, proposals, proposal features, recall."""
