"""Hugging Face SAM folders: ``transformers``' ``SamModel`` as ``save_pretrained`` writes it, read as Meta's SAM.

Such a folder (a download of ``facebook/sam-vit-base``, ``-large`` or ``-huge``) holds ``config.json``
(``"model_type": "sam"``) and ``model.safetensors`` (older snapshots: ``pytorch_model.bin``, read with
``weights_only``). :func:`hf_sam_weights` checks the folder's config against the model being built and
returns its weights file; :func:`hf_to_meta` renames a ``SamModel`` state dict to ``segment_anything``'s
names. The two hold the same tensors in the same layouts (the encoder's ``qkv`` is fused in both, the
position tables are ``pos_embed`` ``(1, g, g, C)`` and ``rel_pos_h/w`` ``(2w-1, C/heads)`` in both, the
prompt encoder's random Fourier matrix is ``(2, 128)`` in both), so the conversion renames and checks
that every tensor is used exactly once. Its one twin is that matrix: ``transformers`` ties
``shared_image_embedding.positional_embedding`` to ``prompt_encoder.shared_embedding.positional_embedding``
and a file holds either or both; Meta's ``pe_layer`` is one tensor. ``transformers`` reads the
decoder's four block layer norms with eps 1e-6 where Meta's ``TwoWayTransformer`` uses 1e-5; the weights
are Meta's, so the model built here keeps Meta's eps.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch

from convlora_lite.errors import CheckpointError
from convlora_lite.models.configs import MODEL_CONFIGS, SamConfig

#: the weights file of a folder, in the order they are looked for.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: the ``config.json`` fields checked against the model built (the decoder's heads are in no tensor's shape):
#: (section, field, transformers' default, the :class:`SamConfig` attribute it must equal). A field absent from the
#: file has transformers' default (``save_pretrained`` may write only the values that differ from them).
CHECKED_FIELDS = (
    ("vision_config", "hidden_size", 768, "embed_dim"),
    ("vision_config", "num_hidden_layers", 12, "depth"),
    ("vision_config", "num_attention_heads", 12, "num_heads"),
    ("vision_config", "global_attn_indexes", [2, 5, 8, 11], "global_attn_indexes"),
    ("vision_config", "window_size", 14, "window_size"),
    ("vision_config", "patch_size", 16, "patch_size"),
    ("mask_decoder_config", "num_attention_heads", 8, "decoder_num_heads"),
)

PE = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_WB = r"(weight|bias)"
_MLP = r"mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)"  # Meta's 3-layer MLPs
#: (transformers name, Meta name): a full-match pattern and its ``Match.expand`` template (or a function of the
#: match). Disjoint patterns; every tensor of a ``SamModel`` matches one.
RENAMES: tuple[tuple[re.Pattern, str | Callable[[re.Match], str]], ...] = tuple(
    (re.compile(pattern), meta) for pattern, meta in (
        # image encoder
        (r"vision_encoder\.pos_embed", "image_encoder.pos_embed"),
        (rf"vision_encoder\.patch_embed\.projection\.{_WB}", r"image_encoder.patch_embed.proj.\1"),
        (rf"vision_encoder\.layers\.(\d+)\.layer_norm([12])\.{_WB}", r"image_encoder.blocks.\1.norm\2.\3"),
        (r"vision_encoder\.layers\.(\d+)\.(attn\.(?:qkv|proj)\.(?:weight|bias)|attn\.rel_pos_[hw]"
         r"|mlp\.lin[12]\.(?:weight|bias))", r"image_encoder.blocks.\1.\2"),
        (r"vision_encoder\.neck\.conv1\.weight", "image_encoder.neck.0.weight"),
        (rf"vision_encoder\.neck\.layer_norm1\.{_WB}", r"image_encoder.neck.1.\1"),
        (r"vision_encoder\.neck\.conv2\.weight", "image_encoder.neck.2.weight"),
        (rf"vision_encoder\.neck\.layer_norm2\.{_WB}", r"image_encoder.neck.3.\1"),
        # prompt encoder
        (r"(?:shared_image_embedding|prompt_encoder\.shared_embedding)\.positional_embedding", PE),
        (r"prompt_encoder\.point_embed\.(\d+)\.weight", r"prompt_encoder.point_embeddings.\1.weight"),
        (r"prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight", r"prompt_encoder.\1.weight"),
        (rf"prompt_encoder\.mask_embed\.conv1\.{_WB}", r"prompt_encoder.mask_downscaling.0.\1"),
        (rf"prompt_encoder\.mask_embed\.layer_norm1\.{_WB}", r"prompt_encoder.mask_downscaling.1.\1"),
        (rf"prompt_encoder\.mask_embed\.conv2\.{_WB}", r"prompt_encoder.mask_downscaling.3.\1"),
        (rf"prompt_encoder\.mask_embed\.layer_norm2\.{_WB}", r"prompt_encoder.mask_downscaling.4.\1"),
        (rf"prompt_encoder\.mask_embed\.conv3\.{_WB}", r"prompt_encoder.mask_downscaling.6.\1"),
        # mask decoder
        (r"mask_decoder\.(iou_token|mask_tokens)\.weight", r"mask_decoder.\1.weight"),
        (r"mask_decoder\.transformer\.(layers\.\d+\.(?:self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
         r"|final_attn_token_to_image)\.((?:q|k|v|out)_proj\.(?:weight|bias))", r"mask_decoder.transformer.\1.\2"),
        (rf"mask_decoder\.transformer\.layers\.(\d+)\.layer_norm([1-4])\.{_WB}",
         r"mask_decoder.transformer.layers.\1.norm\2.\3"),
        (r"mask_decoder\.transformer\.(layers\.\d+\.mlp\.lin[12]\.(?:weight|bias))", r"mask_decoder.transformer.\1"),
        (rf"mask_decoder\.transformer\.layer_norm_final_attn\.{_WB}", r"mask_decoder.transformer.norm_final_attn.\1"),
        (rf"mask_decoder\.upscale_conv1\.{_WB}", r"mask_decoder.output_upscaling.0.\1"),
        (rf"mask_decoder\.upscale_layer_norm\.{_WB}", r"mask_decoder.output_upscaling.1.\1"),
        (rf"mask_decoder\.upscale_conv2\.{_WB}", r"mask_decoder.output_upscaling.3.\1"),
        (rf"{_MLP}\.proj_in\.{_WB}", r"mask_decoder.\1.layers.0.\2"),
        (rf"{_MLP}\.layers\.(\d+)\.{_WB}", lambda m: f"mask_decoder.{m[1]}.layers.{int(m[2]) + 1}.{m[3]}"),
        (rf"{_MLP}\.proj_out\.{_WB}", r"mask_decoder.\1.layers.2.\2"),
    )
)


def hf_sam_weights(folder, cfg: SamConfig) -> Path:
    """The weights file of the Hugging Face SAM folder ``folder``, after checking that its ``config.json`` describes
    ``cfg``'s model: a :class:`CheckpointError` saying what to pass for a folder without ``config.json``, of
    another model type, of another SAM size (``--model``) or without a weights file."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} is a folder without config.json. Pass a checkpoint file (.pth or "
                              ".safetensors) or a Hugging Face SAM folder (config.json + model.safetensors, e.g. a "
                              "download of facebook/sam-vit-base).")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_file} is not readable JSON ({err}); download it again.") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "sam":
        raise CheckpointError(f"{folder} holds a Hugging Face model of type {model_type!r}, not SAM (model_type "
                              "'sam'). Pass a SAM folder such as a download of facebook/sam-vit-base, "
                              "-large or -huge, or a Meta checkpoint file.")
    sections = {section: config.get(section) if isinstance(config.get(section), dict) else {}
                for section, *_ in CHECKED_FIELDS}
    values = {(section, name): sections[section].get(name, default) for section, name, default, _ in CHECKED_FIELDS}
    expected = {(section, name): list(value) if isinstance(value := getattr(cfg, attr), tuple) else value
                for section, name, _, attr in CHECKED_FIELDS}
    size = values["vision_config", "hidden_size"], values["vision_config", "num_hidden_layers"]
    holds = f"SAM with a vision encoder of hidden size {size[0]} and {size[1]} layers"
    if size != (cfg.embed_dim, cfg.depth):
        match = [c.name for c in MODEL_CONFIGS.values() if (c.embed_dim, c.depth) == size]
        raise CheckpointError(f"{folder} holds {holds}" + (
            f" ({match[0]}), not {cfg.name}: pass --model {match[0]} (build_sam({match[0]!r}, ...))." if match else
            f", which is none of the models this project builds ({', '.join(MODEL_CONFIGS)}); pass a folder of "
            "facebook/sam-vit-base, -large or -huge."))
    wrong = [f"{section}.{name} is {values[section, name]!r}, {cfg.name} has {expected[section, name]!r}"
             for section, name, _, _ in CHECKED_FIELDS if values[section, name] != expected[section, name]]
    if wrong:
        raise CheckpointError(f"{folder} holds {holds} but not {cfg.name}'s architecture ({'; '.join(wrong)}); "
                              "pass a folder of facebook/sam-vit-base, -large or -huge.")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} has config.json but no weights file ({' or '.join(WEIGHT_FILES)}); download "
                          "model.safetensors into it too.")


def is_hf_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is named as ``transformers``' ``SamModel`` names it (its encoder is ``vision_encoder``)."""
    return any(key.startswith("vision_encoder.") for key in state)


def meta_name(key: str) -> str | None:
    """The ``segment_anything`` name of the ``SamModel`` tensor ``key``; ``None`` for a name SAM does not have."""
    for pattern, meta in RENAMES:
        found = pattern.fullmatch(key)
        if found:
            return meta(found) if callable(meta) else found.expand(meta)
    return None


def hf_to_meta(state: dict[str, torch.Tensor], path) -> dict[str, torch.Tensor]:
    """``state`` (a ``SamModel`` state dict) under Meta's names, the same tensors; every tensor used exactly once
    (the tied positional matrix may come twice, equal), else a :class:`CheckpointError` naming ``path``. Shapes are
    checked where the state dict is loaded into the model (``build_sam``'s strict load)."""
    meta, source = {}, {}
    unknown = [key for key in state if meta_name(key) is None]
    if unknown:
        raise CheckpointError(f"{path} holds tensors a Hugging Face SamModel does not have ({', '.join(unknown[:5])}"
                              f"{' ...' if len(unknown) > 5 else ''}). Pass the folder of a SAM checkpoint "
                              "(facebook/sam-vit-base, -large or -huge) as transformers writes it.")
    for key, tensor in state.items():
        name = meta_name(key)
        if name in meta and not (name == PE and torch.equal(meta[name], tensor)):
            raise CheckpointError(f"{path}: {source[name]} and {key} would both be {name}, one tensor in Meta's SAM "
                                  "(the positional matrix only if the two are equal). Pass an unmodified SAM "
                                  "checkpoint (facebook/sam-vit-base, -large or -huge).")
        meta[name], source[name] = tensor, key
    return meta
