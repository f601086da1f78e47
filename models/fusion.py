"""BAPG fusion that cannot hurt at initialisation: any registered detector, plus boundary-aware channels.

The input (B, C + K, T) holds the video features Fv (C channels) followed by K BAPG channels (boundary-aware
features, BAPG II-D; docs/method.md §5). The wrapped detector sees C channels, as the baseline does:

    Fv' = Fv + W2 relu(W1 z(B))        z(B) = (B - mean) / std, training-split statistics (buffers)

with W2 zero-initialised, so at initialisation Fv' = Fv and the detector's outputs equal the baseline's
(same seed: the detector is built before the fusion layers). Training then learns how much to use the
boundaries. Optional channel dropout on z(B) during training keeps the detector from leaning on one channel.
The detector class does not change: this is the plug-and-play claim of BAPG, implemented as a wrapper.

Every keyword option of BAPGFusion is one of the fusion settings ([<detector>] fusion in luigi.cfg), lr_scale
included: the fusion's learning rate relative to the detector's, which the training loop reads through
parameter_groups().

Extensions beyond the paper (issue 29; docs/method.md §6 "A fusion that ignores useless evidence"), each off by
default and recorded in a checkpoint only when it differs from EXTENSIONS, the value an absent key reads as (off,
or the gate's own defaults), so every artifact made before them keeps its path and loads as it was:

    gate            Fv' = Fv + W2 [relu(W1 (g * z(B)) + b1) - relu(b1)]   g (K,) per-channel gate, initialised at 0
    gate_penalty    lambda: lambda * sum_k |g_k| is added to the training loss (an L1 shrinkage prior on g)
    gate_lr_scale   the gate's learning rate relative to the detector's (its own parameter group)
    gate_threshold  tau: the forward pass uses soft-threshold(g, tau), exactly 0 while |g| <= tau
    rank_normalise  each BAPG channel replaced by its within-video quantiles before standardisation
                    (stages.bapg.calibration; applied to whole videos by training and detection, not here)

With the gate, g = 0 gives exactly the baseline whatever W1, W2 hold, so W2 starts at its ordinary (non-zero)
initialisation: the gradient reaches g from the first step and, while g is 0, nothing else of the fusion moves.
Under the L1 prior a channel's gate leaves 0 only if the loss falls faster along it than lambda.
"""
from __future__ import annotations

import torch
from torch import nn

# The options added after checkpoints existed and the value each reads as when absent (off; the gate's defaults):
# resolve_fusion_config records one only when it differs, and recorded settings without it read as this
# (models.detector_registry). These values are fixed for good: changing one would change old checkpoints.
EXTENSIONS = {"gate": False, "gate_penalty": 0.0, "gate_lr_scale": 10.0, "gate_threshold": 0.05,
              "rank_normalise": False}


