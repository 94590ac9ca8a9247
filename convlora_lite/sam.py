"""Build SAM (Kirillov et al., 2023) from Meta's ``segment-anything`` classes.

``build_sam(name)`` knows the three official backbones (``vit_b``, ``vit_l``, ``vit_h``), the
bundled micro model (``micro_sam``) and a random tiny model for tests (``test_tiny``). Every
model is a ``segment_anything.modeling.Sam`` with the same component classes, so everything
that works on one works on the others.

Checkpoints: ``checkpoint="auto"`` fetches Meta's official weights once (sha256-verified) into
the cache folder, uses the bundled micro model's file, or random weights for ``test_tiny``.
A model built at another ``image_size`` than its checkpoint gets the checkpoint's absolute
position embedding resized bicubically over the token grid and the global-attention blocks'
relative-position tables resized linearly (as SAM/ViTDet do when they change resolution).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .download import download_file
from .errors import CheckpointError, ConfigError, DownloadError

_IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
_IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """The sizes of one SAM variant (defaults are SAM's own)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    description: str = ""
    checkpoint_url: str | None = None
    checkpoint_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def grid_size(self) -> int:
        """Side of the encoder's token grid (64 for SAM at 1024 px)."""
        return self.image_size // self.patch_size


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# The sha256 of Meta's three checkpoints, as pinned (identically) by several public projects, e.g.
# computational-cell-analytics/micro-sam (micro_sam/util.py, ``_CHECKSUMS``) and the 3D Slicer
# SegmentWithSAM extension (``downloadFileIntoCache(..., "SHA256:...")``).

#: Every model ``build_sam`` can build.
MODEL_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig("vit_b", 768, 12, 12, (2, 5, 8, 11), description="SAM ViT-B (93.7 M parameters)",
                       checkpoint_url=_SAM_URL + "sam_vit_b_01ec64.pth",
                       checkpoint_sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "vit_l": SamConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23), description="SAM ViT-L (312.3 M parameters)",
                       checkpoint_url=_SAM_URL + "sam_vit_l_0b3195.pth",
                       checkpoint_sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_h": SamConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31), description="SAM ViT-H (641.1 M parameters)",
                       checkpoint_url=_SAM_URL + "sam_vit_h_4b8939.pth",
                       checkpoint_sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "micro_sam": SamConfig("micro_sam", embed_dim=192, depth=6, num_heads=3, global_attn_indexes=(2, 5),
                           image_size=256, patch_size=16, window_size=6, prompt_embed_dim=128,
                           decoder_depth=2, decoder_mlp_dim=512, decoder_num_heads=4, iou_head_hidden_dim=128,
                           mask_in_chans=8, description="bundled micro SAM, pretrained offline by "
                           "`python -m convlora_lite.pretrain micro_sam` (256 px, 16x16 tokens, 6x6 windows)"),
    "test_tiny": SamConfig("test_tiny", embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,),
                           image_size=64, patch_size=8, window_size=3, prompt_embed_dim=32,
                           decoder_depth=2, decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32,
                           mask_in_chans=4, description="random tiny SAM for tests (64 px, 8x8 tokens, 3x3 windows)"),
}


def get_config(name: str) -> SamConfig:
    """The :class:`SamConfig` called ``name``; a clear error for an unknown name."""
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_CONFIGS)}.")
    return MODEL_CONFIGS[name]


def sam_from_config(cfg: SamConfig) -> Sam:
    """A randomly initialised ``Sam`` with the sizes of ``cfg`` (in eval mode)."""
    grid = cfg.grid_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=4,
            out_chans=cfg.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=list(_IMAGENET_MEAN_255),
        pixel_std=list(_IMAGENET_STD_255),
    )
    return sam.eval()


#: model name -> the checkpoint file bundled in ``convlora_lite/assets`` (used by ``checkpoint="auto"``).
BUNDLED_CHECKPOINTS = {"micro_sam": "micro_sam.safetensors"}
_ASSETS = Path(__file__).resolve().parent / "assets"


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloaded checkpoints live: ``cache_dir``, else ``$CONVLORA_CACHE``, else
    ``~/.cache/convlora_lite``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CONVLORA_CACHE") or Path.home() / ".cache" / "convlora_lite").expanduser()


