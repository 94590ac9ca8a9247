"""Many prompts per image on SAM 2: :func:`decode` against Meta's ``SAM2ImagePredictor._predict`` on the same
features (boxes, points, both), and :func:`encode`'s per-image features against one image at a time."""
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from convlora_lite.models.promptable import decode, encode, input_size, is_sam2
from convlora_lite.models.sam import build_sam


@pytest.fixture(scope="module")
def micro_sam2():
    torch.manual_seed(0)
    return build_sam("micro_sam2", checkpoint=None)


def _predictor(sam, features):
    """Meta's predictor holding ``features`` of one 256 px image (its set_image only runs at 1024 px)."""
    predictor = SAM2ImagePredictor(sam)
    embedding, high_res = features
    predictor._features = {"image_embed": embedding, "high_res_feats": high_res}
    predictor._orig_hw = [(256, 256)]
    predictor._is_image_set = True
    return predictor


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # Meta's SAM2Transforms
@torch.no_grad()
def test_decode_equals_metas_predictor_on_boxes_points_and_both(micro_sam2):
    sam = micro_sam2
    assert is_sam2(sam) and input_size(sam) == 256
    features = encode(sam, torch.randn(2, 3, 256, 256))[1]
    predictor = _predictor(sam, features)
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [50.0, 60.0, 250.0, 90.0], [0.0, 0.0, 256.0, 256.0]])
    points = (torch.tensor([[[30.5, 40.5]], [[100.5, 70.5]], [[200.5, 220.5]]]), torch.ones(3, 1))
    for kwargs, multimask in ((dict(boxes=boxes), False), (dict(points=points), True),
                              (dict(points=points, boxes=boxes), False)):
        logits, iou = decode(sam, features, multimask=multimask, size=64, **kwargs)
        coords, labels = kwargs.get("points", (None, None))
        _, meta_iou, meta_low_res = predictor._predict(coords, labels, kwargs.get("boxes"), None,
                                                       multimask_output=multimask, return_logits=True)
        assert logits.shape == (3, 3 if multimask else 1, 64, 64)
        torch.testing.assert_close(logits, meta_low_res, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(iou, meta_iou, atol=1e-5, rtol=1e-5)
    full, _ = decode(sam, features, boxes=boxes)
    assert full.shape == (3, 1, 256, 256)


@torch.no_grad()
def test_encode_gives_each_image_the_features_it_gets_alone(micro_sam2):
    images = torch.randn(3, 3, 256, 256)
    batched = encode(micro_sam2, images)
    alone = encode(micro_sam2, images[2:3])[0]
    assert len(batched) == 3 and batched[2][0].shape == (1, 128, 16, 16)
    assert [f.shape for f in batched[2][1]] == [(1, 16, 64, 64), (1, 32, 32, 32)]
    torch.testing.assert_close(batched[2][0], alone[0], atol=1e-5, rtol=1e-5)
    for got, want in zip(batched[2][1], alone[1]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sam_features_are_its_embeddings():
    sam = build_sam("test_tiny")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = encode(sam, images)
        torch.testing.assert_close(features[1], sam.image_encoder(images)[1:2])
    assert not is_sam2(sam) and input_size(sam) == 64
