"""Prompted fine-tuning (TrainConfig.prompt box/point) end to end on test_tiny, its test IoU and its zero-shot
baseline against direct computations, the config rules and resuming runs written before the field."""

import numpy as np
import pytest
import torch
from test_trainer import BINARY, MULTI, Discs, config, datasets

from convlora_lite.errors import ConfigError
from convlora_lite.models.prompts import eval_prompts
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptedSAM
from convlora_lite.training import TrainConfig, build_model, devices, evaluate, fit, load_run
from convlora_lite.training.evaluation import zero_shot_baseline
from convlora_lite.training.metrics import BinarySegMetrics
from convlora_lite.training.rundir import RunDir


@pytest.mark.parametrize("prompt,method", [("box", "conv_lora"), ("point", "lora")])
def test_tiny_fit_with_prompts_writes_the_zero_shot_baseline(tmp_path, prompt, method):
    cfg = config(tmp_path, method=method, epochs=2, prompt=prompt)
    run = fit(cfg, spec=BINARY, datasets=datasets())
    assert TrainConfig.of_run(run).prompt == prompt
    metrics = RunDir(run).read_metrics()
    assert metrics["prompt"] == prompt and set(metrics["zero_shot"]) == set(metrics["test"]) == {"test"}
    assert 0 <= metrics["test"]["test"]["iou"] <= 1 and 0 <= metrics["zero_shot"]["test"]["iou"] <= 1
    model, loaded = load_run(run)
    assert isinstance(model, PromptedSAM) and loaded.prompt == prompt
    device = devices.resolve_device(cfg.device)
    precision = devices.resolve_precision(cfg.precision, device)
    # The test IoU by hand: the best weights on the trainer's device, in its precision and its batches (the
    # probabilities sit near 0.5 after 2 epochs, so only the same computation binarises every pixel alike), each
    # image with its evaluation prompt, binarised at > 0.5; IoU per image (an empty union would count 1: every test
    # disc has foreground), then the mean over images, as BinarySegMetrics defines it.
    model, test = model.to(device), Discs(4, 2)
    inter, union = [], []
    with torch.no_grad():
        for start in range(0, len(test), cfg.batch_size):
            items = [test[i] for i in range(start, min(start + cfg.batch_size, len(test)))]
            masks = torch.stack([item["mask"] for item in items])
            prompts = eval_prompts(masks, [item["name"] for item in items], prompt).to(device)
            with devices.autocast(device, precision):
                probs = torch.sigmoid(model(torch.stack([item["image"] for item in items]).to(device), prompts).logits)
            pred, gt = probs[:, 0].float().cpu().numpy() > 0.5, masks.numpy() > 0.5
            inter += list(np.sum(pred & gt, axis=(1, 2)))
            union += list(np.sum(pred | gt, axis=(1, 2)))
    assert min(union) > 0 and min(inter) > 0  # no empty-union special case, no prediction missing its disc
    ious = np.array(inter) / np.array(union)
    assert np.ptp(ious) > 1e-3 and abs(np.mean(ious) - np.sum(inter) / np.sum(union)) > 5e-4  # per image, not pooled
    assert metrics["test"]["test"]["iou"] == pytest.approx(np.mean(ious), abs=1e-5)
    got = evaluate(run, "test", spec=BINARY, dataset=Discs(4, 2))  # where and how the trainer scored it
    assert got == pytest.approx(metrics["test"]["test"], abs=1e-6)
    zero = zero_shot_baseline(cfg, Discs(4, 2), BINARY, device=device,
                              autocast=lambda: devices.autocast(device, precision))
    assert zero == pytest.approx(metrics["zero_shot"]["test"], abs=1e-6)


def test_the_zero_shot_baseline_is_the_untrained_promptable_sam(tmp_path):
    cfg = config(tmp_path, prompt="box", batch_size=3)
    data = Discs(5, 2)
    torch.manual_seed(cfg.seed)
    sam = build_sam(cfg.model, cfg.checkpoint, image_size=cfg.image_size).eval()
    direct = BinarySegMetrics()
    with torch.no_grad():
        for i in range(len(data)):  # one image at a time, SAM's own prompt encoder and decoder
            item = data[i]
            prompts = eval_prompts(item["mask"][None], [item["name"]], "box")
            sparse, dense = sam.prompt_encoder(points=None, boxes=prompts.boxes, masks=None)
            low, _ = sam.mask_decoder(image_embeddings=sam.image_encoder(item["image"][None]),
                                      image_pe=sam.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=dense, multimask_output=False)
            logits = torch.nn.functional.interpolate(low, size=item["mask"].shape, mode="bilinear",
                                                     align_corners=False)
            direct.update(logits.sigmoid()[:, 0], item["mask"][None])
    assert zero_shot_baseline(cfg, data, BINARY) == pytest.approx(direct.compute(), abs=1e-6)


def test_prompted_models_keep_the_prompt_encoder_frozen(tmp_path):
    model = build_model(config(tmp_path, method="lora", prompt="point"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("image_encoder.") for n in trainable)
    assert "mask_decoder.mask_tokens.weight" in trainable
    assert not any(n.startswith(("prompt_encoder.", "mask_decoder.iou_prediction_head.")) for n in trainable)


def test_prompt_values_and_multiclass_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="choose one of none, box, point"):
        config(tmp_path, prompt="mask")
    with pytest.raises(ConfigError, match="for binary tasks: discs3 has 3 classes"):
        config(tmp_path, spec=MULTI, prompt="box")


def test_a_run_written_before_the_prompt_field_resumes(tmp_path):
    cfg = config(tmp_path, epochs=1)
    run = fit(cfg, spec=BINARY, datasets=datasets())
    stored = RunDir(run).read_config_dict()
    del stored["prompt"]
    RunDir(run).write_config(stored)
    resumed = TrainConfig.resolve(BINARY.name, "decoder_only", "smoke", spec=BINARY, **{
        k: v for k, v in cfg.to_dict().items() if k not in ("dataset", "method", "preset", "resume")}, resume=True)
    assert resumed.changed_fields(stored) == []
    assert fit(resumed, spec=BINARY, datasets=datasets()) == run
    assert TrainConfig.from_dict(stored).prompt == "none"
    with pytest.raises(ConfigError, match="prompt: run has 'none', now 'box'"):
        fit(TrainConfig.from_dict({**stored, "prompt": "box", "resume": True}), spec=BINARY, datasets=datasets())


def test_cli_trains_with_a_box_prompt_and_refuses_one_for_a_multiclass_task(tmp_path, monkeypatch, capsys):
    import functools

    from convlora_lite.cli import main
    from convlora_lite.data import synthetic

    small = functools.partial(synthetic.generate_synthetic, image_size=64, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    root, out = tmp_path / "data", tmp_path / "run"
    args = ["train", "--dataset", "synth_leaf", "--method", "lora", "--preset", "smoke", "--model", "test_tiny",
            "--checkpoint", "none", "--root", str(root), "--output-dir", str(out), "--prompt", "box"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "\ntest test: s_alpha" in printed and "\nzero-shot test: s_alpha" in printed
    assert TrainConfig.of_run(out).prompt == "box"
    assert set(RunDir(out).read_metrics()["zero_shot"]) == {"test"}
    assert main(["eval", "--run-dir", str(out), "--json"]) == 0
    capsys.readouterr()
    multi = ["train", "--dataset", "synth_trans10k", "--method", "lora", "--preset", "smoke", "--model", "test_tiny",
             "--root", str(root), "--output-dir", str(tmp_path / "multi"), "--prompt", "point"]
    assert main(multi) == 2
    assert "for binary tasks" in capsys.readouterr().err
