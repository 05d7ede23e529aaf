"""Whole-image visual encoder: torchvision ResNet -> grid features -> visual tokens.

Why: SOHO has no region detector; the CNN's last feature map (stride 32) is the
visual input, one token per cell. Frames of a clip go through the same CNN and get
a temporal position embedding, so one model serves images (T=1) and video (T>1).
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from soho.models import starting_weights
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
        if not Path(weights).is_file():
            raise starting_weights.missing("model.vision.weights", Path(weights), "does not exist")
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
        frozen_stages: int = 0,
    ):
        super().__init__()
        self.trunk, channels = build_resnet(arch, layers, weights)
        self.project = nn.Conv2d(channels, hidden, kernel_size=1)
        self.max_grid = max_grid
        # trunk = conv1, bn1, relu, maxpool, layer1..layer4: stage 1 is the stem and layer1 (mmdet's frozen_stages)
        # a plain list, not a ModuleList: the trunk already holds these modules (no second state-dict key)
        self.frozen: list[nn.Module] = (
            list(self.trunk[:2]) + list(self.trunk[4 : 4 + frozen_stages]) if frozen_stages else []
        )
        for module in self.frozen:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> VisionEncoder:
        """Frozen stages stay in eval mode: their BatchNorm statistics are frozen with their weights (as SOHO)."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

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


def grid_mask(pixel_mask: torch.Tensor | None, layout: tuple[int, int, int]) -> torch.Tensor | None:
    """(B, [T,] H, W) mask of real pixels -> (B, T*h*w) mask of real grid cells; None stays None (no padding).

    A cell is real when the pixel nearest its top-left corner is: SOHO resizes its padding mask
    to the grid the same way (nearest), and with sizes padded to the stride that is the
    cell's first pixel.
    """
    if pixel_mask is None:
        return None
    frames, h, w = layout
    planes = pixel_mask.reshape(-1, 1, *pixel_mask.shape[-2:]).float()  # (B*T, 1, H, W)
    return F.interpolate(planes, size=(h, w), mode="nearest").bool().reshape(-1, frames * h * w)


def sine_positions(valid: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine position encoding (DETR's, which SOHO uses) of (N, h, w) grids -> (N, h, w, dim).

    Rows and columns each take half the channels; positions count real cells only (``valid``)
    and are normalised to [0, 2 pi], so a padded image's cells get the same codes as alone.
    Hand-written: torch has no 2-D sine encoding; a dozen lines of DETR's formula.
    """
    if dim % 2:
        raise ValueError(f"sine positions need an even hidden size (got {dim})")
    y = valid.cumsum(1, dtype=torch.float32)
    x = valid.cumsum(2, dtype=torch.float32)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=valid.device)
    steps = temperature ** (2 * (steps // 2) / half)
    angles_x, angles_y = x[..., None] / steps, y[..., None] / steps  # (N, h, w, half)
    codes_x = torch.stack((angles_x[..., 0::2].sin(), angles_x[..., 1::2].cos()), dim=4).flatten(3)
    codes_y = torch.stack((angles_y[..., 0::2].sin(), angles_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((codes_y, codes_x), dim=3)


class VisualEmbeddings(nn.Module):
    """2-D grid positions (learned row + column tables, or 2-D sine) + a learned temporal embedding,
    a modality embedding, LayerNorm."""

    def __init__(
        self,
        hidden: int,
        max_grid: int,
        max_frames: int,
        eps: float = 1e-12,
        dropout: float = 0.1,
        position: str = "learned",
    ):
        super().__init__()
        if position not in ("learned", "sine"):
            raise ValueError(f"model.vision.position: {position!r} is not 'learned' or 'sine'")
        self.position = position
        if position == "learned":
            self.row = nn.Embedding(max_grid, hidden)
            self.column = nn.Embedding(max_grid, hidden)
        self.frame = nn.Embedding(max_frames, hidden)
        self.modality = nn.Parameter(torch.zeros(hidden))
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.max_frames = max_frames

    def forward(
        self, tokens: torch.Tensor, layout: tuple[int, int, int], valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``valid`` (B, T*h*w): the real cells of padded images (sine positions count only those)."""
        frames, h, w = layout
        if frames > self.max_frames:
            raise ValueError(f"{frames} frames exceed model.vision.max_frames={self.max_frames}")
        device = tokens.device
        temporal = self.frame(torch.arange(frames, device=device))  # (T, d)
        if self.position == "sine":
            if valid is None:
                valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=device)
            spatial = sine_positions(valid.reshape(-1, h, w), tokens.shape[-1]).reshape(len(tokens), frames, h * w, -1)
            position = (temporal[None, :, None, :] + spatial.to(tokens.dtype)).reshape(len(tokens), frames * h * w, -1)
        else:
            rows = self.row(torch.arange(h, device=device))[:, None, :]
            cols = self.column(torch.arange(w, device=device))[None, :, :]
            spatial = (rows + cols).reshape(h * w, -1)  # (h*w, d)
            position = (temporal[:, None, :] + spatial[None]).reshape(frames * h * w, -1)
        return self.dropout(self.norm(tokens + position + self.modality))
