"""PromptFreeSAM: outputs against segment_anything's own MaskDecoder, shapes, trainable set,
gradients, semantic inference, auxiliary losses and input errors."""
import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from convlora_lite.errors import ConfigError, DataError
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.peft import apply_peft
from convlora_lite.peft.base import AuxLossModule

S = 64  # test_tiny's input size; its grid is 8x8 tokens, its decoder predicts 32x32 logits


def _reference_decoder(model: PromptFreeSAM) -> MaskDecoder:
    """segment_anything's MaskDecoder with Q mask tokens and Q copies of hypernetwork MLP 0,
    holding ``model``'s decoder weights (the IoU head is left as it is: it is not compared)."""
    cfg, q = model.config, model.num_queries
    ref = MaskDecoder(
        transformer_dim=cfg.prompt_embed_dim, num_multimask_outputs=q - 1,
        transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=cfg.prompt_embed_dim,
                                      mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_num_heads),
        iou_head_depth=3, iou_head_hidden_dim=cfg.iou_head_hidden_dim)
    ours = model.mask_decoder.state_dict()
    mlp0 = {k.split(".", 2)[2]: v for k, v in ours.items() if k.startswith("output_hypernetworks_mlps.0.")}
    state = {k: v for k, v in ours.items()
             if not k.startswith(("output_hypernetworks_mlps.", "iou_prediction_head.", "class_head."))}
    state.update({f"output_hypernetworks_mlps.{i}.{k}": v for i in range(q) for k, v in mlp0.items()})
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert all(k.startswith("iou_prediction_head.") for k in missing) and not unexpected
    return ref


def _reference_logits(model: PromptFreeSAM, images: torch.Tensor) -> torch.Tensor:
    """Per image, SAM's decoder with no sparse prompt and the no-mask dense embedding; all masks."""
    ref = _reference_decoder(model)
    pe = model.prompt_encoder.get_dense_pe()
    outs = []
    for image in images:
        emb = model.image_encoder(image[None])
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(emb)
        masks, _ = ref.predict_masks(emb, pe, emb.new_zeros(1, 0, emb.shape[1]), dense)
        outs.append(masks)
    return F.interpolate(torch.cat(outs), size=images.shape[-2:], mode="bilinear", align_corners=False)


def test_binary_output_shapes_and_equals_sams_decoder_with_one_token():
    model = PromptFreeSAM(build_sam("test_tiny"))
    images = torch.randn(2, 3, S, S)
    out = model(images)
    assert out.logits.shape == (2, 1, S, S) and out.mask_logits is None and out.class_logits is None
    assert out.aux_loss.dim() == 0 and out.aux_loss.item() == 0.0
    assert torch.allclose(out.logits, _reference_logits(model, images), atol=1e-5)


def test_binary_decoder_keeps_token_0_and_mlp_0_only():
    sam = build_sam("test_tiny")
    token0 = sam.mask_decoder.mask_tokens.weight[0].clone()
    mlp0 = sam.mask_decoder.output_hypernetworks_mlps[0]
    full = sum(p.numel() for p in sam.parameters())
    dropped = 3 * token0.numel() + 3 * sum(p.numel() for p in mlp0.parameters())
    model = PromptFreeSAM(sam)
    dec = model.mask_decoder
    assert dec.mask_tokens.weight.shape == (1, 32) and torch.equal(dec.mask_tokens.weight[0], token0)
    assert len(dec.output_hypernetworks_mlps) == 1 and dec.output_hypernetworks_mlps[0] is mlp0
    assert dec.class_head is None and model.class_head is None
    assert sum(p.numel() for p in model.parameters()) == full - dropped


def test_multiclass_shapes_token_copies_and_equals_sams_decoder():
    model = PromptFreeSAM(build_sam("test_tiny"), num_classes=3, num_queries=5)
    tokens = model.mask_decoder.mask_tokens.weight
    assert tokens.shape == (5, 32) and torch.equal(tokens, tokens[:1].expand(5, -1))
    assert len(model.mask_decoder.output_hypernetworks_mlps) == 1
    assert model.class_head.in_features == 32 and model.class_head.out_features == 4
    images = torch.randn(2, 3, S, S)
    out = model(images)
    assert out.logits is None and out.mask_logits.shape == (2, 5, S, S) and out.class_logits.shape == (2, 5, 4)
    assert torch.allclose(out.mask_logits, _reference_logits(model, images), atol=1e-5)
    assert PromptFreeSAM(build_sam("test_tiny"), num_classes=4).num_queries == 4


