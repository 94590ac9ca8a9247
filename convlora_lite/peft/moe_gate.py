"""The router of Conv-LoRA's mixture of experts: Shazeer et al.'s (2017) noisy top-k gate and its
load-balancing loss, free of host synchronisation and of data-dependent shapes (``docs/performance.md``),
in float32 whatever the autocast policy (``docs/precision.md``).

The gate returns a :class:`Routing` per layer; the load-balancing losses of all layers are then computed
in one batch by :func:`load_balancing_loss` (the formula's small operators are dispatched once per step,
not once per layer).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Whether the code runs under ``torch.compile``'s tracing (torch 2.3 and later; before, always False: the
#: cached segment ids below are then traced through, with a warning).
is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)

#: The noise floor added to the learned noise scale (official ``noise_epsilon``).
NOISE_EPSILON = 1e-2


class BalanceInputs(NamedTuple):
    """What the load-balancing loss needs of one gate's forward on N samples among E experts (float32): the
    loss of all layers is then computed in one batch (:func:`load_balancing_loss`), which recomputes the noisy
    logits and their top values from these, so that the routing's own top-k needs no backward.

    Attributes:
        clean_logits: (N, E), the pooled features times ``w_gate`` (autograd-connected).
        top_index: (N, min(k + 1, E)) long, the experts of the k + 1 best routing logits, best first.
        noise: (N, E), the standard normal noise drawn in training, None in evaluation.
        noise_std: (N, E), its learned scale (autograd-connected), None in evaluation.
    """

    clean_logits: torch.Tensor
    top_index: torch.Tensor
    noise: Optional[torch.Tensor] = None
    noise_std: Optional[torch.Tensor] = None


class Routing(NamedTuple):
    """The gate's decision for a batch of N samples routed among E experts.

    Attributes:
        expert_index: (N, k) long, the chosen experts, best first.
        gate_values: (N, k) softmax over the k chosen logits; None when k = 1 (a softmax over one logit is
            identically 1).
        aux_loss: 0-dim load-balancing loss, already multiplied by ``loss_coef``, or None when it is
            left to be computed from ``balance`` with the other layers' (:func:`load_balancing_loss`).
        balance: the gate's :class:`BalanceInputs` (None when ``aux_loss`` is given).
    """

    expert_index: torch.Tensor
    gate_values: Optional[torch.Tensor]
    aux_loss: Optional[torch.Tensor] = None
    balance: Optional[BalanceInputs] = None


def _float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 (a product under autocast is fp16/bf16); no operator when it already is."""
    return x if x.dtype == torch.float32 else x.float()


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation var / mean^2 (unbiased variance, eps 1e-10) along the last dimension
    of a float tensor (..., E): shape (...); 0 where E = 1."""
    if x.shape[-1] == 1:
        return x.new_zeros(x.shape[:-1])
    return x.var(dim=-1) / (x.mean(dim=-1) ** 2 + 1e-10)


def _segment_ids(counts: tuple, device: torch.device) -> torch.Tensor:
    """(sum(counts),) long: row i of a concatenation of blocks of ``counts`` rows holds its block's number; made
    once per ``counts`` and device (a copy to the device each step would wait for it), or traced as a constant
    under ``torch.compile``."""
    if is_compiling():
        return _make_segment_ids(counts, device)
    return _cached_segment_ids(counts, device)


def _make_segment_ids(counts: tuple, device: torch.device) -> torch.Tensor:
    return torch.tensor([block for block, count in enumerate(counts) for _ in range(count)], device="cpu").to(device)


_cached_segment_ids = lru_cache(maxsize=64)(_make_segment_ids)


def top_experts(logits: torch.Tensor, n: int) -> torch.Tensor:
    """(N, n) long: the experts of the n best of each row of (N, E) logits, best first, equal logits in the order
    of their experts. ``torch.topk`` leaves the order of equal values unspecified (on the CPU it takes a higher
    index first, ONNX's ``TopK`` the lower, CUDA its own), and equal logits are common in evaluation, where no
    noise is drawn: an untrained gate (all 0), one a few Adam steps from zero (entries of +-lr). One order makes a
    run route alike on every device and in its ONNX export (``convlora export --format onnx``): a stable sort, or,
    in an export (the exporter has no stable sort), each expert's rank counted (the experts ahead of it: better
    ones, and equal ones of a lower index; E x E comparisons per sample), distinct, so the graph's top-k is exact.
    (A training step keeps ``topk``, fewer operators: its noise leaves no ties.)"""
    if not torch.onnx.is_in_onnx_export():
        return logits.sort(dim=1, descending=True, stable=True).indices[:, :n]
    order = torch.arange(logits.shape[1], device=logits.device)
    rows, cols = logits[:, :, None], logits[:, None, :]  # expert i of a row against expert j
    ahead = (cols > rows) | ((cols == rows) & (order[None, :] < order[:, None]))  # (N, E, E): j before i
    return ahead.sum(dim=2).topk(n, dim=1, largest=False).indices


def load_balancing_loss(balances: Sequence[BalanceInputs], top_k: int, loss_coef: float) -> torch.Tensor:
    """The sum over gates of Shazeer et al.'s load-balancing loss,
    ``loss_coef * (cv_squared(importance) + cv_squared(load))`` per gate, every gate of the same ``top_k`` and
    number of experts E and all in training or all in evaluation, computed in one batch (0-dim float32).

    ``importance`` (E,) sums each sample's gate values (the softmax over its k best logits, scattered to
    its experts); ``load`` (E,) sums, in training with k < E, each expert's probability of being in the top k
    under fresh noise (the normal CDF of its clean logit against the k-th best other noisy logit), and counts the
    samples routed to each expert otherwise. One batch for all layers instead of one per layer: the
    formula's dozens of small operators and their backward are dispatched once per step
    (``docs/performance.md``)."""
    k = top_k
    rows = tuple(b.clean_logits.shape[0] for b in balances)
    segments = _segment_ids(rows, balances[0].clean_logits.device)
    clean = torch.cat([b.clean_logits for b in balances])
    top_index = torch.cat([b.top_index for b in balances])
    noisy = balances[0].noise is not None
    if noisy:
        noise_std = torch.cat([b.noise_std for b in balances])
        logits = torch.addcmul(clean, torch.cat([b.noise for b in balances]), noise_std)
    else:
        logits = clean
    top = logits.gather(1, top_index)  # (sum N, k + 1) the best logits, as the gates saw them
    # the gate values: a softmax over the k best logits, identically 1 (no gradient) when k = 1
    gates = clean.new_zeros(clean.shape).scatter(1, top_index[:, :k], top[:, :k].softmax(dim=1) if k > 1 else 1.0)
    importance = clean.new_zeros(len(rows), clean.shape[1]).index_add(0, segments, gates)
    if noisy and k < clean.shape[1]:
        threshold_if_in, threshold_if_out = top[:, k:k + 1], top[:, k - 1:k]
        in_top_k = torch.where(logits > threshold_if_in, torch.special.ndtr((clean - threshold_if_in) / noise_std),
                               torch.special.ndtr((clean - threshold_if_out) / noise_std))
        load = clean.new_zeros(len(rows), clean.shape[1]).index_add(0, segments, in_top_k)
    else:
        load = clean.new_zeros(len(rows), clean.shape[1]).index_add(0, segments, (gates > 0).float())
    return loss_coef * (cv_squared(importance) + cv_squared(load)).sum()


class NoisyTopKGate(nn.Module):
    """Noisy top-k gating with a load-balancing loss (Shazeer et al., 2017), sync-free.

    Args:
        dim: r, the size of the pooled feature.
        num_experts: E.
        top_k: k, experts chosen per sample.
        loss_coef: weight of the auxiliary loss (official 0.01).

    ``w_gate`` and ``w_noise`` (dim x E) start at zero, so the first routing decisions are made by
    the noise (training) or, among equal logits, by the experts' order (evaluation: :func:`top_experts`).
    """

    def __init__(self, dim: int, num_experts: int, top_k: int = 1, loss_coef: float = 0.01):
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.loss_coef = loss_coef
        self.w_gate = nn.Parameter(torch.zeros(dim, num_experts))
        self.w_noise = nn.Parameter(torch.zeros(dim, num_experts))

    def forward(self, pooled: torch.Tensor) -> Routing:
        """Route N samples given their pooled features (N, dim); the load-balancing loss is left to
        :func:`load_balancing_loss` (``Routing.balance``), so that all layers' are computed in one batch.

        The routing is computed in float32 whatever the precision of ``pooled`` and of the matmuls
        under autocast (fp16/bf16 on CUDA): the logits are cast up right after their product, so the
        noise, the top-k, the softmax and the losses meet only float32 tensors, in training as in
        evaluation, on CUDA's autocast policy as on the CPU's (``docs/precision.md``)."""
        k, num_experts = self.top_k, self.num_experts
        clean_logits = _float32(torch.mm(pooled, self.w_gate))
        if self.training:
            noise_std = F.softplus(_float32(torch.mm(pooled, self.w_noise))) + NOISE_EPSILON
            noise = torch.randn_like(clean_logits)
            logits = torch.addcmul(clean_logits, noise, noise_std)
        else:
            logits, noise, noise_std = clean_logits, None, None
        # k + 1 experts: the (k+1)-th logit is the threshold of the smooth load estimate; the values are
        # recomputed by the loss, so this top-k has no backward. Evaluation orders equal logits by expert.
        n = min(k + 1, num_experts)
        top_index = logits.topk(n, dim=1).indices if self.training else top_experts(logits, n)
        expert_index = top_index[:, :k]
        gate_values = logits.gather(1, expert_index).softmax(dim=1) if k > 1 else None
        return Routing(expert_index, gate_values, balance=BalanceInputs(clean_logits, top_index, noise, noise_std))

    def aux_loss(self, balance: BalanceInputs) -> torch.Tensor:
        """This gate's load-balancing loss of one forward (0-dim float32)."""
        return load_balancing_loss([balance], self.top_k, self.loss_coef)


def routing_counts(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """(E,) float: how many samples chose each expert, from an (N, k) index (no host sync)."""
    flat = expert_index.reshape(-1)
    return torch.zeros(num_experts, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float))
