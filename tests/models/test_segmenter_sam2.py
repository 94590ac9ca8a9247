"""SAM 2.1's segmenters against Meta's own code: the prompted one against ``SAM2ImagePredictor`` (adapters at
zero), the prompt-free decoder against Meta's ``MaskDecoder`` built with one mask token; what trains."""
import numpy as np
import pytest
import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.sam2_image_predictor import SAM2ImagePredictor

from convlora_lite.errors import ConfigError, DataError
from convlora_lite.models.prompts import Prompts
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptedSAM, PromptFreeSAM
from convlora_lite.models.segmenter_sam2 import PromptedSAM2, PromptFreeSAM2, segmenter_for
from convlora_lite.peft import apply_peft
from convlora_lite.peft.conv_lora import ConvLoRALinear

TINY = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def sam_256():
    torch.manual_seed(0)
    return build_sam(TINY, checkpoint=None, image_size=256)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # Meta's SAM2Transforms
def test_prompted_sam2_with_zero_adapters_equals_metas_image_predictor():
    """Meta's predictor runs at 1024 px only (its feature sizes are fixed), so this test does too."""
    torch.manual_seed(0)
    sam = build_sam(TINY, checkpoint=None)
    predictor = SAM2ImagePredictor(sam)
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    box, point = np.array([100, 150, 600, 700], np.float32), np.array([[400.0, 300.0]], np.float32)
    predictor.set_image(image)
    box_masks, box_iou, _ = predictor.predict(box=box, multimask_output=False, return_logits=True)
    point_masks, point_iou, _ = predictor.predict(point_coords=point, point_labels=np.array([1]),
                                                  multimask_output=True, return_logits=True)
    pixels = predictor._transforms(image)[None]  # Meta's resizing and normalisation (ImageNet's, as ours)

    model = apply_peft(PromptedSAM2(sam, "box"), "conv_lora").eval()  # every B is zero at initialisation
    assert sum(isinstance(m, ConvLoRALinear) for m in model.image_encoder.modules()) == 12
    boxes = Prompts(kind="box", boxes=torch.from_numpy(box)[None], points=None, labels=None,
                    present=torch.tensor([True]))
    with torch.no_grad():
        out = model(pixels, boxes)
    torch.testing.assert_close(out.logits[0], torch.from_numpy(box_masks), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.iou_predictions[0], torch.from_numpy(box_iou), rtol=0, atol=1e-5)

    points = Prompts(kind="point", boxes=None, points=torch.from_numpy(point)[None], labels=torch.ones(1, 1),
                     present=torch.tensor([True]))
    with torch.no_grad():
        out = PromptedSAM2(sam, "point").eval()(pixels, points)
    torch.testing.assert_close(out.multimask_logits[0], torch.from_numpy(point_masks), rtol=0, atol=1e-5)
    assert out.logits.shape == (1, 1, 1024, 1024) and int(out.iou_predictions.argmax()) == int(point_iou.argmax())


@pytest.mark.parametrize("present", [True, False])
def test_an_absent_prompt_gets_the_not_a_point_embedding(sam_256, present):
    model = PromptedSAM2(sam_256, "box")
    prompts = Prompts(kind="box", boxes=torch.tensor([[10.0, 20.0, 100.0, 90.0]]), points=None, labels=None,
                      present=torch.tensor([present]))
    sparse, dense = model.encode_prompts(prompts, 1)
    assert sparse.shape == (1, 3, 256) and dense.shape == (1, 256, 16, 16)  # two corners and SAM 2's padding point
    padding = sam_256.sam_prompt_encoder.not_a_point_embed.weight[0]
    assert torch.equal(sparse[0, 2], padding)
    assert all(torch.equal(corner, padding) is not present for corner in sparse[0, :2])