class BAPGFusion(nn.Module):
    """detector(Fv + zero-initialised projection of standardised BAPG channels): same interface as the detector."""

    def __init__(self, detector: nn.Module, video_channels: int, bapg_channels: int, hidden: int = 128,
                 channel_dropout: float = 0.1, input_dropout: float = 0.0, lr_scale: float = 0.1,
                 gate: bool = False, gate_penalty: float = 0.0, gate_lr_scale: float = 10.0,
                 gate_threshold: float = 0.05, rank_normalise: bool = False):
        super().__init__()
        if video_channels < 1 or bapg_channels < 1:
            raise ValueError(f"fusion needs video and BAPG channels >= 1, got {video_channels}, {bapg_channels}")
        check_extensions(gate, gate_penalty, gate_lr_scale, gate_threshold, rank_normalise)
        self.detector = detector
        self.video_channels, self.bapg_channels = int(video_channels), int(bapg_channels)
        # Identity standardisation until set_bapg_statistics() is called with the training split's statistics.
        self.register_buffer("bapg_mean", torch.zeros(bapg_channels))
        self.register_buffer("bapg_std", torch.ones(bapg_channels))
        self.dropout = nn.Dropout1d(channel_dropout) if channel_dropout > 0 else nn.Identity()
        # Training only: the whole BAPG input of a video is dropped with this probability, so the detector keeps
        # working from Fv alone and uses the boundaries as extra evidence rather than a crutch.
        self.input_dropout = float(input_dropout)
        # The fusion starts at zero and the detector is already shaped by the video features, so the fusion learns
        # at a fraction of the detector's rate (docs/method.md §6: how the fraction was chosen).
        if not lr_scale >= 0:
            raise ValueError(f"fusion lr_scale must be >= 0, got {lr_scale}")
        self.lr_scale = float(lr_scale)
        self.gate_penalty, self.channel_dropout = float(gate_penalty), float(channel_dropout)
        # Adam moves g by about its learning rate per step whatever the gradient's size: at the fusion's rate g
        # could not open in a run's few thousand steps (docs/method.md §6), so it has a rate of its own.
        self.gate_lr_scale, self.gate_threshold = float(gate_lr_scale), float(gate_threshold)
        self.gate = None
        if gate:
            # The gated fusion draws its random numbers apart from the global stream (initialised under a forked
            # RNG, its dropout from a generator of its own), so that with g = 0 training draws what the baseline's
            # draws. W2 keeps its random initialisation, so that g gets a gradient, and has no bias (a constant
            # added to Fv would move away from the baseline without any evidence).
            with torch.random.fork_rng(devices=[]):
                self.inner = nn.Conv1d(bapg_channels, hidden, 1)
                self.outer = nn.Conv1d(hidden, video_channels, 1, bias=False)
                self.noise_seed = int(torch.randint(2 ** 62, ()))
            self.gate = nn.Parameter(torch.zeros(bapg_channels))  # (K,) g = 0: the baseline
            self._generators: dict[str, torch.Generator] = {}
        else:
            self.inner = nn.Conv1d(bapg_channels, hidden, 1)
            self.outer = nn.Conv1d(hidden, video_channels, 1)
            nn.init.zeros_(self.outer.weight)  # Fv' = Fv at initialisation: the baseline
            nn.init.zeros_(self.outer.bias)

    @torch.no_grad()
    def set_bapg_statistics(self, mean, std) -> None:
        """Per-channel mean and std of the BAPG channels over the training split (std floored to avoid 1/0)."""
        mean = torch.as_tensor(mean, dtype=self.bapg_mean.dtype)
        std = torch.as_tensor(std, dtype=self.bapg_std.dtype)
        if mean.shape != self.bapg_mean.shape or std.shape != self.bapg_std.shape:
            raise ValueError(f"BAPG statistics must have {self.bapg_channels} channels, got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")
        self.bapg_mean.copy_(mean)
        self.bapg_std.copy_(std.clamp(min=1e-6))

    def fuse(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C + K, T), (B, T) -> fused Fv' (B, C, T) and the plain Fv (B, C, T)."""
        if features.shape[1] != self.video_channels + self.bapg_channels:
            raise ValueError(f"fusion expects {self.video_channels} + {self.bapg_channels} channels, got "
                             f"{features.shape[1]}")
        fv, b = features[:, :self.video_channels], features[:, self.video_channels:]  # (B, C, T), (B, K, T)
        z = (b - self.bapg_mean[None, :, None]) / self.bapg_std[None, :, None]  # (B, K, T) standardised
        m = mask[:, None, :].to(features.dtype)  # (B, 1, T): padded steps add nothing
        if self.gate is not None:
            return fv + self._gated_delta(z, m), fv
        delta = self.outer(torch.relu(self.inner(self.dropout(z) * m))) * m  # (B, C, T)
        if self.training and self.input_dropout > 0:
            keep = (torch.rand(features.shape[0], 1, 1, device=features.device) >= self.input_dropout)
            delta = delta * keep.to(delta.dtype)  # (B, C, T): no boundary evidence for the dropped videos
        return fv + delta, fv

    def _gated_delta(self, z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """(B, K, T) standardised B, (B, 1, T) mask -> W2 [relu(W1 (g * z) + b1) - relu(b1)] (B, C, T), with the
        channel and input dropouts drawn from the fusion's own generator."""
        if self.training and self.channel_dropout > 0:
            keep = self._uniform((z.shape[0], z.shape[1], 1), z.device) >= self.channel_dropout  # (B, K, 1)
            z = z * keep.to(z.dtype) / (1.0 - self.channel_dropout)  # as nn.Dropout1d
        h = torch.relu(self.inner(self.open_gate()[None, :, None] * z * m))  # (B, H, T)
        h = h - torch.relu(self.inner.bias)[None, :, None]  # (B, H, T): exactly 0 where g * z = 0
        delta = self.outer(h) * m  # (B, C, T)
        if self.training and self.input_dropout > 0:
            keep = self._uniform((z.shape[0], 1, 1), z.device) >= self.input_dropout  # (B, 1, 1)
            delta = delta * keep.to(delta.dtype)
        return delta

    def open_gate(self) -> torch.Tensor:
        """The gate the forward pass uses, (K,): g soft-thresholded by gate_threshold, so exactly 0 while |g| is
        within it (Adam and the L1 prior leave g hovering there, not at 0); its gradient passes to g unchanged
        (straight through), so g keeps hearing the evidence while the fusion is still the baseline."""
        g = self.gate
        shrunk = torch.sign(g) * torch.clamp(g.abs() - self.gate_threshold, min=0.0)  # (K,)
        return g + (shrunk - g).detach()

    def _uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """U[0, 1) of `shape` from the gated fusion's own generator on `device` (seeded at construction)."""
        gen = self._generators.get(str(device))
        if gen is None:
            gen = self._generators[str(device)] = torch.Generator(device=device)
            gen.manual_seed(self.noise_seed)
        return torch.rand(shape, generator=gen, device=device)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        fused, fv = self.fuse(features, mask)
        outputs = self.detector(fused, mask)
        if "features" in outputs:
            # Auxiliary losses that splice clips (AFSD's boundary contrastive learning) get Fv without BAPG:
            # spliced BAPG channels would still describe the original clip's boundaries (a shortcut).
            pad = outputs["features"].shape[-1] - fv.shape[-1]
            outputs["features"] = nn.functional.pad(fv, (0, pad))  # (B, C, T')
        return outputs

    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """The detector's loss; with a gate and gate_penalty > 0, plus gate_penalty * sum |g| ("gate_l1": sum |g|)."""
        losses = self.detector.loss(outputs, targets)
        if self.gate is None or self.gate_penalty <= 0:
            return losses
        l1 = self.gate.abs().sum()  # () the L1 shrinkage prior: evidence is switched off unless it pays for itself
        return {**losses, "total": losses["total"] + self.gate_penalty * l1, "gate_l1": l1.detach()}

    def predict(self, outputs: dict, **kwargs):
        return self.detector.predict(outputs, **kwargs)

    def regression_health(self, outputs: dict, targets: list[dict]) -> dict:
        return self.detector.regression_health(outputs, targets)

    def parameter_groups(self) -> list[dict]:
        """Optimizer groups: the detector's parameters at the base lr (lr_scale 1), the fusion's at lr_scale."""
        groups = [{"params": list(self.detector.parameters()), "lr_scale": 1.0},
                  {"params": [*self.inner.parameters(), *self.outer.parameters()], "lr_scale": self.lr_scale}]
        if self.gate is not None:  # the gate at its own rate (gate_lr_scale x the detector's)
            groups.append({"params": [self.gate], "lr_scale": self.gate_lr_scale})
        return groups

    def clipped_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradients the training loop clips together: all of them, but with a gate only the
        detector's. The gate's gradient, and even the fusion's zero gradients (through the float rounding of the
        norm), would change the clipping scale of every detector weight, so a shut gate would still change training
        (docs/method.md §6); Adam's steps hardly depend on the scale of a parameter's gradient anyway."""
        return list(self.parameters() if self.gate is None else self.detector.parameters())

    def fusion_norm(self) -> float:
        """Frobenius norm of the output projection (with a gate: of the gate, W2 being random from the start): 0
        means the detector still ignores the BAPG channels."""
        return float((self.outer.weight if self.gate is None else self.open_gate()).detach().norm())


def check_extensions(gate, gate_penalty, gate_lr_scale, gate_threshold, rank_normalise) -> None:
    """ValueError naming the option unless the extension options are well formed (EXTENSIONS)."""
    for name, value in (("gate", gate), ("rank_normalise", rank_normalise)):
        if not isinstance(value, bool):
            raise ValueError(f"fusion {name} must be true or false, got {value!r}")
    for name, value in (("gate_penalty", gate_penalty), ("gate_lr_scale", gate_lr_scale),
                        ("gate_threshold", gate_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
            raise ValueError(f"fusion {name} must be a number >= 0, got {value!r}")
    given = {"gate_penalty": gate_penalty, "gate_lr_scale": gate_lr_scale, "gate_threshold": gate_threshold}
    given = sorted(k for k, v in given.items() if v != EXTENSIONS[k])
    if given and not gate:
        raise ValueError(f"fusion {given} need the gate: add \"gate\": true")