def official_checkpoint(cfg: SamConfig, cache_dir=None, base_url: str | None = None) -> Path:
    """The path of ``cfg``'s official checkpoint, downloaded first if it is not in the cache.

    The file comes from ``base_url`` + file name when given, else ``$CONVLORA_SAM_BASE_URL`` +
    file name, else Meta's URL, and is verified against ``cfg.checkpoint_sha256``. A file already
    in the cache is trusted (downloads are verified before their atomic rename).
    """
    file_name = cfg.checkpoint_url.rsplit("/", 1)[-1]
    folder = cache_folder(cache_dir)
    dest = folder / file_name
    if dest.is_file():
        return dest
    base = base_url or os.environ.get("CONVLORA_SAM_BASE_URL")
    url = base.rstrip("/") + "/" + file_name if base else cfg.checkpoint_url
    try:
        return download_file(url, dest, sha256=cfg.checkpoint_sha256, desc=file_name)
    except DownloadError as err:
        raise DownloadError(
            f"Could not get the {cfg.name} checkpoint: {err}\nThe file {file_name} (from {url}) belongs in "
            f"the folder {folder.resolve()}; alternatively pass checkpoint='/path/to/{file_name}' or set "
            f"CONVLORA_SAM_BASE_URL to a mirror that holds it."
        ) from err


def resolve_checkpoint(cfg: SamConfig, checkpoint, cache_dir=None, base_url: str | None = None) -> Path | None:
    """The file ``build_sam`` loads for ``checkpoint`` (``None`` means random weights).

    ``"auto"``: the official file for vit_b/l/h (downloaded when needed), the bundled file for
    the micro model, nothing (random weights) for ``test_tiny``. Anything else is a path.
    """
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and checkpoint == "auto":
        if cfg.checkpoint_url is not None:
            return official_checkpoint(cfg, cache_dir, base_url)
        if cfg.name in BUNDLED_CHECKPOINTS:
            path = _ASSETS / BUNDLED_CHECKPOINTS[cfg.name]
            if not path.is_file():
                raise CheckpointError(
                    f"The bundled {cfg.name} checkpoint {path} is missing. Create it with "
                    f"`python -m convlora_lite.pretrain {cfg.name}`, or pass checkpoint=None for random weights."
                )
            return path
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist. Check the path, or pass checkpoint='auto'.")
    return path


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``d state dict (``.pth``/``.pt``),
    floating point ones as float32, on the CPU."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure means the same thing to the user
        raise CheckpointError(
            f"{path} is not a readable checkpoint (reading it raised {type(err).__name__}). "
            "It may be truncated or corrupt: delete it and download it again, or pass another file."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a SAM state dict (a mapping of names to tensors). "
                              "Pass a file saved with torch.save(sam.state_dict()) or safetensors.")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def identify_state_dict(state: dict[str, torch.Tensor]) -> tuple[str | None, str]:
    """Guess the model a SAM state dict was saved from, from its position embedding
    ``(1, g, g, C)`` and the number of its blocks' ``qkv`` weights ``(3C, C)``.

    Returns:
        ``(name, description)``: the :data:`MODEL_CONFIGS` name (``None`` when nothing matches)
        and a phrase for messages, e.g. ``"vit_b (1024 px)"``.
    """
    pos = state.get("image_encoder.pos_embed")
    if pos is None or pos.dim() != 4:
        return None, "no SAM model (it has no image_encoder.pos_embed)"
    grid, dim = pos.shape[1], pos.shape[3]
    depth = sum(1 for k in state if re.fullmatch(r"image_encoder\.blocks\.\d+\.attn\.qkv\.weight", k))
    for cfg in MODEL_CONFIGS.values():
        if (cfg.embed_dim, cfg.depth) == (dim, depth):
            return cfg.name, f"{cfg.name} ({grid * cfg.patch_size} px)"
    return None, f"an unknown model (embed dim {dim}, {depth} blocks, {grid}x{grid} tokens)"


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize an absolute position embedding ``(1, g, g, C)`` to ``(1, grid, grid, C)``
    (bicubic over the token grid); returned as it is when it already has that size."""
    if pos_embed.shape[1:3] == (grid, grid):
        return pos_embed
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).contiguous()


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Resize a relative-position table ``(2g-1, head_dim)`` to ``(length, head_dim)`` (linear
    interpolation over the offsets, as ``segment_anything``'s ``get_rel_pos`` does); returned as it
    is when it already has that length."""
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized.squeeze(0).t().contiguous()


