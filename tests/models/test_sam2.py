"""SAM 2.1 by name (``build_sam("sam2.1_hiera_*")``): Meta's modules from Meta's ``sam2`` package, files in Meta's
format (random weights written by ``sam2`` itself) downloaded from a 127.0.0.1 server, checked, cached, refused
when they hold another model; the CLI end to end on Hiera-T."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mirror import sam2_checkpoint
from PIL import Image
from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2

from convlora_lite.cli import main
from convlora_lite.errors import CheckpointError, ConfigError, DownloadError
from convlora_lite.models.sam import MODEL_CONFIGS, build_sam

ROOT = Path(__file__).resolve().parents[2]
TINY = "sam2.1_hiera_tiny"
#: Meta's README: "38.9", "46", "80.8", "224.4" M parameters (truncated to 0.1 M).
PUBLISHED_M = {"sam2.1_hiera_tiny": 38.9, "sam2.1_hiera_small": 46.0, "sam2.1_hiera_base_plus": 80.8,
               "sam2.1_hiera_large": 224.4}


@pytest.fixture(scope="module")
def tiny_file() -> bytes:
    return sam2_checkpoint(TINY)


@pytest.fixture(scope="module")
def small_file() -> bytes:
    return sam2_checkpoint("sam2.1_hiera_small")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/sam"


@pytest.mark.parametrize("name", list(PUBLISHED_M))
def test_the_four_names_are_metas_models_with_metas_files_and_sizes(name):
    cfg = MODEL_CONFIGS[name]
    size = name.removeprefix("sam2.1_hiera_").replace("_", "-")
    config_file, file_name = HF_MODEL_ID_TO_FILENAMES[f"facebook/sam2.1-hiera-{size}"]  # Meta's own table
    assert (cfg.config_file, cfg.checkpoint_url) == (
        config_file, f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{file_name}")
    assert cfg.checkpoint_sha256 is None  # not published by Meta, not invented here (docs/sam2.md)
    sam = build_sam(name, device="meta")
    assert type(sam).__name__ == "SAM2Base" and sam.config is cfg
    assert int(sum(p.numel() for p in sam.parameters()) / 1e5) / 10 == PUBLISHED_M[name]
    assert all(p.is_meta for p in sam.parameters())
    trunk = sam.image_encoder.trunk
    assert (len(trunk.blocks), trunk.patch_embed.proj.out_channels) == (cfg.depth, cfg.embed_dim)


def test_a_meta_format_file_loads_as_metas_own_loader_loads_it(tmp_path, tiny_file):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(tiny_file)
    ours = build_sam(TINY, path, image_size=128)
    theirs = build_sam2(MODEL_CONFIGS[TINY].config_file, str(path), device="cpu",
                        hydra_overrides_extra=["++model.image_size=128"])
    assert ours.image_size == 128 and not ours.training and not any(p.is_meta for p in ours.parameters())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    images = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(ours.forward_image(images)["backbone_fpn"], theirs.forward_image(images)["backbone_fpn"]):
            assert torch.equal(a, b)


def test_auto_downloads_resumes_checks_and_then_uses_the_cache(server, tmp_path, tiny_file):
    server.files["/sam/sam2.1_hiera_tiny.pt"] = tiny_file
    server.cut_after = [len(tiny_file) // 3]  # the first response hangs up: the next one resumes
    sam = build_sam(TINY, "auto", image_size=64, cache_dir=tmp_path, base_url=server.url("/sam"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sam2.1_hiera_tiny.pt"]  # nothing staged is left
    assert (tmp_path / "sam2.1_hiera_tiny.pt").read_bytes() == tiny_file
    assert any(r is not None for _, r in server.requests)
    requests = len(server.requests)
    again = build_sam(TINY, "auto", image_size=64, cache_dir=tmp_path, base_url=server.url("/sam"))
    assert len(server.requests) == requests  # the cached file, no request
    assert torch.equal(sam.image_encoder.trunk.blocks[3].attn.qkv.weight,
                       again.image_encoder.trunk.blocks[3].attn.qkv.weight)


def test_a_file_of_another_size_or_model_is_refused_and_nothing_is_kept(server, tmp_path, small_file, tiny_file):
    server.files["/sam/sam2.1_hiera_tiny.pt"] = small_file  # a Hiera-S file where Hiera-T's belongs
    with pytest.raises(DownloadError, match=r"not the sam2.1_hiera_tiny checkpoint \(.*seems to be for "
                                            r"sam2.1_hiera_small"):
        build_sam(TINY, "auto", cache_dir=tmp_path / "a", base_url=server.url("/sam"))
    assert list((tmp_path / "a").iterdir()) == []
    server.files["/html/sam2.1_hiera_tiny.pt"] = b"<html>moved</html>" * 50
    with pytest.raises(DownloadError, match="not a readable checkpoint"):
        build_sam(TINY, "auto", cache_dir=tmp_path / "b", base_url=server.url("/html"))
    assert list((tmp_path / "b").iterdir()) == []

    (tmp_path / "small.pt").write_bytes(small_file)
    with pytest.raises(CheckpointError, match=r"seems to be for sam2.1_hiera_small\. Use "
                                              r"build_sam\('sam2.1_hiera_small', checkpoint=\.\.\.\)"):
        build_sam(TINY, tmp_path / "small.pt")
    (tmp_path / "tiny.pt").write_bytes(tiny_file)
    with pytest.raises(CheckpointError, match="seems to be for sam2.1_hiera_tiny"):
        build_sam("vit_b", tmp_path / "tiny.pt")
    torch.save(build_sam("test_tiny").state_dict(), tmp_path / "v1.pth")
    with pytest.raises(CheckpointError, match="seems to be for test_tiny"):
        build_sam(TINY, tmp_path / "v1.pth")
    with pytest.raises(CheckpointError, match="reads Meta's SAM 2.1 checkpoint file"):
        build_sam(TINY, tmp_path)


def test_offline_says_where_the_file_belongs(tmp_path):
    with pytest.raises(DownloadError, match=r"(?s)could not reach.*sam2.1_hiera_tiny.pt.*belongs in the folder"):
        build_sam(TINY, "auto", cache_dir=tmp_path, base_url=_closed_port_url())


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(ConfigError, match="multiple of sam2.1_hiera_tiny's size multiple .* 32"):
        build_sam(TINY, checkpoint=None, image_size=48)
    assert build_sam(TINY, checkpoint=None, image_size=96).sam_image_embedding_size == 6


def test_building_sam2_prints_no_warning():
    """hydra and omegaconf warn on import and use (omegaconf 2.4's deprecations): the project silences them."""
    code = "from convlora_lite.models.sam import build_sam; build_sam('sam2.1_hiera_tiny', checkpoint=None, " \
           "image_size=64); build_sam('micro_sam2')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr


def test_train_eval_predict_and_export_hiera_tiny_from_the_mirror(server, tmp_path, tiny_file, monkeypatch, capsys):
    server.files["/sam/sam2.1_hiera_tiny.pt"] = tiny_file
    monkeypatch.setenv("CONVLORA_SAM_BASE_URL", server.url("/sam"))
    monkeypatch.setenv("CONVLORA_CACHE", str(tmp_path / "cache"))
    run, data = tmp_path / "run", tmp_path / "data"
    common = ["--dataset", "synth_polyp", "--preset", "smoke", "--image-size", "64", "--epochs", "1",
              "--max-train-batches", "1", "--root", str(data)]
    assert main(["train", *common, "--method", "conv_lora", "--model", TINY, "--output-dir", str(run)]) == 0
    assert (tmp_path / "cache" / "sam2.1_hiera_tiny.pt").read_bytes() == tiny_file
    assert main(["eval", "--run-dir", str(run), "--json"]) == 0
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (80, 60), (40 * i, 90, 200)).save(images / f"photo_{i}.png")
    assert main(["predict", "--run-dir", str(run), str(images), "--output-dir", str(tmp_path / "masks")]) == 0
    assert sorted(p.name for p in (tmp_path / "masks" / "masks").glob("*.png")) == ["photo_0.png", "photo_1.png"]
    assert Image.open(tmp_path / "masks" / "masks" / "photo_0.png").size == (80, 60)
    export = tmp_path / "model.safetensors"
    assert main(["export", "--run-dir", str(run), "--output", str(export)]) == 0
    assert main(["predict", "--run-dir", str(export), str(images), "--output-dir", str(tmp_path / "m2")]) == 0
    for name in ("photo_0.png", "photo_1.png"):
        exported, trained = (Image.open(tmp_path / out / "masks" / name).tobytes() for out in ("m2", "masks"))
        assert exported == trained
    capsys.readouterr()

    (tmp_path / "tiny.pt").write_bytes(tiny_file)
    for model in ("sam2.1_hiera_small", "vit_b"):  # the file holds Hiera-T: refused before any training
        assert main(["train", *common, "--method", "lora", "--model", model, "--checkpoint", str(tmp_path / "tiny.pt"),
                     "--output-dir", str(tmp_path / model)]) == 2
        assert "seems to be for sam2.1_hiera_tiny" in capsys.readouterr().err


