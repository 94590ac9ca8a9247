"""The training loop on test_tiny with a tiny in-memory dataset of generated discs."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.utils.data import Dataset

from convlora_lite.errors import ConfigError
from convlora_lite.models.activation_checkpointing import enable_activation_checkpointing
from convlora_lite.plots.figures import save_loss_curve
from convlora_lite.reports.results_tables import run_hours
from convlora_lite.training import RunDir, TrainConfig, Trainer, build_model, devices, evaluate, fit, load_run
from convlora_lite.training.optim import linear_decay, param_groups

BINARY = SimpleNamespace(name="discs", task="binary", classes=("background", "foreground"), loss="structure",
                         select_metric="iou", select_mode="max", test_splits=("test",), epochs=3, lr=1e-3)
MULTI = SimpleNamespace(name="discs3", task="multiclass", classes=("background", "a", "b"), loss="set",
                        select_metric="miou", select_mode="max", test_splits=("test",), epochs=1, lr=1e-3)


class Discs(Dataset):
    """``n`` 64 px images with a bright disc; mask = the disc (binary float, or class 1/2 with a
    255 border for ``classes=3``). ``flip=True`` flips horizontally with p=0.5 using the global
    torch RNG, as a training transform does."""

    def __init__(self, n, seed=0, flip=False, classes=1, size=64):
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.items, self.flip = [], flip
        for i in range(n):
            cx, cy = torch.randint(16, 48, (2,), generator=g).tolist()
            r = int(torch.randint(6, 14, (1,), generator=g))
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r
            image = torch.randn(3, size, size, generator=g) * 0.3 + disc.float() * 1.5
            if classes == 1:
                mask = disc.float()
            else:
                mask = disc.long() * (1 + i % 2)
                mask[0] = 255
            self.items.append(dict(image=image, mask=mask, name=f"disc{i}"))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = dict(self.items[i])
        if self.flip and torch.rand(()) < 0.5:
            item["image"], item["mask"] = item["image"].flip(-1), item["mask"].flip(-1)
        return item


def datasets(n_train=8, flip=False, classes=1):
    return {"train": Discs(n_train, 0, flip, classes), "val": Discs(4, 1, classes=classes),
            "test": Discs(4, 2, classes=classes)}


def config(tmp_path, name="run", spec=BINARY, method="decoder_only", **overrides):
    options = dict(model="test_tiny", epochs=3, batch_size=2, max_train_batches=None, max_eval_batches=None,
                   output_dir=str(tmp_path / name), lr=1e-3)
    options.update(overrides)
    return TrainConfig.resolve(spec.name, method, "smoke", spec=spec, **options)


def history(run_dir):
    return pd.read_csv(run_dir / "history.csv").drop(columns=["time_s"])


def trainable_names(cfg):
    return {n for n, p in build_model(cfg).named_parameters() if p.requires_grad}


def test_loss_decreases_and_run_dir_is_complete(tmp_path):
    cfg = config(tmp_path, epochs=5)
    run = fit(cfg, spec=BINARY, datasets=datasets(), on_finish=save_loss_curve)
    hist = history(run)
    assert list(hist["epoch"]) == [1, 2, 3, 4, 5]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert {"train_loss", "aux_loss", "lr", "val_iou", "val_s_alpha"} <= set(hist.columns)
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["best_epoch"] == int(hist["val_iou"].idxmax()) + 1
    assert metrics["val"]["iou"] == pytest.approx(hist["val_iou"].max())
    assert set(metrics["test"]) == {"test"} and 0 <= metrics["test"]["test"]["iou"] <= 1
    names = trainable_names(cfg)
    assert names and all(n.startswith("mask_decoder.") for n in names)  # decoder_only: the decoder alone
    for file in ("best.safetensors", "last.safetensors"):
        assert set(load_file(run / "checkpoint" / file)) == names
    assert (run / "checkpoint" / "resume.pt").exists() and (run / "figures" / "loss_curve.png").stat().st_size > 0


def test_load_run_and_evaluate_reproduce_the_test_metrics(tmp_path):
    run = fit(config(tmp_path, epochs=2), spec=BINARY, datasets=datasets())
    model, cfg = load_run(run)
    best = load_file(run / "checkpoint" / "best.safetensors")
    for name, p in model.named_parameters():
        if name in best:
            assert torch.equal(p, best[name])
    expected = json.loads((run / "metrics.json").read_text())["test"]["test"]
    got = evaluate(run, "test", spec=BINARY, dataset=Discs(4, 2))  # where and how the trainer scored it
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method", ["decoder_only", "conv_lora"])
def test_evaluate_scores_a_bf16_run_in_bf16_as_its_trainer_did(tmp_path, monkeypatch, method):
    """``convlora eval`` reproduces a bf16 run's test scores: it runs the run's own precision."""
    from convlora_lite.training import devices

    run = fit(config(tmp_path, method=method, epochs=1, precision="bf16"), spec=BINARY, datasets=datasets())
    expected = json.loads((run / "metrics.json").read_text())["test"]["test"]
    assert evaluate(run, "test", spec=BINARY, dataset=Discs(4, 2)) == pytest.approx(expected, abs=1e-6)
    # the same weights in fp32 score differently: the precision is what the first check sees
    monkeypatch.setattr(devices, "inference_precision", lambda precision, device, model=None: "fp32")
    assert evaluate(run, "test", spec=BINARY, dataset=Discs(4, 2))["s_alpha"] != pytest.approx(expected["s_alpha"],
                                                                                                abs=1e-6)


# Pinned to the CPU (device="cpu") wherever a test needs two trainings to agree bit for bit: CUDA's
# backward of interpolate and of indexing accumulates with atomics, in no fixed order.
def test_two_runs_are_identical(tmp_path):
    a = fit(config(tmp_path, "a", epochs=2, device="cpu"), spec=BINARY, datasets=datasets(flip=True))
    b = fit(config(tmp_path, "b", epochs=2, device="cpu"), spec=BINARY, datasets=datasets(flip=True))
    pd.testing.assert_frame_equal(history(a), history(b))
    wa, wb = load_file(a / "checkpoint/last.safetensors"), load_file(b / "checkpoint/last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class Interrupt(Exception):
    pass


def _interrupt_after(epoch):
    def callback(done, row):
        if done == epoch:
            raise Interrupt
    return callback


@pytest.mark.parametrize("method", ["decoder_only", "conv_lora"])
def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, method):
    # flip augmentation (and Conv-LoRA's gate noise) draw from the global RNG: resume must restore it.
    # Bit for bit: pinned to the CPU (see test_two_runs_are_identical).
    whole = fit(config(tmp_path, "whole", method=method, grad_accum=2, device="cpu"), spec=BINARY,
                datasets=datasets(flip=True))
    cut = config(tmp_path, "cut", method=method, grad_accum=2, device="cpu")
    with pytest.raises(Interrupt):
        fit(cut, spec=BINARY, datasets=datasets(flip=True), on_epoch_end=_interrupt_after(1))
    assert len(history(tmp_path / "cut")) == 1 and not (tmp_path / "cut" / "metrics.json").exists()
    first_segment = pd.read_csv(tmp_path / "cut" / "history.csv").time_s.tolist()
    resumed = fit(TrainConfig(**{**cut.to_dict(), "resume": True}), spec=BINARY, datasets=datasets(flip=True))
    pd.testing.assert_frame_equal(history(whole), history(resumed))
    for file in ("last.safetensors", "best.safetensors"):
        a, b = load_file(whole / "checkpoint" / file), load_file(resumed / "checkpoint" / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (whole, resumed))
    test_s = mb.pop("test_s")
    assert ma.pop("test_s") >= 0 and test_s >= 0 and ma == mb  # all but the test pass's wall time
    # the run's recorded time (convlora table's device-hours): both segments' epochs, the first one's kept as timed
    times = pd.read_csv(resumed / "history.csv").time_s
    assert len(times) == 3 and times[0] == first_segment[0] and (mb["device"], mb["processes"]) == ("cpu", 1)
    assert run_hours([resumed]).hours[0] == pytest.approx((times.sum() + test_s) / 3600)


def test_resume_of_a_completed_run_is_a_no_op(tmp_path, capsys):
    cfg = config(tmp_path, epochs=1)
    run = fit(cfg, spec=BINARY, datasets=datasets())
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert fit(TrainConfig(**{**cfg.to_dict(), "resume": True}), spec=BINARY, datasets=datasets()) == run
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    assert "already complete" in capsys.readouterr().out


def test_resume_with_another_config_or_reuse_without_resume_is_an_error(tmp_path):
    cfg = config(tmp_path, epochs=1)
    fit(cfg, spec=BINARY, datasets=datasets())
    with pytest.raises(ConfigError, match="--resume"):
        fit(cfg, spec=BINARY, datasets=datasets())
    with pytest.raises(ConfigError, match="lr"):
        fit(TrainConfig(**{**cfg.to_dict(), "resume": True, "lr": 5e-4}), spec=BINARY, datasets=datasets())


def test_no_weight_decay_on_biases_and_norms():
    model = build_model(TrainConfig("discs", "decoder_only", model="test_tiny", image_size=64, checkpoint=None))
    for p in model.image_encoder.parameters():  # make every encoder tensor trainable to see them all
        p.requires_grad_(True)
    decay, no_decay = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    expected_no_decay = {f"{m_name}.{p_name}".lstrip(".") for m_name, m in model.named_modules()
                         for p_name, _ in m.named_parameters(recurse=False)
                         if p_name == "bias" or "Norm" in type(m).__name__}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(no_decay["names"]) == expected_no_decay & trainable
    assert set(decay["names"]) == trainable - expected_no_decay
    assert "image_encoder.blocks.0.norm1.weight" in no_decay["names"]
    assert "mask_decoder.output_upscaling.1.weight" in no_decay["names"]  # SAM's LayerNorm2d
    assert "image_encoder.pos_embed" in decay["names"] and "mask_decoder.mask_tokens.weight" in decay["names"]


def test_linear_decay_reaches_zero_at_the_last_step(tmp_path):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = linear_decay(opt, 4)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5, 0.375, 0.25, 0.125]) and opt.param_groups[0]["lr"] == 0.0
    run = fit(config(tmp_path, epochs=2, batch_size=3), spec=BINARY, datasets=datasets(n_train=8))
    state = RunDir(run).load_state()
    assert state["scheduler"]["last_epoch"] == 2 * 3  # 2 epochs x ceil(8 / 3) optimizer steps
    assert all(g["lr"] == 0.0 for g in state["optimizer"]["param_groups"])
    # the lr of each epoch's last step: 1e-3 * (1 - s / 6) with s = 2, 5
    assert list(history(run)["lr"]) == pytest.approx([1e-3 * 4 / 6, 1e-3 * 1 / 6])


def _trainer(cfg, data, spec=BINARY):
    """A :class:`Trainer` handed its parts, as :func:`fit` builds them (seeded model, given datasets)."""
    set_seed(cfg.seed)
    return Trainer(cfg, spec).setup(build_model(cfg), data)


def _grads_at_step(trainer):
    """Record every optimizer step's gradients (after clipping) of ``trainer``."""
    seen = []

    def hook(optimizer, args, kwargs):
        seen.append({i: p.grad.clone() for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])})
    trainer.optimizer.optimizer.register_step_pre_hook(hook)
    return seen


