"""Every method trains and evaluates under CUDA's autocast policy, emulated on the CPU.

CPU autocast keeps softmax, norms, softplus and the losses in the low precision; CUDA's runs them in
fp32 (``tests/cuda_autocast.py``, ``docs/precision.md``). The Conv-LoRA gate once met an fp32 softmax
beside fp16 logits there and stopped every GPU run at its first validation: these tests run each
method on each head, training step and evaluation, fp16 and bf16, and the trainer's whole fit, under
the emulated CUDA policy. They run on the CPU on every host (the emulation is the point).
"""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from cuda_autocast import EmulatedCudaAutocast

from convlora_lite.models.prompts import eval_prompts, train_prompts
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter_sam2 import segmenter_for
from convlora_lite.peft import METHOD_NAMES, apply_peft
from convlora_lite.training import RunDir, TrainConfig, devices, evaluate, fit
from convlora_lite.training.evaluation import evaluate_model
from convlora_lite.training.losses import task_loss

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
METHODS = [(m, {}) for m in METHOD_NAMES] + [("conv_lora", {"implementation": "official"})]
HEADS = ("binary", "multiclass", "box", "point")
BINARY = SimpleNamespace(name="squares", task="binary", classes=("background", "foreground"), loss="structure",
                         select_metric="iou", select_mode="max", test_splits=("test",), epochs=2, lr=1e-3)
MULTI = SimpleNamespace(name="squares3", task="multiclass", classes=("background", "a", "b"), loss="set",
                        select_metric="miou", select_mode="max", test_splits=("test",), epochs=2, lr=1e-3)


# ---------------------------------------------------------------- the emulation itself
def test_the_emulation_applies_cudas_policy_where_cpu_autocast_does_not():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.float16):  # what a CPU test sees
        assert (x @ w).softmax(-1).dtype == torch.float16
    with EmulatedCudaAutocast(torch.float16) as mode:
        logits = x @ w
        assert logits.dtype == torch.float16  # matmuls in the low precision
        assert logits.softmax(-1).dtype == F.softplus(logits).dtype == torch.float32  # these in fp32
        assert logits.sum().dtype == F.layer_norm(logits, (8,)).dtype == torch.float32
        assert F.gelu(logits).dtype == torch.float16  # the rest in their inputs' dtype
        assert torch.zeros(4, 8).scatter_add(1, torch.zeros(4, 1, dtype=torch.long), logits[:, :1]).dtype == \
            torch.float32  # promoted to the widest
        with pytest.raises(RuntimeError, match="dtype"):  # as on a GPU: scatter does not promote
            torch.zeros_like(logits).scatter(1, torch.zeros(4, 1, dtype=torch.long), logits.softmax(-1)[:, :1])
    assert {"matmul", "softmax", "softplus", "sum", "layer_norm"} <= set(mode.casts)


def test_the_emulation_keeps_gradients_flowing_through_its_casts():
    w = torch.randn(8, 8, requires_grad=True)
    with EmulatedCudaAutocast(torch.bfloat16):
        loss = (torch.randn(4, 8) @ w).softmax(-1).log().sum()
    loss.backward()
    assert w.grad is not None and w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all()


# ---------------------------------------------------------------- every method, every head
def _model(method: str, options: dict, head: str, backbone: str = "test_tiny"):
    torch.manual_seed(0)
    sam = build_sam(backbone, checkpoint=None, image_size=64)
    prompt = head if head in ("box", "point") else "none"
    return apply_peft(segmenter_for(sam, num_classes=3 if head == "multiclass" else 1, prompt=prompt), method,
                      **options)


def _batch(head: str):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=g)
    if head == "multiclass":
        masks = torch.zeros(2, 64, 64, dtype=torch.long)
        masks[0, 10:30, 10:30], masks[1, 30:50, 20:60] = 1, 2
    else:
        masks = torch.zeros(2, 64, 64)
        masks[0, 10:30, 10:30], masks[1, 30:50, 20:60] = 1, 1
    return images, masks


@pytest.mark.parametrize("precision", DTYPES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("method,options", METHODS, ids=[m + ("_official" if o else "") for m, o in METHODS])
def test_a_training_step_and_an_evaluation_under_cudas_autocast(method, options, head, precision):
    _step_and_evaluate(_model(method, options, head), head, precision)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("method", ["decoder_only", "bitfit", "adapter", "ssf", "lora", "conv_lora"])
def test_sam2_trains_and_evaluates_under_cudas_bf16_autocast(method, head):
    """SAM 2.1's GPU precision (``--precision auto`` on a GPU with native bf16), every method available on it."""
    _step_and_evaluate(_model(method, {}, head, "sam2.1_hiera_tiny"), head, "bf16")


def _step_and_evaluate(model, head: str, precision: str) -> None:
    model.train()
    images, masks = _batch(head)
    spec = MULTI if head == "multiclass" else BINARY
    inputs = [images] + ([train_prompts(masks, ["a", "b"], head, 0, 0)] if head in ("box", "point") else [])
    with EmulatedCudaAutocast(DTYPES[precision]) as mode:
        out = model(*inputs)
        loss = task_loss(spec, len(spec.classes) if head == "multiclass" else 1)(out, masks) + out.aux_loss
    assert mode.casts, "the policy was applied"
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    trained = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    assert trained and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in trained.values())
    # evaluation: the model's own metrics path, float32 results
    data = [{"image": images[i], "mask": masks[i], "name": f"item{i}"} for i in range(2)]
    scores = evaluate_model(model, data, spec, batch_size=2, autocast=lambda: EmulatedCudaAutocast(DTYPES[precision]))
    assert all(isinstance(v, float) for v in scores.values() if not isinstance(v, (list, dict)))
    if head in ("box", "point"):
        with EmulatedCudaAutocast(DTYPES[precision]):
            probs = model.predict(images, eval_prompts(masks, ["a", "b"], head))
    else:
        with EmulatedCudaAutocast(DTYPES[precision]):
            probs = model.predict(images)
    assert torch.isfinite(probs.float()).all()


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("precision", DTYPES)
def test_conv_lora_routes_in_float32_in_training_and_in_evaluation(precision, top_k):
    """The gate's logits are cast up right after their product: the same dtypes in both modes."""
    model = _model("conv_lora", {"top_k": top_k}, "binary")
    layer = model.image_encoder.blocks[0].attn.qkv
    pooled = torch.randn(5, layer.rank)
    for mode in (True, False):
        layer.moe.gate.train(mode)
        with EmulatedCudaAutocast(DTYPES[precision]):
            routing = layer.moe.gate(pooled.to(DTYPES[precision]))
            aux_loss = layer.moe.gate.aux_loss(routing.balance)
        assert aux_loss.dtype == torch.float32
        assert routing.gate_values is None if top_k == 1 else routing.gate_values.dtype == torch.float32
        assert routing.expert_index.shape == (5, top_k)


# ---------------------------------------------------------------- the trainer, end to end
class Squares(torch.utils.data.Dataset):
    """``n`` 64 px images with a bright square; binary float masks or class ids 1/2."""

    def __init__(self, n, seed, classes=1):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            y, x = torch.randint(4, 36, (2,), generator=g).tolist()
            mask = torch.zeros(64, 64)
            mask[y:y + 24, x:x + 24] = 1
            image = torch.randn(3, 64, 64, generator=g) * 0.3 + mask * 1.5
            self.items.append({"image": image, "mask": mask if classes == 1 else mask.long() * (1 + i % 2),
                               "name": f"sq{i}"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def cuda_policy(monkeypatch):
    """Make the trainer and ``evaluate`` run on the CPU the way they run on CUDA: the requested fp16 or
    bf16 (fp16 with its gradient scaler, as on a GPU) under the emulated CUDA autocast."""
    resolve = devices.resolve_precision
    monkeypatch.setattr(devices, "resolve_precision", lambda p, d, m=None: p if p in DTYPES else resolve(p, d, m))
    monkeypatch.setattr(devices, "inference_precision", lambda p, d, m=None: devices.resolve_precision(p, d, m))
    modes = []

    def emulated(device, precision):
        if precision == "fp32":
            return torch.autocast("cpu", enabled=False)
        modes.append(EmulatedCudaAutocast(DTYPES[precision]))
        return modes[-1]

    monkeypatch.setattr(devices, "autocast", emulated)
    return modes


@pytest.mark.parametrize("precision", DTYPES)
@pytest.mark.parametrize("method,options,spec", [("conv_lora", {}, BINARY), ("lora", {}, BINARY),
                                                 ("conv_lora", {"implementation": "official"}, BINARY),
                                                 ("conv_lora", {}, MULTI)],
                         ids=["conv_lora", "lora", "conv_lora_official", "conv_lora_multiclass"])
def test_fit_with_validation_and_test_finishes_under_cudas_autocast(tmp_path, cuda_policy, precision, method,
                                                                    options, spec):
    classes = len(spec.classes) if spec.task == "multiclass" else 1
    data = {"train": Squares(4, 0, classes), "val": Squares(2, 1, classes), "test": Squares(2, 2, classes)}
    config = TrainConfig.resolve(spec.name, method, "smoke", spec=spec, model="test_tiny", checkpoint=None,
                                 epochs=2, batch_size=2, max_train_batches=None, max_eval_batches=None,
                                 precision=precision, device="cpu", method_options=options,
                                 output_dir=str(tmp_path / "run"))
    run = fit(config, spec=spec, datasets=data)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["epochs_run"] == 2 and cuda_policy
    assert sum(mode.casts.get("softmax", 0) for mode in cuda_policy) > 0  # CUDA's fp32 softmax was met
    state = RunDir(run).load_state()
    assert (state["scaler"] is not None) == (precision == "fp16")
    # the run's own precision again: evaluate() reproduces the trainer's test scores
    again = evaluate(run, "test", spec=spec, dataset=data["test"], device="cpu")
    select = spec.select_metric
    assert again[select] == pytest.approx(metrics["test"]["test"][select], abs=1e-6)


def test_the_official_layer_equals_the_fast_one_under_cudas_autocast():
    """The two Conv-LoRA implementations share the routing and agree in the low precision too."""
    fast = _model("conv_lora", {}, "binary").eval()
    with torch.no_grad():
        for name, p in fast.named_parameters():
            if "lora_B" in name or "conv" in name:
                p.normal_(0, 0.1)
    official = _model("conv_lora", {"implementation": "official"}, "binary").eval()
    official.load_state_dict(fast.state_dict())
    images, _ = _batch("binary")
    with EmulatedCudaAutocast(torch.bfloat16):
        a, b = fast.predict(images).float(), official.predict(images).float()
    torch.testing.assert_close(a, b, atol=2e-2, rtol=0)