def test_without_sam2_the_error_says_how_to_install_it(monkeypatch):
    from convlora_lite.models.sam2 import SAM2_INSTALL

    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)  # import sam2.build_sam now raises ImportError
    with pytest.raises(ConfigError, match=re.escape(f"Install it with: {SAM2_INSTALL}")):
        build_sam(TINY, checkpoint=None)


def test_micro_sam2_is_built_from_the_projects_config_at_any_multiple_of_32():
    """The config shipped in convlora_lite/models/sam2_configs (outside sam2's hydra search path): Hiera 32 wide in
    1, 2, 4, 1 blocks, the 128-wide neck and decoder, Meta's post-processing settings, the input size overridden."""
    sam = build_sam("micro_sam2", checkpoint=None)
    trunk = sam.image_encoder.trunk
    assert sum(p.numel() for p in sam.parameters()) == 3_999_042
    assert (trunk.stage_ends, trunk.global_att_blocks) == ([0, 2, 6, 7], (4, 6))
    assert [b.dim_out for b in trunk.blocks] == [32, 64, 64, 128, 128, 128, 128, 256]
    assert sam.image_size == 256 and sam.sam_mask_decoder.transformer_dim == 128
    assert sam.sam_mask_decoder.dynamic_multimask_via_stability
    resized = build_sam("micro_sam2", checkpoint=None, image_size=320)
    assert resized.image_size == 320 and resized.sam_image_embedding_size == 20
    with torch.no_grad():
        assert resized.image_encoder(torch.zeros(1, 3, 320, 320))["backbone_fpn"][-1].shape == (1, 128, 20, 20)