def fit_state_dict(state: dict[str, torch.Tensor], cfg: SamConfig, path) -> dict[str, torch.Tensor]:
    """Check that ``state`` was saved from the model ``cfg`` describes and resize its position
    tables to ``cfg.image_size`` (the global-attention blocks' ``rel_pos_h/w`` and ``pos_embed``;
    windowed blocks keep theirs)."""
    seems_name, seems = identify_state_dict(state)
    if seems_name != cfg.name:
        build_that = f"build_sam({seems_name!r}, checkpoint=...) to use it, " if seems_name else ""
        raise CheckpointError(
            f"Checkpoint {path} does not fit model {cfg.name!r}: it seems to be for {seems}. "
            f"Use {build_that}or pass a {cfg.name} checkpoint (checkpoint='auto' gets the right one)."
        )
    fitted = dict(state)
    fitted["image_encoder.pos_embed"] = resize_pos_embed(state["image_encoder.pos_embed"], cfg.grid_size)
    for i in cfg.global_attn_indexes:
        for axis in ("h", "w"):
            key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            if key in state:
                fitted[key] = resize_rel_pos(state[key], 2 * cfg.grid_size - 1)
    return fitted


def sized_config(cfg: SamConfig, image_size: int | None) -> SamConfig:
    """``cfg`` at another input size (a multiple of the patch size); ``cfg`` itself for ``None``."""
    if image_size is None or image_size == cfg.image_size:
        return cfg
    if not isinstance(image_size, int) or image_size <= 0 or image_size % cfg.patch_size:
        nearest = cfg.patch_size * max(1, round(image_size / cfg.patch_size)) if isinstance(image_size, int) else cfg.image_size
        raise ConfigError(f"image_size={image_size!r} is not a positive multiple of {cfg.name}'s patch size "
                          f"{cfg.patch_size} (native size {cfg.image_size}); pass a multiple such as {nearest}.")
    return replace(cfg, image_size=image_size)


def build_sam(name: str, checkpoint="auto", image_size: int | None = None, device="cpu",
              cache_dir=None, base_url: str | None = None) -> Sam:
    """Build the SAM variant ``name`` (see :data:`MODEL_CONFIGS`) with its weights.

    Args:
        name: ``vit_b``, ``vit_l``, ``vit_h``, ``micro_sam`` or ``test_tiny``.
        checkpoint: ``"auto"`` (official weights for vit_b/l/h, downloaded once into the cache and
            sha256-verified; the bundled file for ``micro_sam``; random for ``test_tiny``),
            ``None`` (random initialisation) or a path to a ``.pth`` state dict or ``.safetensors``.
        image_size: input side in pixels (default: the model's native size); a multiple of the
            patch size. The checkpoint's position tables are resized to it.
        device: where the model lives. ``"meta"`` builds shapes only: no weights are read or
            downloaded and nothing is allocated (for parameter accounting).
        cache_dir: download folder (default ``$CONVLORA_CACHE`` or ``~/.cache/convlora_lite``).
        base_url: a mirror holding the official file names (default ``$CONVLORA_SAM_BASE_URL``).

    Returns:
        A ``Sam`` in eval mode, with ``sam.config`` the :class:`SamConfig` it was built from
        (``image_size`` included).
    """
    cfg = sized_config(get_config(name), image_size)
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            sam = sam_from_config(cfg)
    else:
        path = resolve_checkpoint(cfg, checkpoint, cache_dir, base_url)
        if path is None:
            sam = sam_from_config(cfg)
        else:
            state = fit_state_dict(load_state_dict_file(path), cfg, path)
            with torch.device("meta"):
                sam = sam_from_config(cfg)
            try:
                sam.load_state_dict(state, strict=True, assign=True)
            except RuntimeError as err:
                raise CheckpointError(f"Checkpoint {path} does not fit model {cfg.name!r}: {str(err)[:600]} "
                                      f"Pass a checkpoint saved from {cfg.name}.") from err
        sam = sam.to(device)
    sam.config = cfg
    return sam
