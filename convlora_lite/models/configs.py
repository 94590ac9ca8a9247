"""The SAM variants ``build_sam`` knows: their sizes and official weights (:class:`SamConfig` for SAM's ViTs,
:class:`Sam2Config` for SAM 2.1's Hiera backbones, :data:`MODEL_CONFIGS`), looked up by name (:func:`get_config`)
and resized (:func:`sized_config`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from convlora_lite.errors import ConfigError


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

    #: the image encoder's family: a plain ViT (SAM) or Hiera (SAM 2).
    backbone = "vit"

    @property
    def grid_size(self) -> int:
        """Side of the encoder's token grid (64 for SAM at 1024 px)."""
        return self.image_size // self.patch_size

    @property
    def size_multiple(self) -> int:
        """The input side must be a multiple of this: the patch size."""
        return self.patch_size


@dataclass(frozen=True)
class Sam2Config:
    """One SAM 2.1 variant (Ravi et al., 2024): Meta's ``sam2`` package builds it from its packaged hydra config
    ``config_file``; ``embed_dim`` and ``stages`` (Hiera blocks per stage) identify its checkpoints.

    The image encoder is Hiera (stride-4 patch embedding, then three 2x query poolings): at 1024 px its four stages
    see 256, 128, 64 and 32 tokens per side; the FPN neck gives the mask decoder a 64 x 64 embedding (stride 16,
    :attr:`grid_size`) and the stride-4 and stride-8 maps as high-resolution features. The input side must be a
    multiple of 32 (:attr:`size_multiple`: the deepest stage's stride, which also makes the first stage's grid a
    multiple of its 8 x 8 windows).

    ``checkpoint_sha256`` is ``None`` for the four official files: Meta publishes no digest, and none could be
    computed from the real files where this was written (a digest that was not computed from them must not be
    invented). A download is checked instead by its length (the server's Content-Length) and its content: a
    ``{"model": state_dict}`` whose encoder has this variant's width and depth (``docs/sam2.md``, "Checkpoints").
    """

    name: str
    config_file: str
    embed_dim: int
    stages: tuple[int, ...]
    image_size: int = 1024
    description: str = ""
    checkpoint_url: str | None = None
    checkpoint_sha256: str | None = None
    #: who ships ``config_file``: Meta's ``sam2`` package, or the project (``models/sam2_configs/``, micro_sam2).
    config_package: str = "sam2"

    backbone = "hiera"
    #: the stride of the embedding the mask decoder reads (SAM 2's ``backbone_stride``).
    patch_size = 16
    size_multiple = 32

    @property
    def depth(self) -> int:
        """Hiera blocks in all."""
        return sum(self.stages)

    @property
    def grid_size(self) -> int:
        """Side of the mask decoder's image embedding (64 at 1024 px)."""
        return self.image_size // self.patch_size


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# The sha256 of Meta's three checkpoints, as pinned (identically) by several public projects, e.g.
# computational-cell-analytics/micro-sam (micro_sam/util.py, ``_CHECKSUMS``) and the 3D Slicer
# SegmentWithSAM extension (``downloadFileIntoCache(..., "SHA256:...")``).

_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


def _sam2(size: str, short: str, embed_dim: int, stages: tuple[int, ...], params: str) -> Sam2Config:
    """The :class:`Sam2Config` of Meta's ``sam2.1_hiera_{size}`` (config ``sam2.1_hiera_{short}.yaml``)."""
    name = f"sam2.1_hiera_{size}"
    return Sam2Config(name, f"configs/sam2.1/sam2.1_hiera_{short}.yaml", embed_dim, stages,
                      description=f"SAM 2.1 Hiera-{short.upper()} ({params} M parameters)",
                      checkpoint_url=f"{_SAM2_URL}{name}.pt")


#: Every model ``build_sam`` can build.
MODEL_CONFIGS: dict[str, SamConfig | Sam2Config] = {
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
    "micro_sam2": Sam2Config("micro_sam2", "micro_sam2.yaml", embed_dim=32, stages=(1, 2, 4, 1), image_size=256,
                             config_package="convlora_lite",
                             description="bundled micro SAM 2 (Hiera 32 wide, 8 blocks, 256 px), pretrained offline by "
                             "`python -m convlora_lite.pretrain micro_sam2`"),
    "sam2.1_hiera_tiny": _sam2("tiny", "t", 96, (1, 2, 7, 2), "38.96"),
    "sam2.1_hiera_small": _sam2("small", "s", 96, (1, 2, 11, 2), "46.06"),
    "sam2.1_hiera_base_plus": _sam2("base_plus", "b+", 112, (2, 3, 16, 3), "80.85"),
    "sam2.1_hiera_large": _sam2("large", "l", 144, (2, 6, 36, 4), "224.45"),
}


def get_config(name: str) -> SamConfig | Sam2Config:
    """The :class:`SamConfig` called ``name``; a clear error for an unknown name. Used in notebooks 00 and 01."""
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_CONFIGS)}.")
    return MODEL_CONFIGS[name]


def sized_config(cfg: SamConfig | Sam2Config, image_size: int | None) -> SamConfig | Sam2Config:
    """``cfg`` at another input size (a multiple of its :attr:`~SamConfig.size_multiple`: the patch size of SAM's
    ViTs, 32 for SAM 2's Hiera); ``cfg`` itself for ``None``."""
    if image_size is None or image_size == cfg.image_size:
        return cfg
    multiple = cfg.size_multiple
    if not isinstance(image_size, int) or image_size <= 0 or image_size % multiple:
        nearest = multiple * max(1, round(image_size / multiple)) if isinstance(image_size, int) else cfg.image_size
        what = "patch size" if cfg.backbone == "vit" else "size multiple (Hiera's deepest stride)"
        raise ConfigError(f"image_size={image_size!r} is not a positive multiple of {cfg.name}'s {what} "
                          f"{multiple} (native size {cfg.image_size}); pass a multiple such as {nearest}.")
    return replace(cfg, image_size=image_size)