def _total_norm(grads):
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])).item()


def test_gradient_clipping_is_applied(tmp_path):
    # Pinned to the CPU (fp32): on CUDA, fp16's loss scaler may skip the first steps (an overflow at its
    # initial scale), and this test counts the optimizer's steps.
    clipped = _trainer(config(tmp_path, "a", max_grad_norm=1e-3, device="cpu"), datasets())
    free = _trainer(config(tmp_path, "b", max_grad_norm=None, device="cpu"), datasets())
    seen_clipped, seen_free = _grads_at_step(clipped), _grads_at_step(free)
    clipped.train_epoch(0)
    free.train_epoch(0)
    assert len(seen_clipped) == 4
    assert all(_total_norm(g) > 1e-2 for g in seen_free[:1])  # the first step's gradient is large
    assert _total_norm(seen_clipped[0]) == pytest.approx(1e-3, rel=1e-3)  # ... and is clipped to 1e-3
    assert all(_total_norm(g) <= 1e-3 * 1.001 for g in seen_clipped)


def test_accumulating_two_batches_of_one_equals_one_batch_of_two(tmp_path):
    # Pinned to the CPU (fp32): the sums agree to fp32 rounding; fp16 on CUDA rounds them differently.
    data = {"train": Discs(2), "val": Discs(2, 1)}
    accumulated = _trainer(config(tmp_path, "a", batch_size=1, grad_accum=2, device="cpu"), data)
    batched = _trainer(config(tmp_path, "b", batch_size=2, grad_accum=1, device="cpu"), data)
    seen_a, seen_b = _grads_at_step(accumulated), _grads_at_step(batched)
    accumulated.train_epoch(0)
    batched.train_epoch(0)
    assert len(seen_a) == len(seen_b) == 1
    for i in seen_a[0]:
        torch.testing.assert_close(seen_a[0][i], seen_b[0][i], rtol=1e-4, atol=1e-7)


def test_activation_checkpointing_gives_the_same_gradients():
    cfg = TrainConfig("discs", "decoder_only", model="test_tiny", image_size=64, checkpoint=None)
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg).train()
        for p in model.image_encoder.parameters():
            p.requires_grad_(True)
        if checkpointed:
            enable_activation_checkpointing(model.image_encoder)
        model(Discs(2)[0]["image"][None].repeat(2, 1, 1, 1)).logits.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    assert grads[0]["image_encoder.blocks.0.attn.qkv.weight"].abs().sum() > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    # lr 1e-12: the validation IoU cannot improve after epoch 1
    run = fit(config(tmp_path, epochs=5, lr=1e-12, early_stopping_patience=2), spec=BINARY, datasets=datasets())
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["epochs_run"], metrics["best_epoch"], metrics["stopped_early"]) == (3, 1, True)
    assert len(history(run)) == 3


def test_multiclass_run_scores_miou(tmp_path):
    # 12 epochs of 32 discs at lr 5e-3: the tiny random model leaves "background everywhere" (mIoU 0.308) at
    # epoch 6 and its best weights label the discs (test mIoU 0.69 here); with fewer steps it predicts one class
    # only. Pinned to the CPU (fp32) so that this trajectory, and the check below, are those of every host.
    cfg = config(tmp_path, spec=MULTI, epochs=12, lr=5e-3, device="cpu")
    assert cfg.num_classes == 3
    run = fit(cfg, spec=MULTI, datasets=datasets(n_train=32, classes=3))
    metrics = json.loads((run / "metrics.json").read_text())
    assert "val_miou" in history(run).columns
    # The test mIoU by hand: the best weights' MaskFormer scores (sum over queries of class probability, no-object
    # dropped, times mask sigmoid) in the trainer's batches, argmax over the 3 classes at the 64 px of the masks;
    # one confusion matrix over the whole split, the 255 border row left out; IoU per class, mean over classes.
    model, _ = load_run(run)
    test = Discs(4, 2, classes=3)
    labels = []
    with torch.no_grad():
        for start in range(0, len(test), cfg.batch_size):
            out = model(torch.stack([test[i]["image"] for i in range(start, min(start + cfg.batch_size, len(test)))]))
            scores = torch.einsum("bqk,bqhw->bkhw", out.class_logits.softmax(-1)[..., :-1], out.mask_logits.sigmoid())
            labels.append(scores.argmax(1).numpy())
    pred, target = np.concatenate(labels), np.stack([test[i]["mask"].numpy() for i in range(len(test))])
    assert pred.shape == target.shape == (4, 64, 64)
    valid = target != 255
    confusion = np.array([[np.sum(valid & (target == t) & (pred == p)) for p in range(3)] for t in range(3)])
    assert confusion.sum() == 4 * 63 * 64 and (confusion.sum(1) > 0).all()  # every class occurs: no NaN IoU
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    # not a constant prediction: at least two classes predicted, and within one image
    assert np.count_nonzero(confusion.sum(0)) >= 2 and any(len(np.unique(p)) >= 2 for p in pred)
    assert metrics["test"]["test"]["miou"] == pytest.approx(iou.mean(), abs=1e-6)
    assert list(metrics["test"]["test"]["iou_per_class"].values()) == pytest.approx(list(iou), abs=1e-6)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="preset"):
        TrainConfig.resolve("discs", "decoder_only", "fast", spec=BINARY)
    with pytest.raises(ConfigError, match="method"):
        TrainConfig.resolve("discs", "lora_plus", "smoke", spec=BINARY)
    with pytest.raises(ConfigError, match="dataset"):
        TrainConfig.resolve("polyps", "decoder_only", "smoke")
    with pytest.raises(ConfigError, match="model"):
        TrainConfig.resolve("discs", "decoder_only", "smoke", spec=BINARY, model="vit_x")
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig.resolve("discs", "decoder_only", "smoke", spec=BINARY, precision="fp8")
    with pytest.raises(ConfigError, match="Unknown training option"):
        TrainConfig.resolve("discs", "decoder_only", "smoke", spec=BINARY, epoch=3)