def test_prompt_free_decoder_is_metas_decoder_with_one_mask_token(sam_256):
    """The binary decoder keeps mask token 0 and MLP 0: Meta's MaskDecoder built with no multimask outputs, given
    those weights and no prompt, computes the same logits."""
    model = PromptFreeSAM2(sam_256).eval()
    images = torch.randn(2, 3, 256, 256)
    meta = sam_256.sam_mask_decoder
    one = MaskDecoder(transformer_dim=256, transformer=meta.transformer, num_multimask_outputs=0,
                      use_high_res_features=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
                      iou_prediction_use_sigmoid=True)
    state = {k: v for k, v in meta.state_dict().items() if not k.startswith(("iou_prediction_head.layers.2",
                                                                              "output_hypernetworks_mlps.1",
                                                                              "output_hypernetworks_mlps.2",
                                                                              "output_hypernetworks_mlps.3"))}
    state["mask_tokens.weight"] = state["mask_tokens.weight"][:1]
    missing, _ = one.load_state_dict(state, strict=False)
    assert missing == ["iou_prediction_head.layers.2.weight", "iou_prediction_head.layers.2.bias"]
    with torch.no_grad():
        low_res, class_logits = model.decode(images)
        backbone = sam_256.forward_image(images)
        _, feats, _, _ = sam_256._prepare_backbone_features(backbone)
        embedding = (feats[-1] + sam_256.no_mem_embed).permute(1, 2, 0).reshape(2, 256, 16, 16)
        high_res = [f.permute(1, 2, 0).reshape(2, -1, 16 * k, 16 * k) for f, k in zip(feats[:2], (4, 2))]
        sparse = torch.empty(2, 0, 256)
        dense = sam_256.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(2, -1, 16, 16)
        expected, *_ = one.predict_masks(embedding, sam_256.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                         repeat_image=False, high_res_features=high_res)
    assert class_logits is None and low_res.shape == (2, 1, 64, 64)
    torch.testing.assert_close(low_res, expected, rtol=0, atol=1e-5)
    assert model(images).logits.shape == (2, 1, 256, 256)


def test_multiclass_queries_start_alike_and_the_heads_stay_frozen(sam_256):
    model = apply_peft(PromptFreeSAM2(sam_256, num_classes=4), "decoder_only")
    images = torch.randn(2, 3, 256, 256)
    out = model(images)
    assert out.mask_logits.shape == (2, 4, 256, 256) and out.class_logits.shape == (2, 4, 5)
    torch.testing.assert_close(out.mask_logits[:, 1:], out.mask_logits[:, :1].expand(-1, 3, -1, -1))
    (out.mask_logits.mean() + out.class_logits.mean()).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"mask_decoder.obj_score_token.weight", "mask_decoder.conv_s0.weight", "mask_decoder.conv_s1.bias",
            "mask_decoder.class_head.weight", "mask_decoder.mask_tokens.weight"} <= trainable
    assert not any(n.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder.iou_prediction_head."))
                   or n == "no_mem_embed" for n in trainable)
    assert not any(n.startswith("mask_decoder.pred_obj_score_head") for n, _ in model.named_parameters())
    assert all(model.get_parameter(n).grad is not None for n in trainable)


def test_prompted_sam2_freezes_metas_score_heads(sam_256):
    model = apply_peft(PromptedSAM2(sam_256, "point"), "lora")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad and n.startswith("mask_decoder.")}
    assert frozen and all(n.startswith(("mask_decoder.iou_prediction_head.", "mask_decoder.pred_obj_score_head."))
                          for n in frozen)


def test_each_backbone_gets_its_segmenter_and_a_wrong_one_says_which(sam_256):
    v1 = build_sam("test_tiny")
    assert type(segmenter_for(sam_256)) is PromptFreeSAM2 and type(segmenter_for(v1, 3)) is PromptFreeSAM
    assert type(segmenter_for(sam_256, prompt="box")) is PromptedSAM2
    assert type(segmenter_for(v1, prompt="point")) is PromptedSAM
    with pytest.raises(ConfigError, match="use PromptFreeSAM2 or PromptedSAM2"):
        PromptFreeSAM(sam_256)
    with pytest.raises(ConfigError, match="use PromptFreeSAM or PromptedSAM"):
        PromptedSAM2(v1, "box")
    with pytest.raises(ConfigError, match="use PromptFreeSAM2 for prompt='none'"):
        PromptedSAM2(sam_256, "none")
    with pytest.raises(DataError, match="multiple of 32"):
        PromptFreeSAM2(sam_256)(torch.randn(1, 3, 200, 200))
