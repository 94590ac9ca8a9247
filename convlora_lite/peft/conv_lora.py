"""Conv-LoRA (Zhong et al., ICLR 2024): LoRA whose bottleneck passes through a mixture of
convolution experts, on the fused ``qkv`` projection of every SAM image-encoder block.

The layer (official defaults, ``docs/method.md``, "The Conv-LoRA layer")::

    h  = A dropout(x)                       rank-r bottleneck, viewed as an r-channel image
    h' = h + MoEConv(h)
    y  = W0 x + b0 + (alpha / r) * B h'

``MoEConv`` routes each sample (a window in SAM's windowed blocks, an image in the global ones)
to the top-1 of E = 8 experts; expert i upsamples by scale s_i = i (bicubic, skipped at 1),
applies a 3x3 convolution and GELU, and resizes back. The gate is Shazeer et al.'s (2017) noisy
top-k gate on the global average pool of h, trained only by its load-balancing loss.

Speed. The official code dispatches samples to experts through a Python loop with
``nonzero``/``sort``/``.tolist()`` (a device-to-host sync in every adapted layer) and an
exp/log combine. Here bicubic resizing is written as matrix products (it is a linear, separable map), so
every sample goes through the same four batched products and one grouped convolution with its own expert's
resize matrices and kernel gathered by its routing index: no host sync, no data-dependent shapes, no Python
loop over experts, few operators per step (see :class:`MoEConv` and ``docs/performance.md``).
The result is the same to float rounding (``conv_lora_official.py`` is the faithful loop, used
as the test oracle and the benchmark baseline;
``apply_peft(model, "conv_lora", implementation="official")`` selects it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import AuxLossModule, PeftMethod, check_number, check_positive_int
from convlora_lite.peft.lora import LoraConfig, LoRALinear, wrap_encoder_qkv
from convlora_lite.peft.moe_gate import NoisyTopKGate, Routing, load_balancing_loss, routing_counts


@dataclass(frozen=True)
class ConvLoraConfig(LoraConfig):
    """Conv-LoRA's options (official defaults, ``docs/method.md``): LoRA's, plus the mixture of
    convolution experts (``scales`` default ``1..num_experts``), top-k routing, ``gated`` (multiply the
    chosen expert by its gate value; off officially), the load-balancing loss weight and the
    implementation (``"fast"`` or ``"official"``)."""

    num_experts: int = 8
    scales: Optional[Sequence[float]] = None
    top_k: int = 1
    gated: bool = False
    loss_coef: float = 0.01
    implementation: str = "fast"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("num_experts", self.num_experts)
        if self.scales is not None:
            scales = list(self.scales) if isinstance(self.scales, (list, tuple)) else None
            if scales is None or len(scales) != self.num_experts:
                raise ConfigError(f"Option scales must list one upsampling factor per expert (num_experts="
                                  f"{self.num_experts}), got {self.scales!r}.")
            for scale in scales:
                check_number("scales", scale, 1.0)
        check_positive_int("top_k", self.top_k)
        if self.top_k > self.num_experts:
            raise ConfigError(f"Option top_k must be between 1 and num_experts={self.num_experts}, got {self.top_k}.")
        if not isinstance(self.gated, bool):
            raise ConfigError(f"Option gated must be true or false, got {self.gated!r}.")
        check_number("loss_coef", self.loss_coef, 0.0)
        if self.implementation not in ("fast", "official"):
            raise ConfigError(f"Option implementation must be 'fast' or 'official', got {self.implementation!r}.")


class ConvExpert:
    """Expert ``index`` of a :class:`MoEConv`: bicubic upsample by ``scale`` (skipped at 1) -> 3x3 convolution
    r -> r (padding 1) -> GELU -> bicubic resize back, the direct formula; ``expert(h (N, r, H, W)) -> (N, r, H, W)``.

    ``weight`` (r, r, 3, 3) and ``bias`` (r,) are views of the mixture's stacked parameters (writing to them
    under ``torch.no_grad()`` changes the mixture)."""

    def __init__(self, moe: "MoEConv", index: int):
        self.moe, self.index = moe, index

    @property
    def scale(self) -> float:
        return self.moe.scales[self.index]

    @property
    def weight(self) -> torch.Tensor:
        return self.moe.weight[self.index]

    @property
    def bias(self) -> torch.Tensor:
        return self.moe.bias[self.index]

    @property
    def num_parameters(self) -> int:
        """r * r * 9 + r (84 at the official r = 3)."""
        return self.weight.numel() + self.bias.numel()

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        size = h.shape[-2:]
        if self.scale != 1:
            h = F.interpolate(h, scale_factor=self.scale, mode="bicubic")
        out = F.gelu(F.conv2d(h, self.weight, self.bias, padding=1))
        if self.scale != 1:
            out = F.interpolate(out, size=size, mode="bicubic")
        return out

    def __repr__(self) -> str:
        return f"ConvExpert(index={self.index}, scale={self.scale:g})"


class MoEConv(nn.Module):
    """A mixture of E convolution experts (:class:`ConvExpert`) at several scales with a :class:`NoisyTopKGate` on
    the global average pool of its input.

    Args:
        channels: r.
        scales: one upsampling factor per expert (official 1, 2, ..., 8).
        top_k: experts per sample (official 1).
        gated: multiply each chosen expert's output by its gate value. Official: False, so the
            gate trains only through the auxiliary loss. With k = 1 the gate value is identically
            1 (a softmax over one logit), so this option matters only for k >= 2.
        loss_coef: weight of the load-balancing loss (official 0.01).

    Parameters: the gate's, and the experts' convolutions stacked, ``weight`` (E, r, r, 3, 3) and ``bias``
    (E, r), initialised as the official per-expert ``nn.Conv2d`` with a zero bias; ``experts`` are views of
    them. (State dicts saved before the experts were stacked, with one ``experts.{e}.conv`` module each, load too.)

    ``forward(h (N, H, W, r), channels last) -> (delta (N, H, W, r), Routing)``; each sample gets the sum
    of its chosen experts' outputs. (The official combine is log(sum_e w_e exp(out_e)), which equals
    this sum for k = 1, the official setting; for k >= 2 we keep the plain sum, a documented
    difference.)

    How it is computed (sync-free, fixed shapes, few operators). Bicubic resizing is linear and separable,
    so expert e maps each channel as ``out = D_e gelu(conv(U_e h U_e'^T) + b) D_e'^T`` with U_e, D_e the
    resize matrices. The matrices of all experts are zero-padded to the largest scale S and gathered per
    sample by its routing index, together with the sample's kernel and bias: every sample is upsampled by two
    batched matrix products, convolved by one grouped convolution (one group per sample, its own expert's
    3x3 kernel; the zero rows beyond a smaller expert's upsampled map are exactly the convolution's zero
    padding) and resized back by two more, whatever expert it chose: no ``nonzero``, no ``.tolist()``, no
    Python loop over experts, about 30 operators whatever E (``docs/performance.md``). The price is that
    every sample costs as much as the largest scale, on a map of only r channels. :class:`ConvExpert` is the
    direct formula; the two agree to float rounding (tested).
    """

    def __init__(self, channels: int, scales: Sequence[float], top_k: int = ConvLoraConfig.top_k,
                 gated: bool = ConvLoraConfig.gated, loss_coef: float = ConvLoraConfig.loss_coef):
        super().__init__()
        self.gated = gated
        self.scales = tuple(scales)
        self.gate = NoisyTopKGate(channels, len(scales), top_k=top_k, loss_coef=loss_coef)
        convs = [nn.Conv2d(channels, channels, kernel_size=3, padding=1) for _ in scales]  # the official init
        self.weight = nn.Parameter(torch.stack([conv.weight.detach() for conv in convs]))
        self.bias = nn.Parameter(torch.zeros(len(scales), channels))
        self._operators: dict = {}

    @property
    def num_experts(self) -> int:
        return len(self.scales)

    @property
    def experts(self) -> tuple[ConvExpert, ...]:
        return tuple(ConvExpert(self, e) for e in range(self.num_experts))

    def extra_repr(self) -> str:
        return f"scales=({', '.join(f'{s:g}' for s in self.scales)}), gated={self.gated}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _stack_legacy_experts(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        routing = self.gate(h.mean(dim=(1, 2)))
        n, height, width, r = h.shape
        k = routing.expert_index.shape[1]
        if k == 1:
            index = routing.expert_index.view(-1)  # (M,), M = N * k, sample-major
        else:
            index, h = routing.expert_index.reshape(-1), h.repeat_interleave(k, dim=0)
        m = index.shape[0]
        # (M, S, H) and (M, H, S): each sample's own expert's resize matrices
        up_rows, down_rows = (op[index] for op in self._resize_operators(height, h))
        up_cols, down_cols = (up_rows, down_rows) if width == height else (
            op[index] for op in self._resize_operators(width, h))
        rows, cols = up_rows.shape[1], up_cols.shape[1]
        # upsample along H (the channels ride along as columns), then along W: (M, r*S, S')
        up = torch.bmm(up_rows, h.reshape(m, height, width * r)).view(m, rows, width, r)
        up = torch.bmm(up.permute(0, 3, 1, 2).reshape(m, r * rows, width), up_cols.transpose(1, 2))
        # each sample's own expert's 3x3 convolution: (1, M*r, S, S'); (M, r, S, S') in an ONNX export
        hidden = F.gelu(self._expert_convolution(up, index, rows, cols))
        # (the zero rows and columns beyond a smaller expert's s_e * H are the convolution's zero padding)
        # resize back along W, then along H: (M, H, W, r)
        out = torch.bmm(hidden.view(m, r * rows, cols), down_cols.transpose(1, 2)).view(m, r, rows, width)
        out = torch.bmm(down_rows, out.permute(0, 2, 3, 1).reshape(m, rows, width * r)).view(m, height, width, r)
        if k > 1:
            out = out.view(n, k, height, width, r)
            if self.gated:
                out = out * routing.gate_values[:, :, None, None, None].to(out.dtype)
            out = out.sum(dim=1)
        return out, routing

    def _expert_convolution(self, up: torch.Tensor, index: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """``up`` (M, r*S, S'), each sample's r upsampled maps of S x S' (S = ``rows``, S' = ``cols``), convolved
        sample by sample by its own expert's 3x3 kernel and bias (``index`` (M,) long): (1, M*r, S, S'). One grouped
        convolution, one group per sample; in an ONNX export (whose ``Conv`` takes a fixed number of groups,
        while M follows the batch) every expert's convolution of every sample, E times the work on r channels,
        then each sample's own: (M, r, S, S') (``convlora_lite.inference.onnx_export``)."""
        m, r = up.shape[0], self.weight.shape[1]
        if torch.onnx.is_in_onnx_export():
            every = F.conv2d(up.view(m, r, rows, cols), self.weight.flatten(0, 1), self.bias.flatten(), padding=1)
            return every.unflatten(1, (self.num_experts, r))[torch.arange(m, device=up.device), index]
        return F.conv2d(up.view(1, m * r, rows, cols), self.weight[index].view(m * r, r, 3, 3),
                        self.bias[index].view(m * r), padding=1, groups=m)

    def _resize_operators(self, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The resize matrices of every expert along one axis of length ``size``, cached per size, device and
        dtype (built once in float64, then kept in the compute dtype).

        Returns ``up`` (E, S, size), the bicubic upsampling matrices, and ``down`` (E, size, S), the bicubic
        resizes back; S is the largest upsampled length, smaller ones are zero-padded (rows of ``up``,
        columns of ``down``).
        """
        key = (size, like.device, like.dtype)
        if key not in self._operators:
            eye = torch.eye(size, dtype=torch.float64)
            ups = [eye if scale == 1 else _resize_matrix(eye, scale_factor=scale) for scale in self.scales]
            longest = max(u.shape[0] for u in ups)
            up = torch.zeros(self.num_experts, longest, size, dtype=torch.float64)
            down = torch.zeros(self.num_experts, size, longest, dtype=torch.float64)
            for e, u in enumerate(ups):
                length = u.shape[0]
                up[e, :length] = u
                eye_up = torch.eye(length, dtype=torch.float64)
                down[e, :, :length] = eye_up if length == size else _resize_matrix(eye_up, size=size)
            self._operators[key] = (up.to(like.device, like.dtype), down.to(like.device, like.dtype))
        return self._operators[key]


