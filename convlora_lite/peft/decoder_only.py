"""Decoder-only fine-tuning: the image encoder stays frozen and nothing is injected.

Only the mask decoder trains (without its IoU head), which is the policy ``apply_peft`` applies
to every method; this is the paper's ``decoder-only`` row (3.51 M trainable on ViT-H).
"""
from convlora_lite.peft.base import PeftMethod


def inject(model, config=None) -> None:
    """Nothing to inject: the mask decoder is made trainable by ``apply_peft``."""
    return None


METHOD = PeftMethod(
    name="decoder_only",
    paper="Kirillov et al., Segment Anything, ICCV 2023 (mask decoder fine-tuned, encoder frozen)",
    where="nowhere in the encoder; only the mask decoder (minus its IoU head) trains",
    inject=inject,
)
