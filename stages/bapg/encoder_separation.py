"""The encoder's held-out separation (separation.json of TrainEncoder): how far Phi pulls a positive above a hard
negative on videos it did not train on, for the raw features, the untrained encoder (same seed) and the trained one.
"""
from __future__ import annotations


def encoder_report(state, cfg, features, actions, grids, config, seed, device, inputs=None) -> dict:
    """Positive vs hard-negative similarity on held-out videos: raw features, untrained encoder (same seed), trained.

    inputs(video): the encoder's input of a held-out video, read when needed (the frame encoder's frames on the
    feature grid); default its features."""
    from tal_pipeline.stages.bapg.encoder import make_embedder, train_encoder
    from tal_pipeline.stages.bapg.sample_pools import build_sample_pools, pool_similarity

    pools = build_sample_pools(actions, grids, {v: len(x) for v, x in features.items()},
                               cfg["train"]["hard_negative_seconds"])
    if inputs is None:
        inputs, shaped, shaped_actions = features.__getitem__, features, actions
    else:  # the initial weights depend on the seed alone: one video gives the untrained encoder its input shape
        first = sorted(features)[0]
        shaped, shaped_actions = {first: inputs(first)}, actions[actions["video"] == first]
    untrained, untrained_cfg, _ = train_encoder(shaped, shaped_actions, grids, {**config, "epochs": 0}, seed=seed,
                                                device=device, progress=False)
    before, after = make_embedder(untrained, untrained_cfg, device), make_embedder(state, cfg, device)
    return {"features": pool_similarity(features, pools, seed=seed),
            "before": pool_similarity(lambda v: before(inputs(v)), pools, seed=seed),
            "after": pool_similarity(lambda v: after(inputs(v)), pools, seed=seed),
            "held_out_videos": len(features), "pools": pools.summary()}