def _stack_legacy_experts(module: MoEConv, state_dict: dict, prefix: str) -> None:
    """Load a state dict saved with one ``experts.{e}.conv`` module per expert: stack them into ``weight``/``bias``."""
    legacy = f"{prefix}experts.0.conv.weight"
    if legacy in state_dict and f"{prefix}weight" not in state_dict:
        for name in ("weight", "bias"):
            keys = [f"{prefix}experts.{e}.conv.{name}" for e in range(module.num_experts)]
            state_dict[f"{prefix}{name}"] = torch.stack([state_dict.pop(key) for key in keys])


def _resize_matrix(eye: torch.Tensor, **resize) -> torch.Tensor:
    """The matrix (out_len, in_len) of 1-D bicubic resizing as ``F.interpolate`` does it (same
    ``scale_factor`` or ``size`` semantics), read off by resizing the identity basis."""
    size = resize.pop("size", None)
    images = eye[:, None, :, None]  # one (in_len x 1) image per basis vector
    if size is not None:
        out = F.interpolate(images, size=(size, 1), mode="bicubic")
    else:
        out = F.interpolate(images, scale_factor=(resize["scale_factor"], 1), mode="bicubic")
    return out[:, 0, :, 0].T


class ConvLoRALinear(LoRALinear, AuxLossModule):
    """Conv-LoRA on a frozen ``nn.Linear``: ``y = W0 x + b0 + scaling * B (h + MoEConv(h))``.

    Args:
        base, rank, alpha, dropout: as :class:`~convlora_lite.peft.lora.LoRALinear`.
        num_experts: E (official 8).
        scales: the experts' upsampling factors; ``None`` = 1, 2, ..., E (official).
        top_k, gated, loss_coef: as :class:`MoEConv`.

    Input: (B', H, W, C) (SAM's windowed or global blocks) or (B, L, C) with L a square number,
    viewed as sqrt(L) x sqrt(L). Each of the B' maps is one routing sample.

    After each forward: ``aux_loss`` (0-dim), ``last_expert_index`` (B', k) and
    ``routing_counts`` (E,) float, as tensors (reading them is the only host sync); the segmenter sums
    all layers' ``aux_loss`` in one batch (:meth:`total_aux_loss`).
    """

    moe_type = MoEConv

    def __init__(self, base: nn.Linear, rank: int = LoraConfig.rank, alpha: float = LoraConfig.alpha,
                 dropout: float = LoraConfig.dropout, num_experts: int = ConvLoraConfig.num_experts,
                 scales: Optional[Sequence[float]] = None, top_k: int = ConvLoraConfig.top_k,
                 gated: bool = ConvLoraConfig.gated, loss_coef: float = ConvLoraConfig.loss_coef):
        ConvLoraConfig(rank=rank, alpha=alpha, dropout=dropout, num_experts=num_experts, scales=scales, top_k=top_k,
                       gated=gated, loss_coef=loss_coef)  # the values' checks live in the config
        super().__init__(base, rank=rank, alpha=alpha, dropout=dropout)
        scales = list(range(1, num_experts + 1)) if scales is None else list(scales)
        self.moe = self.moe_type(rank, scales, top_k=top_k, gated=gated, loss_coef=loss_coef)
        self.moe.to(device=base.weight.device, dtype=base.weight.dtype)
        self._routing: Optional[Routing] = None
        self.last_expert_index: Optional[torch.Tensor] = None

    def adapt_bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        """h (B', H, W, r) or (B, L, r) -> h + MoEConv(h), same shape."""
        if h.dim() == 3:
            side = math.isqrt(h.shape[1])
            if side * side != h.shape[1]:
                raise ConfigError(f"Conv-LoRA views a (B, L, C) input as a square sqrt(L) x sqrt(L) map, "
                                  f"but L = {h.shape[1]} is not a square; pass a (B, H, W, C) input instead.")
            image = h.view(h.shape[0], side, side, h.shape[2])
        elif h.dim() == 4:
            image = h
        else:
            raise ConfigError(f"Conv-LoRA expects a (B, H, W, C) or (B, L, C) input, got shape {tuple(h.shape)}.")
        delta, self._routing = self.moe(image)
        self.last_expert_index = self._routing.expert_index
        return h + (delta if h.dim() == 4 else delta.reshape(h.shape))

    @property
    def aux_loss(self) -> Optional[torch.Tensor]:
        """The load-balancing loss of the last forward (0-dim float32), None before the first."""
        routing = self._routing
        if routing is None:
            return None
        return routing.aux_loss if routing.aux_loss is not None else self.moe.gate.aux_loss(routing.balance)

    @property
    def routing_counts(self) -> Optional[torch.Tensor]:
        """(E,) float: how many samples of the last forward chose each expert (None before the first)."""
        if self.last_expert_index is None:
            return None
        return routing_counts(self.last_expert_index, self.moe.num_experts)

    @classmethod
    def total_aux_loss(cls, modules: Sequence["ConvLoRALinear"]) -> Optional[torch.Tensor]:
        """The sum of ``modules``' load-balancing losses: the gates of the same top-k and loss weight in one
        :func:`load_balancing_loss` batch (a layer whose loss is already computed, the official one, adds it)."""
        batches: dict = {}
        losses = []
        for module in modules:
            routing = module._routing
            if routing is None:
                continue
            if routing.aux_loss is not None:
                losses.append(routing.aux_loss.float().reshape(()))
            else:
                gate, balance = module.moe.gate, routing.balance
                key = (gate.top_k, gate.loss_coef, gate.num_experts, balance.noise is not None)
                batches.setdefault(key, []).append(balance)
        losses += [load_balancing_loss(balances, top_k, coef) for (top_k, coef, _, _), balances in batches.items()]
        return torch.stack(losses).sum() if losses else None


