"""Hugging Face SAM folders (``transformers``' ``SamModel``, ``save_pretrained``) as ``--checkpoint``: the model built
from one computes what ``transformers`` computes, a folder of another size or model type is refused with what to
pass, and a run trains from one and is reloaded from it."""
import functools
import json
import re

import pytest
import torch
import transformers
from safetensors.torch import load_file

from convlora_lite.errors import CheckpointError
from convlora_lite.models.hf_checkpoint import PE, hf_sam_weights, hf_to_meta
from convlora_lite.models.sam import MODEL_CONFIGS, build_sam

#: facebook/sam-vit-base's vision encoder (transformers' SamVisionConfig defaults, spelled out).
VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "global_attn_indexes": [2, 5, 8, 11]}


def _hf_sam(image_size: int = 1024, seed: int = 0):
    """A ``SamModel`` of facebook/sam-vit-base's architecture at ``image_size`` px with seeded weights of useful
    scale: transformers initialises the encoder with std 1e-10, which would make every output nearly constant."""
    config = transformers.SamConfig(
        vision_config=transformers.SamVisionConfig(image_size=image_size, **VIT_B),
        prompt_encoder_config=transformers.SamPromptEncoderConfig(image_size=image_size))
    model = transformers.SamModel(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            noise = torch.randn(tensor.shape, generator=gen)
            if "layer_norm" in name and name.endswith("weight"):
                noise = 1 + 0.2 * noise
            elif tensor.dim() == 1 or name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                noise = 0.2 * noise
            elif not re.search(r"(positional_embedding|embed\.\d+\.weight|embed\.weight|tokens?\.weight)$", name):
                noise = noise / tensor[0].numel() ** 0.5  # weights: 1 / sqrt(fan-in)
            tensor.copy_(noise)
    return model


@pytest.fixture(scope="module")
def vit_b_folder(tmp_path_factory):
    """facebook/sam-vit-base as transformers writes it (1024 px, random weights)."""
    folder = tmp_path_factory.mktemp("hf") / "sam-vit-base"
    _hf_sam().save_pretrained(folder)
    return folder


def test_folder_gives_transformers_embeddings_masks_and_ious(tmp_path):
    """ViT-B's every layer at 256 px (the forward passes at 1024 px take minutes on one CPU thread; the names and
    layouts do not depend on the input size). The same normalised image through both encoders, then a box (both
    multimask settings: all four mask tokens, the box corners' point embeddings) and a positive and a negative
    point with a mask prompt (the other point embeddings, the padding point, the mask downscaling) through both
    prompt encoders and mask decoders."""
    hf = _hf_sam(image_size=256, seed=1)
    hf.save_pretrained(tmp_path)
    sam = build_sam("vit_b", checkpoint=tmp_path, image_size=256)
    gen = torch.Generator().manual_seed(2)
    image, mask = torch.randn(1, 3, 256, 256, generator=gen), torch.randn(1, 1, 64, 64, generator=gen)
    box = torch.tensor([[40.0, 60.0, 200.0, 170.0]])
    points = torch.tensor([[[60.0, 90.0], [180.0, 150.0]]]), torch.tensor([[1, 0]])
    prompts = [  # (Meta's prompt encoder arguments, SamModel's arguments, multimask output)
        ({"points": None, "boxes": box, "masks": None}, {"input_boxes": box[None]}, True),
        ({"points": None, "boxes": box, "masks": None}, {"input_boxes": box[None]}, False),
        ({"points": points, "boxes": None, "masks": mask},
         {"input_points": points[0][None], "input_labels": points[1][None], "input_masks": mask}, True),
    ]
    with torch.inference_mode():
        embedding, reference = sam.image_encoder(image), hf.get_image_embeddings(image)
        assert embedding.shape == reference.shape == (1, 256, 16, 16) and reference.std() > 0.3
        torch.testing.assert_close(embedding, reference, atol=1e-4, rtol=0)
        for meta_prompt, hf_prompt, multimask in prompts:
            sparse, dense = sam.prompt_encoder(**meta_prompt)
            masks, iou = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=multimask)
            out = hf(image_embeddings=reference, multimask_output=multimask, **hf_prompt)
            assert masks.shape == out.pred_masks[0].shape == (1, 3 if multimask else 1, 64, 64)
            assert masks.std() > 0.1
            torch.testing.assert_close(masks, out.pred_masks[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(iou, out.iou_scores[0], atol=1e-4, rtol=0)


def test_every_tensor_of_the_folder_fills_one_of_metas(vit_b_folder):
    """Every Meta tensor filled with its shape, every transformers tensor used once (its 314 tensors: transformers
    writes the tied positional matrix once)."""
    hf_state = load_file(str(vit_b_folder / "model.safetensors"))
    meta = hf_to_meta(hf_state, vit_b_folder)
    expected = build_sam("vit_b", checkpoint=None, device="meta").state_dict()
    assert {k: tuple(v.shape) for k, v in meta.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert sorted(map(id, meta.values())) == sorted(map(id, hf_state.values()))  # each HF tensor used once


def test_the_tied_positional_matrix_may_come_twice_but_not_differ():
    matrix = torch.randn(2, 128)
    state = {"vision_encoder.pos_embed": torch.zeros(1), "prompt_encoder.shared_embedding.positional_embedding": matrix}
    assert hf_to_meta(state, "f")[PE] is matrix
    assert hf_to_meta({**state, "shared_image_embedding.positional_embedding": matrix.clone()}, "f").keys() == {
        "image_encoder.pos_embed", PE}
    with pytest.raises(CheckpointError, match="would both be prompt_encoder.pe_layer"):
        hf_to_meta({**state, "shared_image_embedding.positional_embedding": matrix + 1}, "f")
    with pytest.raises(CheckpointError, match=r"does not have \(vision_encoder\.adapter\.weight\)"):
        hf_to_meta({**state, "vision_encoder.adapter.weight": matrix}, "f")


def test_old_snapshot_pytorch_model_bin_loads_like_the_safetensors(vit_b_folder, tmp_path):
    """Older snapshots hold pytorch_model.bin (read with weights_only) with both names of the tied matrix."""
    state = load_file(str(vit_b_folder / "model.safetensors"))
    state["prompt_encoder.shared_embedding.positional_embedding"] = state["shared_image_embedding.positional_embedding"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((vit_b_folder / "config.json").read_text())
    old, new = build_sam("vit_b", checkpoint=tmp_path), build_sam("vit_b", checkpoint=vit_b_folder)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))


def _folder(tmp_path, config, weights=True):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if weights:
        (tmp_path / "model.safetensors").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("config, weights, message", [
    ({"model_type": "sam"}, True, None),
    ({"model_type": "sam", "vision_config": None}, True, None),
    ({"model_type": "sam", "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24}}, True,
     r"hidden size 1024 and 24 layers \(vit_l\), not vit_b: pass --model vit_l"),
    ({"model_type": "sam", "vision_config": {"hidden_size": 384}}, True, "none of the models this project builds"),
    ({"model_type": "sam", "mask_decoder_config": {"num_attention_heads": 4}}, True,
     "mask_decoder_config.num_attention_heads is 4, vit_b has 8"),
    ({"model_type": "sam"}, False, "no weights file"),
    ({"model_type": "vit"}, True, "of type 'vit', not SAM"),
    ([1], True, "of type None, not SAM"),
])
def test_folder_config_is_checked_against_the_model(tmp_path, config, weights, message):
    """A field absent from config.json has transformers' default (transformers may write only the values that
    differ from them): a bare SAM config is ViT-B."""
    folder = _folder(tmp_path / "f", config, weights)
    if message is None:
        assert hf_sam_weights(folder, MODEL_CONFIGS["vit_b"]) == folder / "model.safetensors"
    else:
        with pytest.raises(CheckpointError, match=message):
            build_sam("vit_b", checkpoint=folder)


def test_folder_without_config_json(tmp_path):
    with pytest.raises(CheckpointError, match="folder without config.json"):
        build_sam("test_tiny", checkpoint=tmp_path)


def test_cli_trains_from_a_folder_and_reloads_it_to_evaluate(vit_b_folder, tmp_path, monkeypatch, capsys):
    """`convlora train --checkpoint FOLDER` (position tables resized 1024 -> 128 px), the folder recorded in the run's
    config and read again by `convlora eval` and by an export's segmenter (the base weights referenced by the sha256
    of the folder's model.safetensors); a folder of another size is a usage error (exit 2)."""
    from convlora_lite.cli import main
    from convlora_lite.data import synthetic
    from convlora_lite.inference import Segmenter

    small = functools.partial(synthetic.generate_synthetic, image_size=64, n_train=2, n_val=1, n_test=1)
    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    out = tmp_path / "run"
    args = ["train", "--dataset", "synth_polyp", "--method", "conv_lora", "--preset", "smoke", "--checkpoint",
            str(vit_b_folder), "--root", str(tmp_path / "data"), "--output-dir", str(out), "--image-size", "128",
            "--epochs", "1", "--max-train-batches", "1"]
    assert main(args + ["--model", "vit_l"]) == 2
    assert "(vit_b), not vit_l: pass --model vit_b" in capsys.readouterr().err
    assert main(args + ["--model", "vit_b"]) == 0 and f"Run directory: {out}" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["checkpoint"] == str(vit_b_folder)
    assert main(["eval", "--run-dir", str(out), "--json"]) == 0
    assert "s_alpha" in json.loads(capsys.readouterr().out)["metrics"]
    assert main(["export", "--run-dir", str(out), "--output", str(tmp_path / "model.safetensors")]) == 0
    model = Segmenter.from_run(tmp_path / "model.safetensors", device="cpu").model
    hf_patch = load_file(str(vit_b_folder / "model.safetensors"))["vision_encoder.patch_embed.projection.weight"]
    assert torch.equal(model.image_encoder.patch_embed.proj.weight, hf_patch)