def test_query_jitter_starts_the_copies_apart_by_token_0_s_spread_and_leaves_binary_alone():
    """The cpu preset's tie-breaker (benchmarks/analogs_cpu.md): copy q = token 0 + jitter * std(token 0) * z_q, z
    standard normal from torch's seeded generator (the same seed, the same tokens); a binary model keeps token 0."""
    sam = build_sam("test_tiny")
    token0 = sam.mask_decoder.mask_tokens.weight[:1].detach().clone()

    def tokens(seed, jitter=0.5, num_classes=3):
        torch.manual_seed(seed)
        return PromptFreeSAM(sam, num_classes=num_classes, num_queries=50 if num_classes > 1 else None,
                             query_jitter=jitter).mask_decoder.mask_tokens.weight.detach()

    noise = (tokens(7) - token0) / (0.5 * token0.std())  # 50 x 32 draws of z
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.05
    assert torch.equal(tokens(7), tokens(7)) and not torch.equal(tokens(7), tokens(8))
    assert torch.equal(tokens(7, jitter=0.0), token0.expand(50, -1))
    assert torch.equal(tokens(7, num_classes=1), token0)


def test_semantic_inference_equals_the_direct_formula():
    model = PromptFreeSAM(build_sam("test_tiny"), num_classes=3, num_queries=4).eval()
    with torch.no_grad():
        model.class_head.weight.normal_()  # make the class probabilities far from uniform
    images = torch.randn(2, 3, S, S)
    out = model(images)
    scores = model.predict(images)
    assert scores.shape == (2, 3, S, S)
    expected = torch.zeros(2, 3, S, S)
    for b in range(2):
        for k in range(3):
            for q in range(4):
                p_class = torch.exp(out.class_logits[b, q, k]) / torch.exp(out.class_logits[b, q]).sum()
                expected[b, k] += p_class * (1 / (1 + torch.exp(-out.mask_logits[b, q])))
    assert torch.allclose(scores, expected, atol=1e-5)


def test_binary_predict_is_the_sigmoid_of_the_logits():
    model = PromptFreeSAM(build_sam("test_tiny")).eval()
    images = torch.randn(1, 3, S, S)
    probs = model.predict(images)
    assert probs.shape == (1, S, S) and not probs.requires_grad
    assert torch.allclose(probs, 1 / (1 + torch.exp(-model(images).logits[:, 0])))


@pytest.mark.parametrize("num_classes", [1, 3])
def test_gradients_reach_the_decoder_but_not_the_frozen_parts(num_classes):
    model = apply_peft(PromptFreeSAM(build_sam("test_tiny"), num_classes=num_classes), "decoder_only")
    out = model(torch.randn(2, 3, S, S))
    loss = out.logits.square().mean() if num_classes == 1 else out.mask_logits.mean() + out.class_logits.square().mean()
    loss.backward()
    for name, p in model.mask_decoder.named_parameters():
        if name.startswith("iou_prediction_head."):
            assert not p.requires_grad and p.grad is None
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.prompt_encoder.parameters())


def test_aux_losses_of_adapters_are_summed():
    model = PromptFreeSAM(build_sam("test_tiny"))

    class Leaves(AuxLossModule):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            self.aux_loss = x.mean() * 0 + self.value
            return x

    model.image_encoder.neck.append(Leaves(0.25))
    model.image_encoder.neck.append(Leaves(0.5))
    assert torch.isclose(model(torch.randn(1, 3, S, S)).aux_loss, torch.tensor(0.75))


def test_other_image_sizes_follow_the_encoder():
    model = PromptFreeSAM(build_sam("test_tiny", image_size=96))
    assert model.image_size == 96 and model.config.image_size == 96
    assert model(torch.randn(1, 3, 96, 96)).logits.shape == (1, 1, 96, 96)


def test_meta_model_has_no_storage():
    model = PromptFreeSAM(build_sam("vit_b", device="meta"), num_classes=12)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("channels, hint", [(1, "repeat the gray channel"), (4, "drop the alpha channel")])
def test_non_rgb_images_say_how_to_convert(channels, hint):
    model = PromptFreeSAM(build_sam("test_tiny"))
    with pytest.raises(DataError, match=hint):
        model(torch.randn(1, channels, S, S))


def test_wrong_size_rank_and_dtype_are_clear_errors():
    model = PromptFreeSAM(build_sam("test_tiny"))
    with pytest.raises(DataError, match="takes 64x64 images.*image_size=96"):
        model(torch.randn(1, 3, 96, 96))
    with pytest.raises(DataError, match="unsqueeze"):
        model(torch.randn(3, S, S))
    with pytest.raises(DataError, match="float"):
        model(torch.zeros(1, 3, S, S, dtype=torch.uint8))


def test_invalid_class_and_query_counts():
    with pytest.raises(ConfigError, match="num_classes"):
        PromptFreeSAM(build_sam("test_tiny"), num_classes=0)
    with pytest.raises(ConfigError, match="binary"):
        PromptFreeSAM(build_sam("test_tiny"), num_queries=3)
    with pytest.raises(ConfigError, match="num_queries"):
        PromptFreeSAM(build_sam("test_tiny"), num_classes=3, num_queries=0)
