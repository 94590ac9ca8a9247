"""SAM checkpoints: find or download them, read them, check they fit, resize their position tables.

``checkpoint="auto"`` fetches Meta's official weights once (sha256-verified; SAM 2.1's, whose digests are not
pinned, checked by content: :func:`official_checkpoint`) into the cache folder, uses the bundled micro model's
file, or random weights for ``test_tiny``. SAM 2.1's files (``{"model": state_dict}``) are read like SAM's.
A model built at another ``image_size`` than its checkpoint gets the checkpoint's absolute position embedding
resized bicubically over the token grid and the global-attention blocks' relative-position tables
resized linearly (as SAM/ViTDet do when they change resolution). A Hugging Face SAM folder
(``transformers``' ``SamModel``: ``config.json`` + ``model.safetensors``) is read as Meta's SAM
(:mod:`~convlora_lite.models.hf_checkpoint`).
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from convlora_lite.errors import CheckpointError, DownloadError
from convlora_lite.http import cache_folder, download_file
from convlora_lite.io import load_torch_file
from convlora_lite.models.configs import MODEL_CONFIGS, Sam2Config, SamConfig
from convlora_lite.models.hf_checkpoint import hf_sam_weights, hf_to_meta, is_hf_state_dict

#: model name -> the checkpoint file bundled in ``convlora_lite/assets`` (used by ``checkpoint="auto"``).
BUNDLED_CHECKPOINTS = {"micro_sam": "micro_sam.safetensors", "micro_sam2": "micro_sam2.safetensors"}
#: the folder of the bundled micro checkpoints and their cards (shipped in the wheel).
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def official_checkpoint(cfg: SamConfig | Sam2Config, cache_dir=None, base_url: str | None = None) -> Path:
    """The path of ``cfg``'s official checkpoint, downloaded first if it is not in the cache.

    The file comes from ``base_url`` + file name when given, else ``$CONVLORA_SAM_BASE_URL`` +
    file name, else Meta's URL, and is verified against ``cfg.checkpoint_sha256``; without a pinned
    digest (SAM 2.1's files) by its length (Content-Length) and its content instead: it must hold the
    weights of ``cfg``'s model (:func:`fit_state_dict`), else it is deleted with a :class:`DownloadError`.
    A file already in the cache is trusted (downloads are verified before their atomic rename).
    """
    file_name = cfg.checkpoint_url.rsplit("/", 1)[-1]
    folder = cache_folder(cache_dir)
    dest = folder / file_name
    if dest.is_file():
        return dest
    base = base_url or os.environ.get("CONVLORA_SAM_BASE_URL")
    url = base.rstrip("/") + "/" + file_name if base else cfg.checkpoint_url
    check = None if cfg.checkpoint_sha256 else lambda path: fit_state_dict(load_state_dict_file(path), cfg, path)
    try:
        return download_checked(url, dest, cfg.checkpoint_sha256, check, f"the {cfg.name} checkpoint")
    except DownloadError as err:
        raise DownloadError(
            f"Could not get the {cfg.name} checkpoint: {err}\nThe file {file_name} (from {url}) belongs in "
            f"the folder {folder.resolve()}; alternatively pass checkpoint='/path/to/{file_name}' or set "
            f"CONVLORA_SAM_BASE_URL to a mirror that holds it."
        ) from err


def download_checked(url: str, dest: Path, sha256: str | None, check, what: str) -> Path:
    """Download ``url`` to ``dest`` (:func:`~convlora_lite.http.download_file`: resumable, complete per
    Content-Length, ``sha256`` when given) through a staged ``.unverified`` name, run ``check(path)`` on it (None:
    no check) and only then give it its final name. A file that ``check`` refuses (:class:`CheckpointError`) is
    deleted, with a :class:`DownloadError` saying it is not ``what``."""
    staged = dest.with_name(dest.name + ".unverified")
    download_file(url, staged, sha256=sha256, desc=dest.name)
    if check is not None:
        try:
            check(staged)
        except CheckpointError as err:
            staged.unlink()
            raise DownloadError(f"the file downloaded from {url} is not {what} ({err}); it was deleted. Run the "
                                "same command again to retry, or check the mirror.") from err
    os.replace(staged, dest)
    return dest


def resolve_checkpoint(cfg: SamConfig, checkpoint, cache_dir=None, base_url: str | None = None) -> Path | None:
    """The file ``build_sam`` loads for ``checkpoint`` (``None`` means random weights).

    ``"auto"``: the official file for vit_b/l/h (downloaded when needed), the bundled file for
    the micro model, nothing (random weights) for ``test_tiny``. Anything else is a path: a file, or a
    Hugging Face SAM folder, checked to hold ``cfg``'s model, whose weights file is returned.
    """
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and checkpoint == "auto":
        if cfg.checkpoint_url is not None:
            return official_checkpoint(cfg, cache_dir, base_url)
        if cfg.name in BUNDLED_CHECKPOINTS:
            path = ASSETS_DIR / BUNDLED_CHECKPOINTS[cfg.name]
            if not path.is_file():
                raise CheckpointError(
                    f"The bundled {cfg.name} checkpoint {path} is missing. Create it with "
                    f"`python -m convlora_lite.pretrain {cfg.name}`, or pass checkpoint=None for random weights."
                )
            return path
        return None
    path = Path(checkpoint).expanduser()
    if path.is_dir() and cfg.backbone == "hiera":
        raise CheckpointError(f"{path} is a folder; {cfg.name} reads Meta's SAM 2.1 checkpoint file "
                              f"({cfg.checkpoint_url.rsplit('/', 1)[-1]}, a torch.save of {{'model': state_dict}}). "
                              "Pass that file, or checkpoint='auto'.")
    if path.is_dir():
        return hf_sam_weights(path, cfg)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist. Check the path (a .pth or .safetensors file, or "
                              "a Hugging Face SAM folder), or pass checkpoint='auto'.")
    return path


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``d state dict (``.pth``/``.pt``/``.bin``,
    ``weights_only``; SAM 2.1's ``{"model": state_dict}`` is unwrapped), floating point ones as float32, on the
    CPU, in Meta's names (a ``transformers`` ``SamModel``'s are renamed:
    :func:`~convlora_lite.models.hf_checkpoint.hf_to_meta`)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("model"), dict):
                state = state["model"]
    except Exception as err:  # any reader failure means the same thing to the user
        raise CheckpointError(
            f"{path} is not a readable checkpoint (reading it raised {type(err).__name__}). "
            "It may be truncated or corrupt: delete it and download it again, or pass another file."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a SAM state dict (a mapping of names to tensors). "
                              "Pass a file saved with torch.save(sam.state_dict()) or safetensors.")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return hf_to_meta(state, path) if is_hf_state_dict(state) else state


def identify_state_dict(state: dict[str, torch.Tensor]) -> tuple[str | None, str]:
    """Guess the model a SAM or SAM 2 state dict was saved from: SAM's from its position embedding
    ``(1, g, g, C)`` and the number of its blocks' ``qkv`` weights ``(3C, C)``, SAM 2's from its Hiera patch
    embedding ``(C, 3, 7, 7)`` and the number of its trunk blocks.

    Returns:
        ``(name, description)``: the :data:`MODEL_CONFIGS` name (``None`` when nothing matches)
        and a phrase for messages, e.g. ``"vit_b (1024 px)"``.
    """
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is not None:
        depth = sum(1 for k in state if re.fullmatch(r"image_encoder\.trunk\.blocks\.\d+\.attn\.qkv\.weight", k))
        for cfg in MODEL_CONFIGS.values():
            if cfg.backbone == "hiera" and (cfg.embed_dim, cfg.depth) == (patch.shape[0], depth):
                return cfg.name, cfg.name
        return None, f"an unknown SAM 2 model (Hiera embed dim {patch.shape[0]}, {depth} blocks)"
    pos = state.get("image_encoder.pos_embed")
    if pos is None or pos.dim() != 4:
        return None, "no SAM model (it has no image_encoder.pos_embed)"
    grid, dim = pos.shape[1], pos.shape[3]
    depth = sum(1 for k in state if re.fullmatch(r"image_encoder\.blocks\.\d+\.attn\.qkv\.weight", k))
    for cfg in MODEL_CONFIGS.values():
        if cfg.backbone == "vit" and (cfg.embed_dim, cfg.depth) == (dim, depth):
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


def fit_state_dict(state: dict[str, torch.Tensor], cfg: SamConfig | Sam2Config, path) -> dict[str, torch.Tensor]:
    """Check that ``state`` was saved from the model ``cfg`` describes and, for SAM's ViTs, resize its position
    tables to ``cfg.image_size`` (the global-attention blocks' ``rel_pos_h/w`` and ``pos_embed``;
    windowed blocks keep theirs). SAM 2's Hiera interpolates its position embedding to any input size itself:
    its state is returned as it is."""
    seems_name, seems = identify_state_dict(state)
    if seems_name != cfg.name:
        build_that = f"Use build_sam({seems_name!r}, checkpoint=...) to use it, or pass" if seems_name else "Pass"
        raise CheckpointError(
            f"Checkpoint {path} does not fit model {cfg.name!r}: it seems to be for {seems}. "
            f"{build_that} a {cfg.name} checkpoint (checkpoint='auto' gets the right one)."
        )
    if cfg.backbone == "hiera":
        return state
    fitted = dict(state)
    fitted["image_encoder.pos_embed"] = resize_pos_embed(state["image_encoder.pos_embed"], cfg.grid_size)
    for i in cfg.global_attn_indexes:
        for axis in ("h", "w"):
            key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            if key in state:
                fitted[key] = resize_rel_pos(state[key], 2 * cfg.grid_size - 1)
    return fitted


# --------------------------------------------------------------------------------------------
# MAE ViT-B (the paper's linear-probing reference, notebook 01)

#: Meta's MAE ViT-B/16 pretrained encoder (the MAE repository's README).
MAE_VIT_B_URL = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth"
#: its sha256. ``None``: not known to this project (it could not be fetched where this was
#: written, and a digest that was not computed from the real file must not be invented), so the
#: download is checked by its size (the server's Content-Length, and at least ViT-B's parameters
#: at 2 bytes each) and its format (:func:`check_mae_state`) instead. Set it (or pass ``sha256=``)
#: once the real digest is known, and the download is verified like SAM's.
MAE_VIT_B_SHA256: str | None = None
#: ViT-B/16's encoder parameters (the checkpoint holds them, in float32 for the official file).
MAE_VIT_B_PARAMS = 85_798_656


def check_mae_state(state, path, dim: int = 768, depth: int = 12, patch: int = 16) -> dict:
    """The timm-named ViT state dict in ``state`` (the official file is ``{"model": state_dict}``;
    a bare state dict is accepted too), checked to be ViT-B/16 at 224 px: ``patch_embed.proj.weight``
    ``(dim, 3, patch, patch)``, ``pos_embed`` ``(1, 197, dim)`` and ``depth`` blocks with
    ``attn.qkv.weight`` ``(3 dim, dim)``; a :class:`CheckpointError` naming ``path`` otherwise."""
    inner = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(inner, dict) or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        raise CheckpointError(f"{path} is not an MAE checkpoint (a dict with 'model': a state dict of tensors).")
    patch_w, pos = inner.get("patch_embed.proj.weight"), inner.get("pos_embed")
    qkv = [k for k in inner if re.fullmatch(r"blocks\.\d+\.attn\.qkv\.weight", k)]
    problems = []
    if patch_w is None or tuple(patch_w.shape) != (dim, 3, patch, patch):
        problems.append(f"patch_embed.proj.weight is {None if patch_w is None else tuple(patch_w.shape)}")
    if pos is None or tuple(pos.shape) != (1, 1 + (224 // patch) ** 2, dim):
        problems.append(f"pos_embed is {None if pos is None else tuple(pos.shape)}")
    if len(qkv) != depth or any(tuple(inner[k].shape) != (3 * dim, dim) for k in qkv):
        problems.append(f"{len(qkv)} blocks with attn.qkv")
    if problems:
        raise CheckpointError(f"{path} is not Meta's MAE ViT-B/16 checkpoint ({'; '.join(problems)}; expected "
                              f"({dim}, 3, {patch}, {patch}), (1, 197, {dim}) and {depth} blocks). Delete it and "
                              f"download {MAE_VIT_B_URL} again.")
    return inner


def load_mae_file(path) -> dict:
    """What ``torch.load`` reads from an MAE checkpoint, on the CPU: tensors, plain values and the training
    arguments (an ``argparse.Namespace``) some released files hold, never code
    (:func:`~convlora_lite.io.load_torch_file`)."""
    try:
        return load_torch_file(path, "an MAE checkpoint", allowed=[argparse.Namespace])
    except CheckpointError:
        raise
    except Exception as err:  # any reader failure means the same thing to the user
        raise CheckpointError(f"{path} is not a readable checkpoint (reading it raised {type(err).__name__}); "
                              f"it may be truncated or corrupt: delete it and download {MAE_VIT_B_URL} again.") from err


def mae_checkpoint(cache_dir=None, base_url: str | None = None, sha256: str | None = MAE_VIT_B_SHA256) -> Path:
    """The path of ``mae_pretrain_vit_base.pth`` in the cache folder, downloaded first when absent.

    From ``base_url`` + file name, else ``$CONVLORA_MAE_BASE_URL`` + file name, else
    :data:`MAE_VIT_B_URL`; resumable (``.part``). Verified before it gets its final name: by
    ``sha256`` when one is given (default :data:`MAE_VIT_B_SHA256`, unknown so far: ``None``), and
    always by size (complete per Content-Length; at least ViT-B's parameters in 16-bit) and format
    (:func:`check_mae_state`). A file that fails is deleted, with a :class:`DownloadError` saying so.
    """
    file_name = MAE_VIT_B_URL.rsplit("/", 1)[-1]
    folder = cache_folder(cache_dir)
    dest = folder / file_name
    if dest.is_file():
        return dest
    base = base_url or os.environ.get("CONVLORA_MAE_BASE_URL")
    url = base.rstrip("/") + "/" + file_name if base else MAE_VIT_B_URL

    def check(path: Path) -> None:
        if path.stat().st_size < 2 * MAE_VIT_B_PARAMS:
            raise CheckpointError(f"it has {path.stat().st_size:,} bytes, less than ViT-B's "
                                  f"{MAE_VIT_B_PARAMS:,} parameters in 16 bits")
        check_mae_state(load_mae_file(path), path)

    try:
        return download_checked(url, dest, sha256, check, "Meta's MAE ViT-B checkpoint")
    except DownloadError as err:
        raise DownloadError(
            f"Could not get the MAE ViT-B weights: {err}\nThe file {file_name} (from {url}) belongs in the folder "
            f"{folder.resolve()}; alternatively pass its path (MAE_CHECKPOINT) or set CONVLORA_MAE_BASE_URL to a "
            "mirror that holds it."
        ) from err
