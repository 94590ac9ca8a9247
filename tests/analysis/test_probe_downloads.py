"""Notebook 01's downloads: Meta's MAE ViT-B weights and the Imagenette probe set, from a local server."""
import io

import pytest
import torch
from mirror import imagenette_tgz, mae_vit_b_state

from convlora_lite.analysis.linear_probe import build_mae_vit_b_encoder, encoder_features, probe_images
from convlora_lite.data.imagenette import IMAGENETTE_CLASSES, imagenette
from convlora_lite.errors import DataError, DownloadError
from convlora_lite.models.checkpoints import MAE_VIT_B_PARAMS, mae_checkpoint


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_mae_weights_download_resume_check_and_load(server, tmp_path, monkeypatch):
    state = mae_vit_b_state()
    assert sum(v.numel() for k, v in state["model"].items() if k != "norm.weight") > MAE_VIT_B_PARAMS * 0.99
    data = _saved(state)
    server.files["/mirror/mae_pretrain_vit_base.pth"] = data
    server.cut_after = [len(data) // 3]  # the first response hangs up: the next one resumes
    monkeypatch.setenv("CONVLORA_MAE_BASE_URL", server.url("/mirror"))
    path = mae_checkpoint(tmp_path / "cache")
    assert path == tmp_path / "cache" / "mae_pretrain_vit_base.pth" and path.read_bytes() == data
    assert any(r is not None for _, r in server.requests)  # a Range request resumed it
    assert sorted(p.name for p in path.parent.iterdir()) == ["mae_pretrain_vit_base.pth"]  # nothing staged left
    encoder = build_mae_vit_b_encoder("auto", cache_dir=tmp_path / "cache")
    assert len(encoder.blocks) == 12 and encoder.img_size == 224
    assert torch.equal(encoder.blocks[3].attn.qkv.weight, state["model"]["blocks.3.attn.qkv.weight"].float())
    assert encoder_features(encoder, torch.randn(1, 3, 224, 224)).shape == (1, 768)
    assert len(server.requests) == 2  # the cached file is used as it is


def test_a_mirror_that_serves_something_else_is_rejected_and_nothing_is_kept(server, tmp_path):
    server.files["/bad/mae_pretrain_vit_base.pth"] = b"<html>not found</html>" * 20
    with pytest.raises(DownloadError, match="not Meta's MAE ViT-B checkpoint"):
        mae_checkpoint(tmp_path, base_url=server.url("/bad"))
    small = _saved(mae_vit_b_state(depth=2))  # the right names, the wrong model
    server.files["/small/mae_pretrain_vit_base.pth"] = small
    with pytest.raises(DownloadError, match="less than ViT-B's"):
        mae_checkpoint(tmp_path, base_url=server.url("/small"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="sha256"):
        server.files["/x/mae_pretrain_vit_base.pth"] = b"x"
        mae_checkpoint(tmp_path, base_url=server.url("/x"), sha256="0" * 64)


def test_imagenette_downloads_resumes_unpacks_atomically_and_names_its_classes(server, tmp_path):
    data = imagenette_tgz()
    server.files["/imagenette2-160.tgz"] = data
    server.cut_after = [len(data) // 2]
    folder = imagenette(tmp_path, url=server.url("/imagenette2-160.tgz"))
    assert folder == tmp_path / "imagenette2-160" and sorted(p.name for p in folder.iterdir()) == [
        "noisy_imagenette.csv", "train", "val"]
    assert not list(tmp_path.glob(".*unpacking"))
    images, labels, classes = probe_images(32, root=tmp_path, url=server.url("/imagenette2-160.tgz"), max_per_class=1)
    assert classes == list(IMAGENETTE_CLASSES.values()) and classes[0] == "tench"
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == list(range(10))
    requests = len(server.requests)
    imagenette(tmp_path, url=server.url("/imagenette2-160.tgz"))
    assert len(server.requests) == requests  # unpacked once, used as it is

    # a user's ImageNet folder instead
    images, labels, classes = probe_images(16, imagenet_dir=folder / "train", max_classes=2)
    assert classes == ["tench", "English springer"] and images.shape == (4, 3, 16, 16)


def test_a_wrong_or_corrupt_imagenette_archive_leaves_no_folder(server, tmp_path):
    server.files["/wrong/imagenette2-160.tgz"] = imagenette_tgz(drop="n03888605")
    with pytest.raises(DataError, match="n03888605"):
        imagenette(tmp_path / "a", url=server.url("/wrong/imagenette2-160.tgz"))
    assert not (tmp_path / "a" / "imagenette2-160").exists() and not list((tmp_path / "a").glob(".*unpacking"))
    server.files["/corrupt/imagenette2-160.tgz"] = imagenette_tgz()[:300]
    with pytest.raises(DownloadError, match="corrupt"):
        imagenette(tmp_path / "b", url=server.url("/corrupt/imagenette2-160.tgz"))
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == []
