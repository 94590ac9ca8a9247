"""Parameter accounting: count_parameters, the full SAM totals, the paper's #Params/Ratio rows
(docs/recipe.md) and `convlora params`."""
import json

import pytest
from torch import nn

from convlora_lite.analysis import parameter_counts as params_module
from convlora_lite.analysis.parameter_counts import count_parameters, paper_param_table, sam_parameter_count
from convlora_lite.cli import main
from convlora_lite.models.sam import build_sam
from convlora_lite.peft import METHOD_NAMES

DECODER_ONLY_VIT_H = 3_505_536
LORA_EXTRA_VIT_H = 32 * (3 * 1280 + 3840 * 3)  # 491,520
MOE_EXTRA_VIT_H = 32 * (2 * 3 * 8 + 8 * 84)  # 23,040


def test_count_parameters_by_hand():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10 parameters
    model[0].weight.requires_grad_(False)  # 12 frozen
    assert count_parameters(model) == {"trainable": 14, "total": 26, "ratio": 14 / 26}


@pytest.mark.parametrize("name, total", [("vit_b", 93_735_472), ("vit_l", 312_342_832), ("vit_h", 641_090_608)])
def test_full_sam_totals_match_the_reference(name, total):
    assert sam_parameter_count(name) == total
    sam = build_sam(name, device="meta")
    assert count_parameters(sam.prompt_encoder)["total"] == 6_220
    assert count_parameters(sam.mask_decoder)["total"] == 4_058_340


def test_decoder_only_vit_h_is_the_papers_row():
    (row,) = paper_param_table("vit_h", "decoder_only")
    assert row == {"method": "decoder_only", "trainable": DECODER_ONLY_VIT_H, "added": 0, "total": 641_090_608,
                   "ratio": DECODER_ONLY_VIT_H / 641_090_608}
    assert f"{row['trainable'] / 1e6:.2f}" == "3.51" and f"{row['ratio']:.2%}" == "0.55%"


def test_lora_vit_h_adds_rank_3_factors_to_every_qkv():
    (row,) = paper_param_table("vit_h", ["lora"])
    assert row["trainable"] == DECODER_ONLY_VIT_H + LORA_EXTRA_VIT_H
    assert f"{row['trainable'] / 1e6:.2f}" == "4.00" and f"{row['ratio']:.2%}" == "0.62%"


def test_conv_lora_vit_h_adds_the_moe_convolutions():
    (row,) = paper_param_table("vit_h", ["conv_lora"])
    assert row["trainable"] == DECODER_ONLY_VIT_H + LORA_EXTRA_VIT_H + MOE_EXTRA_VIT_H
    assert row["added"] == LORA_EXTRA_VIT_H + MOE_EXTRA_VIT_H
    assert row["total"] == 641_090_608 + row["added"]  # the Ratio's denominator includes the adapter
    assert f"{row['trainable'] / 1e6:.2f}" == "4.02" and f"{row['ratio']:.2%}" == "0.63%"


def test_the_table_allocates_nothing(monkeypatch):
    seen = []
    real = params_module.count_parameters

    def spy(model):
        seen.extend(p.is_meta for p in model.parameters())
        return real(model)

    monkeypatch.setattr(params_module, "count_parameters", spy)
    paper_param_table("vit_h", METHOD_NAMES)
    assert seen and all(seen)


def test_cli_json_table_and_errors(capsys):
    assert main(["params", "--model", "vit_b", "--method", "decoder_only", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "vit_b" and data["rows"][0]["total"] == 93_735_472
    assert data["rows"][0]["trainable"] == paper_param_table("vit_b", "decoder_only")[0]["trainable"]

    assert main(["params", "--model", "vit_h", "--method", "decoder_only,bitfit"]) == 0
    text = capsys.readouterr().out
    assert "641,090,608" in text and "3.51" in text and "3,505,536" in text and "0.55%" in text
    assert "bitfit" in text

    assert main(["params", "--method", "lora,nope"]) == 2
    assert "nope" in capsys.readouterr().err


SAM2_TOTALS = {"sam2.1_hiera_tiny": 38_962_498, "sam2.1_hiera_small": 46_060_354,
               "sam2.1_hiera_base_plus": 80_850_178, "sam2.1_hiera_large": 224_446_642}


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(SAM2_TOTALS))
def test_sam2_rows_count_from_metas_modules_and_order_conv_lora_lora_decoder(name):
    rows = {row["method"]: row for row in paper_param_table(name, "decoder_only,lora,conv_lora")}
    sam = build_sam(name, device="meta")
    assert sam_parameter_count(name) == SAM2_TOTALS[name] == _n(sam)
    decoder = sam.sam_mask_decoder  # less its score heads and the 3 multimask tokens and hypernetwork MLPs
    expected = (_n(decoder) - _n(decoder.iou_prediction_head) - _n(decoder.pred_obj_score_head) - 3 * 256
                - 3 * _n(decoder.output_hypernetworks_mlps[1]))
    blocks = sam.image_encoder.trunk.blocks
    lora = sum(3 * (b.attn.qkv.in_features + b.attn.qkv.out_features) for b in blocks)  # rank 3: A and B
    moe = len(blocks) * (2 * 3 * 8 + 8 * (3 * 3 * 9 + 3))  # per block: gate (w_gate, w_noise), 8 experts
    assert rows["decoder_only"]["trainable"] == expected and rows["decoder_only"]["added"] == 0
    assert rows["lora"]["trainable"] == expected + lora and rows["lora"]["added"] == lora
    assert rows["conv_lora"]["trainable"] == expected + lora + moe
    assert rows["conv_lora"]["total"] == SAM2_TOTALS[name] + lora + moe
    assert rows["conv_lora"]["trainable"] > rows["lora"]["trainable"] > rows["decoder_only"]["trainable"]


def test_the_sam2_table_says_which_methods_do_not_apply(capsys):
    assert main(["params", "--model", "sam2.1_hiera_tiny"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(lines) == list(METHOD_NAMES)
    assert all(("not available" in lines[m]) == (m in ("vpt", "lst", "sam_adapter")) for m in METHOD_NAMES)
    assert main(["params", "--model", "sam2.1_hiera_tiny", "--json"]) == 0
    rows = {row["method"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["vpt"]["trainable"] is None and "docs/sam2.md" in rows["vpt"]["unavailable"]
    assert main(["params", "--model", "sam2.1_hiera_tiny", "--method", "lst"]) == 2
    assert "LST is not available on SAM 2's Hiera" in capsys.readouterr().err
