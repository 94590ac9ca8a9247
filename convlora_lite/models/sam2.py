"""SAM 2.1 (Ravi et al., 2024) from Meta's ``sam2`` package: the modules, built by name, and their image features.

``build_sam("sam2.1_hiera_tiny" | "_small" | "_base_plus" | "_large")`` (:mod:`convlora_lite.models.sam`) builds
the model here: Meta's ``build_sam2`` makes a ``SAM2Base`` from the package's own hydra config
(:class:`~convlora_lite.models.configs.Sam2Config`), with ``image_size`` set by a hydra override, and the weights
come through the project's checkpoint code (found, downloaded, checked and loaded like SAM's). The model stays
Meta's ``SAM2Base`` (its video memory modules included), so Meta's ``SAM2ImagePredictor`` takes it as it is;
:mod:`convlora_lite.models.segmenter_sam2` makes segmenters of it.

``sam2`` is an optional dependency (the ``sam2`` extra); importing it goes through :func:`import_build_sam2`, which
silences the deprecation warnings of hydra and omegaconf and says how to install it when it is missing.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.configs import Sam2Config

#: how to install Meta's ``sam2`` (a source distribution) as pure Python: no CUDA extension (image segmentation
#: does not use it), no build isolation (which would install a second torch just to build it). Torch and setuptools
#: must be installed first. The README, the Makefile and pyproject's ``sam2`` extra say the same.
SAM2_INSTALL = 'SAM2_BUILD_CUDA=0 pip install --no-build-isolation "sam2==1.1.0"'
#: the folder of the project's own SAM 2 configs (``micro_sam2``'s), in hydra's YAML as Meta's.
SAM2_CONFIG_DIR = Path(__file__).resolve().parent / "sam2_configs"


@contextmanager
def quiet_hydra():
    """Silence the deprecation, future and user warnings that hydra and omegaconf (which ``sam2`` builds its models
    with) print when imported or used: the project's outputs stay quiet."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(hydra|omegaconf)(\.|$)")
        yield


def import_build_sam2():
    """Meta's ``sam2.build_sam.build_sam2``, imported quietly; a :class:`ConfigError` saying how to install ``sam2``
    when it is missing."""
    with quiet_hydra():
        try:
            from sam2.build_sam import build_sam2
        except ImportError as err:
            raise ConfigError(f"The SAM 2.1 models need Meta's sam2 package ({err}). Install it with: "
                              f"{SAM2_INSTALL} (or pip install 'convlora_lite[sam2]' after that command).") from err
    return build_sam2


def sam2_from_config(cfg: Sam2Config, empty: bool = False) -> nn.Module:
    """Meta's ``SAM2Base`` of ``cfg`` at ``cfg.image_size``, in eval mode: randomly initialised by Meta's code, or with
    ``empty`` on the meta device (no memory allocated; for parameter accounting and for loading a checkpoint with
    ``assign=True``). Meta's four models come from ``sam2``'s ``build_sam2`` and its packaged config (its default
    post-processing settings included); ``micro_sam2`` from the project's own config (:func:`build_from_yaml`)."""
    build_sam2 = import_build_sam2()  # also for micro_sam2: its modules are sam2's
    overrides = [f"++model.image_size={cfg.image_size}"]

    def build(device: str) -> nn.Module:
        if cfg.config_package == "convlora_lite":
            return build_from_yaml(cfg.config_file, overrides, device)
        return build_sam2(cfg.config_file, None, device=device, hydra_overrides_extra=overrides)

    with quiet_hydra():
        if not empty:
            return build("cpu")
        from accelerate import init_empty_weights

        # parameters on the meta device, the rest (Hiera's drop-path schedule is read with .item()) on the CPU
        with torch.device("cpu"), init_empty_weights():
            return build("meta")


def build_from_yaml(config_file: str, overrides: list[str], device: str) -> nn.Module:
    """What ``build_sam2`` does, for a config shipped with the project (``convlora_lite/models/sam2_configs/``, which
    hydra's search path, set by ``sam2`` to its own package, does not reach): the YAML read by omegaconf, the
    ``++model.KEY=VALUE`` ``overrides`` applied, the model instantiated by hydra, moved to ``device``, in eval mode
    (random weights: checkpoints go through the project's checkpoint code)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.merge(OmegaConf.load(SAM2_CONFIG_DIR / config_file),
                             OmegaConf.from_dotlist([item.removeprefix("++") for item in overrides]))
    OmegaConf.resolve(config)
    return instantiate(config.model, _recursive_=True).to(device).eval()


def image_features(image_encoder: nn.Module, mask_decoder: nn.Module, no_mem_embed: Optional[torch.Tensor],
                   images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What SAM 2's mask decoder reads of ``images``, as ``SAM2ImagePredictor.set_image_batch`` computes it: Hiera and
    the FPN neck, the decoder's 1x1 projections of the two finest levels, and the no-memory embedding added to the
    coarsest (an image has no video memory).

    Args:
        image_encoder: SAM 2's ``ImageEncoder`` (Hiera trunk and FPN neck, its coarsest level dropped).
        mask_decoder: SAM 2's ``MaskDecoder`` (its ``conv_s0`` and ``conv_s1``).
        no_mem_embed: ``(1, 1, C)``, or ``None`` for a model that does not add it.
        images: ``(B, 3, S, S)`` ImageNet-normalised.

    Returns:
        ``(embedding (B, C, S/16, S/16), [feat_s0 (B, C/8, S/4, S/4), feat_s1 (B, C/4, S/8, S/8)])``, C = 256.
    """
    fpn = image_encoder(images)["backbone_fpn"]  # strides 4, 8, 16
    embedding = fpn[-1] if no_mem_embed is None else fpn[-1] + no_mem_embed.reshape(1, -1, 1, 1)
    return embedding, [mask_decoder.conv_s0(fpn[0]), mask_decoder.conv_s1(fpn[1])]
