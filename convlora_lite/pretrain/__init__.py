"""Make the bundled micro models: ``python -m convlora_lite.pretrain micro_sam|micro_mae [options]``.

- :mod:`.corpus`: the generated scenes (many textured, overlapping objects; instance masks).
- :mod:`.sam_pretrain`: SAM-style promptable pretraining of ``micro_sam``.
- :mod:`.mae_pretrain`: masked image modelling of an encoder of the same size, ``micro_mae``.
"""
from convlora_lite.pretrain.corpus import Scene, generate_scene
from convlora_lite.pretrain.mae_pretrain import MaePretrainConfig, pretrain_mae
from convlora_lite.pretrain.sam_pretrain import SamPretrainConfig, evaluate_zero_shot, pretrain_sam

__all__ = ["Scene", "generate_scene", "SamPretrainConfig", "pretrain_sam", "evaluate_zero_shot",
           "MaePretrainConfig", "pretrain_mae"]
