"""``--compile``: the compiled training step equals the eager one (outputs, gradients, whole runs and their resumes),
Conv-LoRA compiles into one graph, and a missing compiler is a message and eager training."""
import pytest
import torch
from safetensors.torch import load_file
from test_trainer import BINARY, Interrupt, _interrupt_after, config, datasets

from convlora_lite import PromptFreeSAM, apply_peft, build_sam
from convlora_lite.training import TrainConfig, fit
from convlora_lite.training.compile import CompiledModel, compile_blocker, compile_model
from convlora_lite.training.losses import structure_loss

pytestmark = pytest.mark.skipif(compile_blocker("cpu") is not None, reason=f"no compiler: {compile_blocker('cpu')}")


def _model(method):
    torch.manual_seed(0)
    model = apply_peft(PromptFreeSAM(build_sam("test_tiny", checkpoint=None)), method).train()
    with torch.no_grad():  # B and the gate away from zero: the update and the routing matter
        for name, p in model.named_parameters():
            if name.endswith(("lora_B", "w_gate", "w_noise")):
                p.normal_(0, 0.3)
    return model


def _step(forward, model, images, masks):
    torch.manual_seed(1)  # the gate's noise
    out = forward(images)
    loss = structure_loss(out.logits, masks) + out.aux_loss
    params = [p for p in model.parameters() if p.requires_grad]
    return out.logits.detach(), out.aux_loss.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("method", ["lora", "conv_lora"])
def test_compiled_step_equals_eager_in_outputs_and_gradients(method):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(method)
    images, masks = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    forward = compile_model(model, "default", "cpu", print)
    assert isinstance(forward, CompiledModel) and forward.model is model
    eager = _step(model, model, images, masks)
    for _ in range(3):  # the first call is eager (it fills the shape caches), then compiled, then replayed
        compiled = _step(forward, model, images, masks)
        torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-6)
        for g_compiled, g_eager in zip(compiled[2], eager[2]):
            torch.testing.assert_close(g_compiled, g_eager, rtol=1e-3, atol=1e-6)
    if method == "conv_lora":
        assert eager[1] > 0  # the load-balancing loss is part of the compared graph
        assert model.image_encoder.blocks[1].attn.qkv.last_expert_index.shape == (2, 1)
    assert dict(counters["graph_break"]) == {}  # the routing is sync-free and of fixed shapes: one graph
    assert counters["stats"]["unique_graphs"] == 1  # and no recompilation from step to step


@pytest.mark.parametrize("first, then", [(None, "default"), ("default", None)])
def test_a_run_resumes_compiled_from_an_eager_checkpoint_and_back(tmp_path, first, then):
    whole = fit(config(tmp_path, "whole", method="conv_lora", epochs=2, device="cpu"), spec=BINARY,
                datasets=datasets(flip=True))
    cut = config(tmp_path, "cut", method="conv_lora", epochs=2, device="cpu", compile=first)
    with pytest.raises(Interrupt):
        fit(cut, spec=BINARY, datasets=datasets(flip=True), on_epoch_end=_interrupt_after(1))
    resumed = fit(TrainConfig(**{**cut.to_dict(), "resume": True, "compile": then}), spec=BINARY,
                  datasets=datasets(flip=True))
    a, b = load_file(whole / "checkpoint" / "last.safetensors"), load_file(resumed / "checkpoint" / "last.safetensors")
    assert a.keys() == b.keys() and not any(key.startswith("_orig_mod") for key in b)  # the module's own names
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)
    assert TrainConfig.of_run(resumed).compile == then


def test_a_missing_compiler_is_a_message_and_eager_training(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in compile_blocker("cpu")
    assert "mps" in compile_blocker("mps")
    said = []
    model = torch.nn.Linear(2, 2)
    assert compile_model(model, "default", "cpu", said.append) is model
    assert said and "training eagerly" in said[0] and "apt-get install g++" in said[0]
    assert compile_model(model, None, "cpu", said.append) is model and len(said) == 1


def test_compile_is_checked_and_free_across_a_resume(tmp_path):
    with pytest.raises(Exception, match="compile='fast'"):
        config(tmp_path, compile="fast")
    assert "compile" not in config(tmp_path, compile="default").changed_fields(config(tmp_path).to_dict())


@pytest.mark.parametrize("command", [["train", "--method", "lora", "--dataset", "synth_polyp"],
                                     ["reproduce", "--datasets", "synth_polyp"], ["bench"]])
def test_every_training_command_takes_compile_and_attention(command, capsys):
    from convlora_lite.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(command).compile is None
    assert parser.parse_args(command + ["--compile"]).compile == "default"
    assert parser.parse_args(command + ["--compile", "reduce-overhead"]).compile == "reduce-overhead"
    with pytest.raises(SystemExit):
        parser.parse_args(command + ["--compile", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    assert parser.parse_args(command).attention is None  # the preset decides
    assert parser.parse_args(command + ["--attention", "sdpa"]).attention == "sdpa"


def test_bench_compiles_after_two_warm_up_steps():
    from convlora_lite.bench.step_benchmark import format_benchmark, run_benchmark

    report = run_benchmark("test_tiny", image_size=64, methods="lora", steps=1, warmup=0, compile="default")
    assert report["compile"] == "default" and report["warmup"] == 2
    assert "compiled (default)" in format_benchmark(report)
