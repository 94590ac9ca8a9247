"""The official Conv-LoRA forward pass, re-implemented faithfully: the test oracle and the
benchmark baseline for the fast layer in ``conv_lora.py``.

It follows the structure of AutoGluon's ``ConvLoRALinear`` / ``MoEGate`` / ``SparseDispatcher``
(itself from Shazeer et al.'s mixture-of-experts code):

* the gate pools with ``AdaptiveAvgPool2d``, evaluates the normal CDF through a
  ``torch.distributions.Normal`` and finds the top-k thresholds by gathering from the flattened
  top values;
* a ``SparseDispatcher`` groups the samples by expert with ``nonzero``/``sort``/``split`` and
  ``.tolist()`` (a device-to-host sync in every adapted layer);
* a Python loop runs each expert that received samples;
* the outputs are combined as ``log(index_add(exp(out) [* gate]))``.

One departure, shared with the fast layer: in evaluation its top-k orders equal logits by expert
(``moe_gate.top_experts``), where ``torch.topk`` leaves their order unspecified.

The parameters are those of :class:`~convlora_lite.peft.conv_lora.ConvLoRALinear` (same names),
so the two load each other's state dicts. Select it with
``apply_peft(model, "conv_lora", implementation="official")``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions.normal import Normal

from convlora_lite.peft.conv_lora import ConvLoRALinear, MoEConv
from convlora_lite.peft.moe_gate import NOISE_EPSILON, Routing, top_experts


class SparseDispatcher:
    """Groups a batch by expert and stitches the experts' outputs back (Shazeer et al., 2017).

    Args:
        num_experts: E.
        gates: (N, E), non-zero where a sample is routed to an expert.
    """

    def __init__(self, num_experts: int, gates: torch.Tensor):
        self._gates = gates
        self._num_experts = num_experts
        sorted_experts, index_sorted_experts = torch.nonzero(gates).sort(0)
        _, self._expert_index = sorted_experts.split(1, dim=1)
        self._batch_index = torch.nonzero(gates)[index_sorted_experts[:, 1], 0]
        self._part_sizes = (gates > 0).sum(0).tolist()  # the host sync
        gates_exp = gates[self._batch_index.flatten()]
        self._nonzero_gates = torch.gather(gates_exp, 1, self._expert_index)

    def dispatch(self, inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, ...) -> one (N_e, ...) tensor per expert with the samples routed to it."""
        return torch.split(inp[self._batch_index].squeeze(1), self._part_sizes, dim=0)

    def combine(self, expert_out: list[torch.Tensor], multiply_by_gates: bool = True) -> torch.Tensor:
        """Per-expert (N_e, C, H, W) outputs -> (N, C, H, W) = log(sum_e [gate_e *] exp(out_e))."""
        stitched = torch.cat(expert_out, 0).exp()
        if multiply_by_gates:
            stitched = stitched.mul(self._nonzero_gates.unsqueeze(-1).unsqueeze(-1))
        zeros = torch.zeros(self._gates.size(0), *expert_out[-1].shape[1:], requires_grad=True, device=stitched.device)
        combined = zeros.index_add(0, self._batch_index, stitched.float())
        combined[combined == 0] = np.finfo(float).eps
        return combined.log()


class OfficialMoEConv(MoEConv):
    """:class:`~convlora_lite.peft.conv_lora.MoEConv` computed the official way (see the module
    docstring). Same parameters, same results, slower."""

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """h (N, H, W, r), channels last as the fast layer takes it -> (delta (N, H, W, r), Routing with its
        ``aux_loss`` computed here, per layer, as the official code does)."""
        h = h.permute(0, 3, 1, 2)  # the official experts and gate see (N, r, H, W)
        gates, aux_loss = self._official_gate(h)
        dispatcher = SparseDispatcher(self.num_experts, gates)
        expert_inputs = dispatcher.dispatch(h)
        expert_outputs = [expert(expert_inputs[i]) for i, expert in enumerate(self.experts)
                          if len(expert_inputs[i]) > 0]
        delta = dispatcher.combine(expert_outputs, multiply_by_gates=self.gated)
        expert_index = top_experts(gates, self.gate.top_k)
        gate_values = gates.gather(1, expert_index)
        return delta.permute(0, 2, 3, 1), Routing(expert_index, gate_values, aux_loss.reshape(()))

    def _official_gate(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AutoGluon's ``MoEGate.forward``: feats (N, r, H, W) -> gates (N, E), loss."""
        gate, k, num_experts = self.gate, self.gate.top_k, self.num_experts
        feats_s = F.adaptive_avg_pool2d(feats, (1, 1)).view(feats.shape[0], -1)
        clean_logits = feats_s @ gate.w_gate
        if self.training:
            noise_stddev = F.softplus(feats_s @ gate.w_noise) + NOISE_EPSILON
            noisy_logits = clean_logits + torch.randn_like(clean_logits) * noise_stddev
            logits = noisy_logits
        else:
            logits = clean_logits
        n = min(k + 1, num_experts)  # evaluation: equal logits in the experts' order, as the fast gate
        top_indices = logits.topk(n, dim=1).indices if self.training else top_experts(logits, n)
        top_logits = logits.gather(1, top_indices)
        top_k_gates = F.softmax(top_logits[:, :k], dim=1)
        # top_k_gates.float(): under CPU autocast the softmax stays bf16 (CUDA autocast runs it in fp32)
        gates = torch.zeros_like(logits, requires_grad=True).float().scatter(1, top_indices[:, :k], top_k_gates.float())
        if self.training and k < num_experts:
            load = self._prob_in_top_k(clean_logits, noisy_logits, noise_stddev, top_logits).sum(0)
        else:
            load = (gates > 0).sum(0)
        importance = gates.sum(0)
        loss = (self._cv_squared(importance) + self._cv_squared(load)) * gate.loss_coef
        return gates, loss

    @staticmethod
    def _cv_squared(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return torch.tensor([0], device=x.device, dtype=x.dtype)
        return x.float().var() / (x.float().mean() ** 2 + 1e-10)

    def _prob_in_top_k(self, clean_values, noisy_values, noise_stddev, noisy_top_values) -> torch.Tensor:
        k = self.gate.top_k
        batch, m = clean_values.size(0), noisy_top_values.size(1)
        top_values_flat = noisy_top_values.flatten()
        threshold_positions_if_in = torch.arange(batch, device=clean_values.device) * m + k
        threshold_if_in = torch.unsqueeze(torch.gather(top_values_flat, 0, threshold_positions_if_in), 1)
        is_in = torch.gt(noisy_values, threshold_if_in)
        threshold_if_out = torch.unsqueeze(torch.gather(top_values_flat, 0, threshold_positions_if_in - 1), 1)
        normal = Normal(torch.zeros(1, device=clean_values.device), torch.ones(1, device=clean_values.device))
        prob_if_in = normal.cdf((clean_values - threshold_if_in) / noise_stddev)
        prob_if_out = normal.cdf((clean_values - threshold_if_out) / noise_stddev)
        return torch.where(is_in, prob_if_in, prob_if_out)


class OfficialConvLoRALinear(ConvLoRALinear):
    """:class:`~convlora_lite.peft.conv_lora.ConvLoRALinear` with the official MoE computation."""

    moe_type = OfficialMoEConv
