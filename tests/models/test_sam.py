"""build_sam: checkpoint download (local HTTP server), sha256, offline and wrong-model errors,
resizing to another image size, and the meta device."""
import functools
import hashlib
import http.server
import socket
import threading
from dataclasses import replace

import pytest
import torch
from segment_anything.modeling.image_encoder import get_rel_pos

from convlora_lite.errors import CheckpointError, ConfigError, DownloadError
from convlora_lite.models import checkpoints as sam_module
from convlora_lite.models.checkpoints import identify_state_dict, resize_pos_embed, resize_rel_pos
from convlora_lite.models.sam import MODEL_CONFIGS, build_sam

TINY_FILE = "test_tiny_ckpt.pth"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A test_tiny checkpoint served over HTTP on 127.0.0.1: (base_url, state_dict, sha256)."""
    root = tmp_path / "served"
    root.mkdir()
    state = build_sam("test_tiny").state_dict()
    torch.save(state, root / TINY_FILE)
    digest = hashlib.sha256((root / TINY_FILE).read_bytes()).hexdigest()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state, digest
    server.shutdown()
    server.server_close()


def _official_tiny(monkeypatch, sha256):
    """Make test_tiny look like an official model whose checkpoint must be downloaded."""
    cfg = replace(MODEL_CONFIGS["test_tiny"], checkpoint_url="https://dl.example.invalid/sam/" + TINY_FILE,
                  checkpoint_sha256=sha256)
    monkeypatch.setitem(MODEL_CONFIGS, "test_tiny", cfg)


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _same_weights(model, state):
    loaded = model.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_official_checksums_are_pinned():
    shas = [MODEL_CONFIGS[name].checkpoint_sha256 for name in ("vit_b", "vit_l", "vit_h")]
    assert all(sha is not None and len(sha) == 64 and int(sha, 16) >= 0 for sha in shas)
    assert len(set(shas)) == 3


def test_auto_downloads_from_base_url_verifies_and_then_uses_the_cache(served, tmp_path, monkeypatch):
    base_url, state, digest = served
    _official_tiny(monkeypatch, digest)
    cache = tmp_path / "cache"
    model = build_sam("test_tiny", base_url=base_url, cache_dir=cache)
    assert _same_weights(model, state)
    assert (cache / TINY_FILE).is_file() and not list(cache.glob("*.part"))
    # offline now: the cached file is used without the network
    again = build_sam("test_tiny", base_url=_closed_port_url(), cache_dir=cache)
    assert _same_weights(again, state)


def test_auto_reads_base_url_and_cache_from_the_environment(served, tmp_path, monkeypatch):
    base_url, state, digest = served
    _official_tiny(monkeypatch, digest)
    monkeypatch.setenv("CONVLORA_SAM_BASE_URL", base_url + "/")
    monkeypatch.setenv("CONVLORA_CACHE", str(tmp_path / "env_cache"))
    assert _same_weights(build_sam("test_tiny"), state)
    assert (tmp_path / "env_cache" / TINY_FILE).is_file()


def test_checksum_mismatch_is_an_error_and_leaves_nothing(served, tmp_path, monkeypatch):
    base_url, _, digest = served
    _official_tiny(monkeypatch, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="sha256"):
        build_sam("test_tiny", base_url=base_url, cache_dir=cache)
    assert not (cache / TINY_FILE).exists() and not list(cache.glob("*.part"))


def test_offline_error_names_url_file_and_folder(tmp_path, monkeypatch):
    _official_tiny(monkeypatch, None)
    base_url = _closed_port_url()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as err:
        build_sam("test_tiny", base_url=base_url, cache_dir=cache)
    message = str(err.value)
    assert f"{base_url}/{TINY_FILE}" in message
    assert f"belongs in the folder {cache.resolve()}" in message and TINY_FILE in message


def test_explicit_paths_pth_and_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    state = build_sam("test_tiny", checkpoint=None).state_dict()
    torch.save(state, tmp_path / "a.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))
    assert _same_weights(build_sam("test_tiny", tmp_path / "a.pth"), state)
    assert _same_weights(build_sam("test_tiny", str(tmp_path / "a.safetensors")), state)


def test_random_init_differs_between_calls_and_loaded_models_are_complete(tmp_path):
    a, b = build_sam("test_tiny"), build_sam("test_tiny", checkpoint=None)
    assert not torch.equal(a.image_encoder.patch_embed.proj.weight, b.image_encoder.patch_embed.proj.weight)
    assert a.config is MODEL_CONFIGS["test_tiny"] and not a.training
    torch.save(a.state_dict(), tmp_path / "a.pth")
    loaded = build_sam("test_tiny", tmp_path / "a.pth")
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert torch.equal(loaded.pixel_mean, a.pixel_mean) and torch.equal(loaded.pixel_std, a.pixel_std)
    assert all(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_wrong_model_checkpoint_names_the_model_it_is_for(tmp_path):
    torch.save(build_sam("test_tiny").state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"seems to be for test_tiny \(64 px\).*build_sam\('test_tiny'"):
        build_sam("micro_sam", tmp_path / "tiny.pth")


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_identify_state_dict_recognises_every_model(name):
    state = build_sam(name, device="meta").state_dict()
    size = f" ({MODEL_CONFIGS[name].image_size} px)" if MODEL_CONFIGS[name].backbone == "vit" else ""  # Hiera: any
    assert identify_state_dict(state) == (name, name + size)


def test_vit_b_state_is_not_taken_for_vit_l():
    state = build_sam("vit_b", device="meta").state_dict()
    with pytest.raises(CheckpointError, match=r"seems to be for vit_b \(1024 px\)"):
        sam_module.fit_state_dict(state, MODEL_CONFIGS["vit_l"], "sam_vit_b_01ec64.pth")


def test_same_model_with_a_wrong_shape_is_a_checkpoint_error(tmp_path):
    state = build_sam("test_tiny").state_dict()
    state["mask_decoder.mask_tokens.weight"] = state["mask_decoder.mask_tokens.weight"][:2]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="mask_tokens"):
        build_sam("test_tiny", tmp_path / "bad.pth")


def test_corrupt_missing_and_non_checkpoint_files(tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        build_sam("test_tiny", tmp_path / "corrupt.pth")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        build_sam("test_tiny", tmp_path / "corrupt.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="state dict"):
        build_sam("test_tiny", tmp_path / "list.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no SAM model"):
        build_sam("test_tiny", tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        build_sam("test_tiny", tmp_path / "missing.pth")


def test_missing_bundled_micro_checkpoint_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sam_module, "ASSETS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="python -m convlora_lite.pretrain micro_sam"):
        build_sam("micro_sam")


def test_image_size_must_be_a_multiple_of_the_patch_size():
    with pytest.raises(ConfigError, match="multiple of test_tiny's patch size 8"):
        build_sam("test_tiny", image_size=60)


def test_resized_model_runs_and_keeps_windowed_tables(tmp_path):
    original = build_sam("test_tiny")
    state = original.state_dict()
    torch.save(state, tmp_path / "tiny.pth")
    big = build_sam("test_tiny", tmp_path / "tiny.pth", image_size=96)
    assert big.config.image_size == 96 and big.image_encoder.img_size == 96
    enc = big.image_encoder
    assert enc.pos_embed.shape == (1, 12, 12, 32)
    assert torch.equal(enc.pos_embed, resize_pos_embed(state["image_encoder.pos_embed"], 12))
    # block 1 is global: its tables span 2 * 12 - 1 offsets; block 0 (3x3 windows) keeps 2 * 3 - 1
    assert enc.blocks[1].attn.rel_pos_h.shape == (23, 16)
    assert torch.equal(enc.blocks[0].attn.rel_pos_w, state["image_encoder.blocks.0.attn.rel_pos_w"])
    assert torch.equal(enc.blocks[0].attn.qkv.weight, state["image_encoder.blocks.0.attn.qkv.weight"])
    assert enc(torch.randn(1, 3, 96, 96)).shape == (1, 32, 12, 12)
    # at the native size, nothing is resized: the same model exactly
    same = build_sam("test_tiny", tmp_path / "tiny.pth", image_size=64)
    x = torch.randn(1, 3, 64, 64)
    assert _same_weights(same, state)
    assert torch.equal(same.image_encoder(x), original.image_encoder(x))


def test_resize_rel_pos_matches_segment_anythings_own_interpolation():
    table = torch.randn(15, 4)  # a global table for an 8x8 grid
    resized = resize_rel_pos(table, 23)  # for a 12x12 grid
    assert torch.allclose(get_rel_pos(12, 12, resized), get_rel_pos(12, 12, table))


def test_resize_pos_embed_keeps_a_constant_field_and_the_order_of_a_ramp():
    constant = torch.full((1, 4, 4, 3), 0.7)
    assert torch.allclose(resize_pos_embed(constant, 6), torch.full((1, 6, 6, 3), 0.7))
    ramp = torch.arange(8.0).view(1, 8, 1, 1).expand(1, 8, 8, 2)  # grows along rows
    resized = resize_pos_embed(ramp, 12)
    assert (resized[0, 1:, :, 0] > resized[0, :-1, :, 0]).all()
    assert torch.allclose(resized[0, :, 0, 0], resized[0, :, 7, 0])


def test_meta_build_allocates_nothing_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(sam_module, "download_file", lambda *a, **k: pytest.fail("meta build downloaded"))
    model = build_sam("vit_h", device="meta", cache_dir=tmp_path)
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for name, b in model.named_buffers() if name in model.state_dict())
    assert list(tmp_path.iterdir()) == []
    assert build_sam("vit_b", device="meta", image_size=512).image_encoder.pos_embed.shape == (1, 32, 32, 768)
