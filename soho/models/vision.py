"""Whole-image visual encoder: torchvision ResNet -> grid features -> visual tokens.

Why: SOHO has no region detector; the CNN's last feature map (stride 32) is the
visual input, one token per cell. Frames of a clip go through the same CNN and get
a temporal position embedding, so one model serves images (T=1) and video (T>1).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from soho.overrides import ConfigError

log = logging.getLogger(__name__)
NAMED = {"resnet18": resnet.resnet18, "resnet50": resnet.resnet50, "resnet101": resnet.resnet101}
CLASSIFIER = "fc."  # torchvision's ImageNet classifier: in the weights file, never used here
SHOWN_KEYS = 3  # offending keys named in the error line


def build_resnet(arch: str, layers: list[int] | None, weights: Path | None) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its pooling/classifier; returns (trunk, output channels).

    ``arch="resnet"`` with ``layers`` builds a reduced-depth BasicBlock ResNet (embedded profile);
    a named arch (``resnet101``) uses the torchvision constructor. ``weights`` is a local
    state-dict file (ImageNet); nothing is ever downloaded here.
    """
    if arch == "resnet":
        net = resnet.ResNet(BasicBlock, list(layers or [1, 1, 1, 1]))
    elif arch in NAMED:
        net = NAMED[arch](weights=None)
    else:
        raise ValueError(f"model.vision.arch: unknown {arch!r} (use 'resnet' or one of {sorted(NAMED)})")
    if weights is not None:
        load_resnet_weights(net, Path(weights), arch)
    block = net.layer4[-1]
    channels = block.conv3.out_channels if isinstance(block, Bottleneck) else block.conv2.out_channels
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, channels


def load_resnet_weights(net: resnet.ResNet, file: Path, arch: str) -> None:
    """Load torchvision's ResNet state dict from ``file`` strictly; only the classifier (``fc.*``) is skipped.

    Why strict: a file whose keys do not match (a ``module.`` prefix from DDP, a detection
    backbone's ``backbone.body.``, another depth) would otherwise load nothing and the CNN
    would silently train from scratch. Any missing, unexpected or mis-shaped key is a
    :class:`ConfigError` naming the file and the first such keys.
    """
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ConfigError(f"model.vision.weights: {file}: not a torch state dict ({type(err).__name__})") from err
    if not isinstance(state, dict):
        raise ConfigError(f"model.vision.weights: {file}: holds a {type(state).__name__}, not a state dict")
    net.fc = nn.Identity()  # its keys are the only ones allowed to be skipped
    state = {key: value for key, value in state.items() if not key.startswith(CLASSIFIER)}
    expected = net.state_dict()
    problems = [
        _named("missing", [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]),
        _named("unexpected", [k for k in state if k not in expected]),
        _named(
            "mis-shaped",
            [
                f"{k} {tuple(state[k].shape)} for {tuple(v.shape)}"
                for k, v in expected.items()
                if k in state and getattr(state[k], "shape", None) != v.shape
            ],
        ),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError(f"model.vision.weights: {file}: not torchvision's {arch} state dict: {'; '.join(problems)}")
    net.load_state_dict(state, strict=True)  # BatchNorm fills in an absent num_batches_tracked (older files)
    log.info("loaded %s (%d tensors)", file, len(state))


def _named(kind: str, keys: list[str]) -> str:
    """``missing a, b, c (+4 more)``, or '' when there are none."""
    if not keys:
        return ""
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return f"{kind} {', '.join(keys[:SHOWN_KEYS])}{more}"


class VisionEncoder(nn.Module):
    """Images (B,3,H,W) or clips (B,T,3,H,W) -> visual features (B, T*h*w, hidden) before the VD."""

    def __init__(
        self,
        hidden: int,
        arch: str = "resnet",
        layers: list[int] | None = None,
        weights: Path | None = None,
        max_grid: int = 16,
    ):
        super().__init__()
        self.trunk, channels = build_resnet(arch, layers, weights)
        self.project = nn.Conv2d(channels, hidden, kernel_size=1)
        self.max_grid = max_grid

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Returns features (B, T*h*w, d) and the (T, h, w) layout."""
        frames = pixels.shape[1] if pixels.dim() == 5 else 1
        flat = pixels.flatten(0, 1) if pixels.dim() == 5 else pixels
        grid = self.project(self.trunk(flat))  # (B*T, d, h, w)
        h, w = grid.shape[-2:]
        if h > self.max_grid or w > self.max_grid:
            raise ValueError(f"grid {h}x{w} exceeds model.vision.max_grid={self.max_grid}: use smaller images")
        tokens = grid.flatten(2).transpose(1, 2)  # (B*T, h*w, d)
        return tokens.reshape(-1, frames * h * w, tokens.shape[-1]), (frames, h, w)


class VisualEmbeddings(nn.Module):
    """2-D (row, column) + temporal position embeddings, a modality embedding, LayerNorm."""

    def __init__(self, hidden: int, max_grid: int, max_frames: int, eps: float = 1e-12, dropout: float = 0.1):
        super().__init__()
        self.row = nn.Embedding(max_grid, hidden)
        self.column = nn.Embedding(max_grid, hidden)
        self.frame = nn.Embedding(max_frames, hidden)
        self.modality = nn.Parameter(torch.zeros(hidden))
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.max_frames = max_frames

    def forward(self, tokens: torch.Tensor, layout: tuple[int, int, int]) -> torch.Tensor:
        frames, h, w = layout
        if frames > self.max_frames:
            raise ValueError(f"{frames} frames exceed model.vision.max_frames={self.max_frames}")
        device = tokens.device
        rows = self.row(torch.arange(h, device=device))[:, None, :]
        cols = self.column(torch.arange(w, device=device))[None, :, :]
        spatial = (rows + cols).reshape(h * w, -1)  # (h*w, d)
        temporal = self.frame(torch.arange(frames, device=device))  # (T, d)
        position = (temporal[:, None, :] + spatial[None]).reshape(frames * h * w, -1)
        return self.dropout(self.norm(tokens + position + self.modality))