def inject(model: nn.Module, config: ConvLoraConfig) -> None:
    """Wrap the ``qkv`` linear of the placed image-encoder blocks (default: every block; LoRA's ``blocks`` and
    ``stages``) in a :class:`ConvLoRALinear`. On SAM 2's Hiera each layer's experts see the token grid of its
    block's keys and values, as ``qkv`` receives it: the block's windows (the previous stage's window size and grid
    at a stage's first, query-pooling block) or, in a global block, the whole map.

    ``implementation``: ``"fast"`` (this file, sync-free) or ``"official"`` (the per-expert
    dispatch loop of the authors' code, ``conv_lora_official.py``; same parameters, same results).
    """
    if config.implementation == "official":
        from convlora_lite.peft.conv_lora_official import OfficialConvLoRALinear as layer_type
    else:
        layer_type = ConvLoRALinear
    wrap_encoder_qkv(model, lambda qkv: layer_type(
        qkv, rank=config.rank, alpha=config.alpha, dropout=config.dropout, num_experts=config.num_experts,
        scales=config.scales, top_k=config.top_k, gated=config.gated, loss_coef=config.loss_coef), config)


METHOD = PeftMethod(
    name="conv_lora",
    paper="Zhong et al., Convolution Meets LoRA: Parameter Efficient Finetuning for Segment Anything Model, ICLR 2024",
    where="LoRA on the fused qkv projection of every image-encoder block, with a mixture of multi-scale "
          "convolution experts on the rank-r bottleneck",
    inject=inject,
    config=ConvLoraConfig,
)
