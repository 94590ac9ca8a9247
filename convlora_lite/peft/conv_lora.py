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
exp/log combine. Here the experts are written as matrix products (bicubic resizing is a linear,
separable map; the 3x3 convolution folds into the upsampling), so every sample goes through the
same batched products with its own expert's matrices and weights gathered by its routing index:
no host sync, no data-dependent shapes, no Python loop over experts (see :class:`MoEConv`).
The result is the same to float rounding (``conv_lora_official.py`` is the faithful loop, used
as the test oracle and the benchmark baseline;
``apply_peft(model, "conv_lora", implementation="official")`` selects it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import AuxLossModule, PeftMethod, check_number, check_positive_int
from convlora_lite.peft.lora import LoraConfig, LoRALinear, wrap_encoder_qkv

#: The noise floor added to the learned noise scale (official ``noise_epsilon``).
NOISE_EPSILON = 1e-2


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


class Routing(NamedTuple):
    """The gate's decision for a batch of N samples routed among E experts.

    Attributes:
        expert_index: (N, k) long, the chosen experts, best first.
        gate_values: (N, k) softmax over the k chosen logits (identically 1 when k = 1).
        aux_loss: 0-dim load-balancing loss, already multiplied by ``loss_coef``.
    """

    expert_index: torch.Tensor
    gate_values: torch.Tensor
    aux_loss: torch.Tensor


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation var / mean^2 (unbiased variance, eps 1e-10) of a 1-D
    tensor, as a 0-dim float tensor; 0 for a single value."""
    x = x.float()
    if x.numel() == 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + 1e-10)


class NoisyTopKGate(nn.Module):
    """Noisy top-k gating with a load-balancing loss (Shazeer et al., 2017), sync-free.

    Args:
        dim: r, the size of the pooled feature.
        num_experts: E.
        top_k: k, experts chosen per sample.
        loss_coef: weight of the auxiliary loss (official 0.01).

    ``w_gate`` and ``w_noise`` (dim x E) start at zero, so the first routing decisions are made by
    the noise (training) or by ``topk``'s tie-breaking (evaluation).
    """

    def __init__(self, dim: int, num_experts: int, top_k: int = ConvLoraConfig.top_k,
                 loss_coef: float = ConvLoraConfig.loss_coef):
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.loss_coef = loss_coef
        self.w_gate = nn.Parameter(torch.zeros(dim, num_experts))
        self.w_noise = nn.Parameter(torch.zeros(dim, num_experts))

    def forward(self, pooled: torch.Tensor) -> Routing:
        """Route N samples given their pooled features (N, dim).

        The routing is computed in float32 whatever the precision of ``pooled`` and of the matmuls
        under autocast (fp16/bf16 on CUDA): the logits are cast up right after their product, so the
        noise, the top-k, the softmax and the losses meet only float32 tensors, in training as in
        evaluation, on CUDA's autocast policy as on the CPU's (``docs/precision.md``)."""
        k, num_experts = self.top_k, self.num_experts
        clean_logits = (pooled @ self.w_gate).float()
        noisy = self.training
        if noisy:
            noise_std = F.softplus((pooled @ self.w_noise).float()) + NOISE_EPSILON
            logits = clean_logits + torch.randn_like(clean_logits) * noise_std
        else:
            logits = clean_logits
        # k + 1 values: the (k+1)-th is the threshold of the smooth load estimate.
        top_logits, top_index = logits.topk(min(k + 1, num_experts), dim=1)
        expert_index = top_index[:, :k]
        gate_values = top_logits[:, :k].softmax(dim=1)
        gates = torch.zeros_like(logits).scatter(1, expert_index, gate_values)
        importance = gates.sum(0)
        if noisy and k < num_experts:
            load = self._prob_in_top_k(clean_logits, logits, noise_std, top_logits).sum(0)
        else:
            load = routing_counts(expert_index, num_experts)
        aux_loss = self.loss_coef * (cv_squared(importance) + cv_squared(load))
        return Routing(expert_index, gate_values, aux_loss)

    def _prob_in_top_k(self, clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor,
                       top_noisy: torch.Tensor) -> torch.Tensor:
        """(N, E) probability that each expert would be in the top k under fresh noise: the
        normal CDF of its clean logit against the k-th best other noisy logit."""
        k = self.top_k
        threshold_if_in = top_noisy[:, k:k + 1]
        threshold_if_out = top_noisy[:, k - 1:k]
        prob_if_in = torch.special.ndtr((clean - threshold_if_in) / noise_std)
        prob_if_out = torch.special.ndtr((clean - threshold_if_out) / noise_std)
        return torch.where(noisy > threshold_if_in, prob_if_in, prob_if_out)


def routing_counts(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """(E,) float: how many samples chose each expert, from an (N, k) index (no host sync)."""
    flat = expert_index.reshape(-1)
    return torch.zeros(num_experts, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float))


class ConvExpert(nn.Module):
    """One expert: bicubic upsample by ``scale`` (skipped at 1) -> Conv2d(r, r, 3x3, padding 1,
    zero bias) -> GELU -> bicubic resize back. ``forward(h (N, r, H, W)) -> (N, r, H, W)``."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        size = h.shape[-2:]
        if self.scale != 1:
            h = F.interpolate(h, scale_factor=self.scale, mode="bicubic")
        out = F.gelu(self.conv(h))
        if self.scale != 1:
            out = F.interpolate(out, size=size, mode="bicubic")
        return out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MoEConv(nn.Module):
    """A mixture of :class:`ConvExpert` at several scales with a :class:`NoisyTopKGate` on the
    global average pool of its input.

    Args:
        channels: r.
        scales: one upsampling factor per expert (official 1, 2, ..., 8).
        top_k: experts per sample (official 1).
        gated: multiply each chosen expert's output by its gate value. Official: False, so the
            gate trains only through the auxiliary loss. With k = 1 the gate value is identically
            1 (a softmax over one logit), so this option matters only for k >= 2.
        loss_coef: weight of the load-balancing loss (official 0.01).

    ``forward(h (N, r, H, W)) -> (delta (N, r, H, W), Routing)``; each sample gets the sum of its
    chosen experts' outputs. (The official combine is log(sum_e w_e exp(out_e)), which equals
    this sum for k = 1, the official setting; for k >= 2 we keep the plain sum, a documented
    difference.)

    How it is computed (sync-free, fixed shapes). Bicubic resizing is linear and separable, so
    expert e maps each channel as ``out = D_e gelu(U_e (conv) U_e'^T + b) D_e'^T``; the 3x3
    convolution on the upsampled map is folded into the upsampling: with V_i the upsampling
    matrix shifted by tap i (zero padding), ``conv(U h U'^T) = sum_ij V_i (K_ij * h) V'_j^T``,
    one matrix product of the stacked taps. The resize matrices of all experts are zero-padded to
    the largest scale and gathered per sample by its routing index, together with the sample's
    conv weights, so all samples go through the same batched matrix products whatever expert
    they chose: no ``nonzero``, no ``.tolist()``, no Python loop over experts. The price is that
    every sample costs as much as the largest scale (about 2.5x the arithmetic of a perfect
    per-expert dispatch with uniform routing, on a map of only r channels). The experts' own
    :meth:`ConvExpert.forward` is the direct formula; the two agree to float rounding (tested).
    """

    def __init__(self, channels: int, scales: Sequence[float], top_k: int = ConvLoraConfig.top_k,
                 gated: bool = ConvLoraConfig.gated, loss_coef: float = ConvLoraConfig.loss_coef):
        super().__init__()
        self.gated = gated
        self.gate = NoisyTopKGate(channels, len(scales), top_k=top_k, loss_coef=loss_coef)
        self.experts = nn.ModuleList(ConvExpert(channels, s) for s in scales)
        self._operators: dict = {}

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        routing = self.gate(h.mean(dim=(2, 3)))
        n, r, height, width = h.shape
        k = routing.expert_index.shape[1]
        index = routing.expert_index.reshape(-1)  # (M,), M = N * k, sample-major
        if k > 1:
            h = h.repeat_interleave(k, dim=0)
        up_rows, down_rows = self._resize_operators(height, h)
        up_cols, down_cols = self._resize_operators(width, h)
        weight = torch.stack([e.conv.weight for e in self.experts])[index]  # (M, r, r, 3, 3)
        bias = torch.stack([e.conv.bias for e in self.experts])[index]  # (M, r)
        taps = torch.einsum("mcdij,mdyx->mciyjx", weight, h).reshape(-1, r, 3 * height, 3 * width)
        conv = up_rows[index].unsqueeze(1) @ taps @ up_cols[index].transpose(1, 2).unsqueeze(1)
        hidden = F.gelu(conv + bias[:, :, None, None])  # (M, r, S*H, S*W), zero-padded beyond s_e*H
        out = down_rows[index].unsqueeze(1) @ hidden @ down_cols[index].transpose(1, 2).unsqueeze(1)
        out = out.view(n, k, r, height, width)
        if self.gated:
            out = out * routing.gate_values[:, :, None, None, None]
        return out.sum(dim=1), routing

    def _resize_operators(self, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The resize matrices of every expert along one axis of length ``size``, cached.

        Returns ``up`` (E, S, 3 * size): for tap i in 0..2, columns [i*size, (i+1)*size) hold the
        bicubic upsampling matrix shifted by i - 1 rows (zero padding), and ``down`` (E, size, S):
        the bicubic resize back; S is the largest upsampled length, smaller ones are zero-padded.
        """
        key = (size, like.device, like.dtype)
        if key not in self._operators:
            eye = torch.eye(size, dtype=torch.float64)
            ups = [eye if e.scale == 1 else _resize_matrix(eye, scale_factor=e.scale) for e in self.experts]
            longest = max(u.shape[0] for u in ups)
            up = torch.zeros(self.num_experts, longest, 3 * size, dtype=torch.float64)
            down = torch.zeros(self.num_experts, size, longest, dtype=torch.float64)
            for e, u in enumerate(ups):
                length = u.shape[0]
                for tap in range(3):  # row y of tap i reads upsampled row y + i - 1
                    lo, hi = max(0, 1 - tap), min(length, length + 1 - tap)
                    up[e, lo:hi, tap * size:(tap + 1) * size] = u[lo + tap - 1:hi + tap - 1]
                eye_up = torch.eye(length, dtype=torch.float64)
                down[e, :, :length] = eye_up if length == size else _resize_matrix(eye_up, size=size)
            self._operators[key] = (up.to(like.device, like.dtype), down.to(like.device, like.dtype))
        return self._operators[key]


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
    ``routing_counts`` (E,) float, kept as tensors (reading them is the only host sync).
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
        self.aux_loss = None
        self.last_expert_index: Optional[torch.Tensor] = None
        self.routing_counts: Optional[torch.Tensor] = None

    def adapt_bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        """h (B', H, W, r) or (B, L, r) -> h + MoEConv(h), same shape."""
        if h.dim() == 4:
            image = h.permute(0, 3, 1, 2)
        elif h.dim() == 3:
            side = math.isqrt(h.shape[1])
            if side * side != h.shape[1]:
                raise ConfigError(f"Conv-LoRA views a (B, L, C) input as a square sqrt(L) x sqrt(L) map, "
                                  f"but L = {h.shape[1]} is not a square; pass a (B, H, W, C) input instead.")
            image = h.reshape(h.shape[0], side, side, h.shape[2]).permute(0, 3, 1, 2)
        else:
            raise ConfigError(f"Conv-LoRA expects a (B, H, W, C) or (B, L, C) input, got shape {tuple(h.shape)}.")
        delta, routing = self.moe(image)
        self.aux_loss = routing.aux_loss
        self.last_expert_index = routing.expert_index.detach()
        self.routing_counts = routing_counts(self.last_expert_index, self.moe.num_experts)
        return h + delta.permute(0, 2, 3, 1).reshape(h.shape)


def inject(model: nn.Module, config: ConvLoraConfig) -> None:
    """Wrap the ``qkv`` linear of every image-encoder block in a :class:`ConvLoRALinear`.

    ``implementation``: ``"fast"`` (this file, sync-free) or ``"official"`` (the per-expert
    dispatch loop of the authors' code, ``conv_lora_official.py``; same parameters, same results).
    """
    if config.implementation == "official":
        from convlora_lite.peft.conv_lora_official import OfficialConvLoRALinear as layer_type
    else:
        layer_type = ConvLoRALinear
    wrap_encoder_qkv(model, lambda qkv: layer_type(
        qkv, rank=config.rank, alpha=config.alpha, dropout=config.dropout, num_experts=config.num_experts,
        scales=config.scales, top_k=config.top_k, gated=config.gated, loss_coef=config.loss_coef))


METHOD = PeftMethod(
    name="conv_lora",
    paper="Zhong et al., Convolution Meets LoRA: Parameter Efficient Finetuning for Segment Anything Model, ICLR 2024",
    where="LoRA on the fused qkv projection of every image-encoder block, with a mixture of multi-scale "
          "convolution experts on the rank-r bottleneck",
    inject=inject,
    config=ConvLoraConfig,
)