def test_cli_trains_a_synthetic_dataset_end_to_end_and_evaluates_it(tmp_path, monkeypatch, capsys):
    """Through the real registry, synthetic generator, datasets, losses and metrics."""
    import functools

    from convlora_lite.cli import main
    from convlora_lite.data import synthetic

    small = functools.partial(synthetic.generate_synthetic, image_size=64, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    root, out = tmp_path / "data", tmp_path / "run"
    args = ["train", "--dataset", "synth_polyp", "--method", "decoder_only", "--preset", "smoke", "--model",
            "test_tiny", "--checkpoint", "none", "--root", str(root), "--output-dir", str(out), "--epochs", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "generating it" in printed and f"Run directory: {out}" in printed and "test test: s_alpha" in printed
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["epochs"], config["data_root"], config["checkpoint"]) == (
        "synth_polyp", 2, str(root), None)
    assert len(history(out)) == 2
    assert main(["eval", "--run-dir", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["metrics"]
    assert set(scored) == {"s_alpha", "e_phi", "f_beta_w", "mae", "iou", "dice", "ber"}
    assert main(args + ["--resume"]) == 0 and "already complete" in capsys.readouterr().out


def test_cli_says_how_to_download_a_missing_real_dataset(tmp_path, capsys):
    from convlora_lite.cli import main

    args = ["train", "--dataset", "camo", "--method", "decoder_only", "--preset", "smoke", "--model", "test_tiny",
            "--root", str(tmp_path), "--output-dir", str(tmp_path / "run")]
    assert main(args) == 2
    assert "convlora data download camo" in capsys.readouterr().err


def test_bf16_after_fp32_in_one_process_and_fp16_needs_cuda(tmp_path):
    """fp16 is refused off CUDA, on every host; fp16 on CUDA (with its loss scaler) is trained under CUDA's
    precision policy in tests/training/test_cuda_precision.py."""
    fp32 = fit(config(tmp_path, "fp32", epochs=1, precision="fp32"), spec=BINARY, datasets=datasets(n_train=2))
    run = fit(config(tmp_path, "bf16", epochs=1, precision="bf16", activation_checkpointing=True, device="cpu"),
              spec=BINARY, datasets=datasets(n_train=2))
    assert history(run)["train_loss"].notna().all()
    # The bf16 run against the fp32 one: same seed, weights and single batch (activation checkpointing changes no
    # value). Its one epoch's loss is that of the initial weights, where bf16 (8 mantissa bits) moves the logits by
    # 1.1 % (relative L2); they are small (std 0.019), so the loss moves by 4.0e-6 relative here (up to 2.8e-5
    # over seeds 1-5). 5e-5 bounds that and still tells apart zero logits (2.3e-4), the loss rounded to bf16
    # (1.53125: 1.0e-4) or another seed's weights (3.3e-3).
    assert history(run)["train_loss"].iloc[0] == pytest.approx(history(fp32)["train_loss"].iloc[0], rel=5e-5)
    # The test scores after one step: the probabilities sit near 0.5, so IoU, Dice, BER and E_phi (at fixed
    # thresholds) differ (IoU 0.083 / 0.059) and are not compared. S_alpha, weighted F_beta and MAE read the
    # min-max normalised prediction, where bf16's ~1 % logit error stays ~1 %: here they differ by 1.6e-5, 6.0e-5
    # and 2.0e-4, over seeds 1-5 by up to 1.2e-2, 5.1e-4 and 1.8e-2; the bounds are about twice those. They catch
    # another seed's weights or lr 1e-2's (S_alpha 0.04 and MAE 0.05-0.1 away), not a missing step (0.003).
    got, expected = (RunDir(r).read_metrics()["test"]["test"] for r in (run, fp32))
    for key, bound in (("s_alpha", 0.025), ("f_beta_w", 1e-3), ("mae", 0.04)):
        assert got[key] == pytest.approx(expected[key], abs=bound), key
    assert RunDir(run).load_state()["scaler"] is None  # bf16 needs none
    with pytest.raises(ConfigError, match="fp16"):
        fit(config(tmp_path, "fp16", precision="fp16", device="cpu"), spec=BINARY, datasets=datasets())


def test_a_run_prints_its_size_before_it_starts_and_one_duration_estimate(tmp_path, capsys):
    fit(config(tmp_path, epochs=2), spec=BINARY, datasets=datasets(n_train=16))  # 8 batches of 2 per epoch
    lines = capsys.readouterr().out.splitlines()
    size = [line for line in lines if "training images" in line]
    assert size == [line for line in size if line.startswith("discs / decoder_only / seed")] and len(size) == 1
    assert "16 training images, 8 batches of 2 x 2 epochs = 16 optimizer steps (accumulation 1)" in size[0]
    device = devices.resolve_device("auto")  # the smoke preset runs where the project would
    assert f"test_tiny at 64 px, {devices.resolve_precision('auto', device)} on {device}" in size[0]
    estimates = [line for line in lines if line.startswith("Estimated training time:")]
    assert len(estimates) == 1 and "per batch of the first 6" in estimates[0]
    # a one-batch run estimates from that batch; a finished run prints neither line
    cfg = config(tmp_path, "short", epochs=1, max_train_batches=1)
    fit(cfg, spec=BINARY, datasets=datasets())
    out = capsys.readouterr().out
    assert "(at most 1 per epoch)" in out and out.count("Estimated training time:") == 1
    fit(TrainConfig(**{**cfg.to_dict(), "resume": True}), spec=BINARY, datasets=datasets())
    out = capsys.readouterr().out
    assert "training images" not in out and "Estimated" not in out


class FakeSegmenter(torch.nn.Module):
    """A 1x1 convolution standing in for SAM: what the trainer needs of a model, and nothing else."""

    num_classes = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, images):
        logits = self.conv(images)
        return SimpleNamespace(logits=logits, multimask_logits=None, aux_loss=logits.new_zeros(()))

    @staticmethod
    def probabilities(out):
        return out.logits.sigmoid()[:, 0]


def test_the_trainer_runs_the_loop_with_the_parts_it_is_handed(tmp_path):
    """No SAM, no registry: a fake model and in-memory data train, validate, save, test and call back."""
    finished = []
    cfg = config(tmp_path, epochs=2, device="cpu")
    trainer = Trainer(cfg, BINARY, on_finish=lambda run, spec: finished.append((run.path, spec.name)))
    assert not trainer.completed
    run = trainer.setup(FakeSegmenter(), datasets()).fit()
    assert finished == [(run, "discs")] and list(history(run)["epoch"]) == [1, 2]
    assert set(load_file(run / "checkpoint" / "best.safetensors")) == {"conv.weight", "conv.bias"}
    assert Trainer(TrainConfig(**{**cfg.to_dict(), "resume": True}), BINARY).completed


def test_a_run_given_a_log_writes_its_lines_there_and_nothing_to_stdout(tmp_path, capsys):
    lines, cfg = [], config(tmp_path, epochs=1, max_train_batches=1)
    fit(cfg, spec=BINARY, datasets=datasets(), log=lines.append)
    assert capsys.readouterr().out == ""
    assert [line.split(":")[0] for line in lines] == [f"discs / decoder_only / seed {cfg.seed}",
                                                      "Estimated training time"]
