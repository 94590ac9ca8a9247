"""``convlora export --format onnx`` and ``convlora predict --run-dir model.onnx`` on tiny runs of own data
(test_tiny, 32 px): the graph's logits against PyTorch's, Conv-LoRA's routing inside the graph, the masks against
the run directory's, the weights in a second file, and every user mistake. The runs train 4 steps at lr 0.05 so
that LoRA's B, the experts and the gate move far from their start (a wrong expert changes the logits by far more
than the tolerance) and the binary masks hold foreground and background."""
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from convlora_lite import Segmenter
from convlora_lite.cli import main
from convlora_lite.data.own import write_own_data
from convlora_lite.errors import CheckpointError, ConfigError
from convlora_lite.inference import onnx_export
from convlora_lite.inference.onnx_export import export_onnx
from convlora_lite.inference.onnx_model import OnnxModel, load_onnx, open_session
from convlora_lite.peft.conv_lora import ConvLoRALinear, MoEConv
from convlora_lite.peft.moe_gate import NoisyTopKGate
from convlora_lite.training import TrainConfig, fit, load_run
from convlora_lite.training.rundir import RunDir

TOLERANCE = 1e-4
#: (width, height) of the images predicted: not square, square at another size than the model's, tall.
SIZES = ((50, 70), (64, 64), (97, 41))


def _train(root, method, analog="synth_polyp", **options):
    data = root / f"data_{analog}"
    if not data.exists():
        write_own_data(data, analog, n_images=10, image_size=40)
    torch.manual_seed(0)
    name = "_".join([method, analog, *(f"{k}{v}" for k, v in options.items())])
    config = TrainConfig.resolve(None, method, "smoke", data_dir=str(data), model="test_tiny", checkpoint=None,
                                 image_size=32, epochs=1, batch_size=2, max_train_batches=4, max_eval_batches=1,
                                 lr=0.05, method_options=options, output_dir=str(root / name))
    return fit(config), data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (run directory, its .onnx, its data folder): LoRA and Conv-LoRA binary, Conv-LoRA multi-class; the
    LoRA file with its weights in a second file (the path ViT-H takes), exported through the CLI."""
    root = tmp_path_factory.mktemp("onnx")
    runs = {}
    for name, method, analog in (("lora", "lora", "synth_polyp"), ("conv_lora", "conv_lora", "synth_polyp"),
                                 ("multiclass", "conv_lora", "synth_trans10k")):
        run, data = _train(root, method, analog)
        output = root / f"{name}.onnx"
        with pytest.MonkeyPatch.context() as patch:
            if name == "lora":
                patch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
            assert main(["export", "--run-dir", str(run), "--format", "onnx", "--output", str(output)]) == 0
        runs[name] = (run, output, data)
    return runs


def _images(seed=0, batch=3):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _expert_indices(model) -> set:
    return {int(i) for m in model.modules() if isinstance(m, ConvLoRALinear) for i in m.last_expert_index.view(-1)}


@pytest.mark.parametrize("name", ["lora", "conv_lora", "multiclass"])
def test_onnx_logits_match_pytorch_for_any_batch(exported, name):
    run, output, _ = exported[name]
    model, config = load_run(run)
    onnx_model, onnx_config, spec = load_onnx(output)
    assert onnx_config == config and spec.task == ("binary" if name != "multiclass" else "multiclass")
    for batch in (1, 3, 5):  # exported at batch 2: the batch axis is free
        images = _images(batch, batch)
        with torch.no_grad():
            expected = model.decode(images)
        got = onnx_model.decode(images)
        assert got[0].shape == expected[0].shape == (batch, config.num_classes if name == "multiclass" else 1, 16, 16)
        assert (got[1] is None) == (expected[1] is None) == (name != "multiclass")
        for g, e in zip(got, expected):
            if e is not None:
                assert e.abs().max() > 0.05  # trained logits, not a zero output that any graph would match
                assert (g - e).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", ["conv_lora", "multiclass"])
def test_the_graph_routes_each_window_to_the_expert_pytorch_chooses(exported, name, monkeypatch):
    run, output, _ = exported[name]
    model, _ = load_run(run)
    onnx_model, _, _ = load_onnx(output)
    images = _images(7)
    with torch.no_grad():
        expected = model.decode(images)[0]
    assert len(_expert_indices(model)) > 2  # several experts are used, so the routing is tested
    got = onnx_model.decode(images)[0]
    assert (got - expected).abs().max() < TOLERANCE
    # the same model with each window sent to the next expert: the graph agrees with the real routing only
    forward = NoisyTopKGate.forward

    def next_expert(gate, pooled):
        routing = forward(gate, pooled)
        return routing._replace(expert_index=(routing.expert_index + 1) % gate.num_experts)

    monkeypatch.setattr(NoisyTopKGate, "forward", next_expert)
    with torch.no_grad():
        rerouted = model.decode(images)[0]
    assert (got - rerouted).abs().max() > 100 * TOLERANCE


class _Delta(torch.nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.moe = moe

    def forward(self, h):
        return self.moe(h)[0]


def test_equal_gate_logits_route_alike_in_pytorch_and_onnx(tmp_path):
    """An untrained gate (every logit 0) routes by the experts' order in PyTorch as in the graph (torch.topk
    leaves the order of equal values unspecified, ONNX's TopK takes the lower index)."""
    torch.manual_seed(0)
    moe = _Delta(MoEConv(3, scales=range(1, 9))).eval()
    with torch.no_grad():
        moe.moe.bias.normal_()  # experts that differ in their output
    h = torch.randn(5, 6, 6, 3)
    with torch.no_grad():
        expected = moe(h)
    path = tmp_path / "moe.onnx"
    onnx_export._export_program(moe, h[:2], ["delta"]).save(path)
    got = torch.from_numpy(open_session(path).run(None, {"images": h.numpy()})[0])
    assert (got - expected).abs().max() < 1e-5
    with torch.no_grad():
        moe.moe.gate.w_gate[:, 6] = 1e-3  # every window to expert 6 instead: another output
        assert (got - moe(h.abs())).abs().max() > 0.01


@pytest.mark.parametrize("name", ["lora", "conv_lora", "multiclass"])
def test_predict_with_the_onnx_file_writes_the_run_directorys_masks(exported, name, tmp_path, capsys):
    run, output, data = exported[name]
    inputs = tmp_path / "in"
    inputs.mkdir()
    sources = sorted((data / "images").iterdir())
    for source, (width, height) in zip(sources, SIZES):
        Image.open(source).convert("RGB").resize((width, height), Image.BILINEAR).save(inputs / f"{source.stem}.png")
    outs = {}
    for kind, model in (("run", run), ("onnx", output)):
        outs[kind] = tmp_path / kind
        assert main(["predict", "--run-dir", str(model), str(inputs), "--output-dir", str(outs[kind]),
                     "--probabilities", "--batch-size", "2", "--device", "cpu"]) == 0
    foreground = []
    for source, (width, height) in zip(sources, SIZES):
        masks = [np.asarray(Image.open(outs[kind] / "masks" / f"{source.stem}.png")) for kind in ("run", "onnx")]
        assert masks[0].shape == (height, width)
        assert np.array_equal(masks[0], masks[1])
        foreground.append(masks[0].mean() / 255)
        if name == "multiclass":  # (the tiny multi-class run predicts one class everywhere: its scores are the check)
            scores = [np.load(outs[kind] / "probabilities" / f"{source.stem}.npy").astype(np.float32)
                      for kind in ("run", "onnx")]
            assert scores[0].shape[1:] == (height, width) and np.ptp(scores[0], axis=(1, 2)).max() > 0.01
            assert np.abs(scores[0] - scores[1]).max() < 1e-3
    if name != "multiclass":  # masks with foreground and background: equal masks are not all background
        assert all(0.05 < fraction < 0.95 for fraction in foreground)
    assert (outs["run"] / "predictions.csv").read_text() == (outs["onnx"] / "predictions.csv").read_text().replace(
        str(outs["onnx"]), str(outs["run"]))
    segmenter = Segmenter.from_run(output, device="cpu")
    assert isinstance(segmenter.model, OnnxModel) and segmenter.classes == Segmenter.from_run(run).classes


def test_the_metadata_holds_what_a_reader_outside_python_needs(exported):
    import onnx

    run, output, _ = exported["multiclass"]
    graph = onnx.load(str(output), load_external_data=False)
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert metadata["convlora_lite.format"] == "convlora_lite.onnx/1"
    assert json.loads(metadata["config"]) == RunDir(run).read_config_dict()
    pipeline = json.loads(metadata["pipeline"])
    assert pipeline["image_size"] == 32 and pipeline["mean"] == [0.485, 0.456, 0.406]
    assert pipeline["task"] == "multiclass" and pipeline["threshold"] == 0.5
    assert len(pipeline["classes"]) == json.loads(metadata["config"])["num_classes"]
    assert [o.name for o in graph.graph.output] == ["mask_logits", "class_logits"]
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a free batch axis


def test_large_weights_go_to_a_second_file_that_travels_with_the_graph(exported, tmp_path):
    run, output, _ = exported["lora"]
    data = output.with_name(output.name + ".data")
    weights = sum(t.numel() * 4 for t in load_run(run)[0].state_dict().values())
    assert data.stat().st_size >= weights / 2 and output.stat().st_size < data.stat().st_size
    moved = tmp_path / "shipped"
    moved.mkdir()
    shutil.copy(output, moved / output.name)
    images = _images()
    with pytest.raises(CheckpointError, match=r"not a readable ONNX model.*\.data"):
        load_onnx(moved / output.name)  # the graph without its weights file
    shutil.copy(data, moved / data.name)
    assert torch.equal(load_onnx(moved / output.name)[0].decode(images)[0], load_onnx(output)[0].decode(images)[0])
    assert not list(output.parent.glob(".*tmp*"))


def test_the_official_conv_lora_exports_through_the_fast_layer(tmp_path):
    run, _ = _train(tmp_path, "conv_lora", implementation="official")
    written = export_onnx(run, tmp_path / "official.onnx")
    model, config = load_run(run)
    assert config.method_options["implementation"] == "official"
    images = _images(3)
    with torch.no_grad():
        expected = model.decode(images)[0]
    assert (load_onnx(written.path)[0].decode(images)[0] - expected).abs().max() < TOLERANCE
    assert written.data is None and written.max_difference < TOLERANCE
    top2, _ = _train(tmp_path, "conv_lora", implementation="official", top_k=2)
    with pytest.raises(ConfigError, match="official implementation.*top_k=2"):
        export_onnx(top2, tmp_path / "top2.onnx")
    assert not (tmp_path / "top2.onnx").exists()


def test_an_export_that_onnxruntime_does_not_reproduce_is_refused(exported, tmp_path, monkeypatch):
    run, _, _ = exported["lora"]
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    with pytest.raises(ConfigError, match="other logits than PyTorch.*nothing was written"):
        export_onnx(run, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []  # neither the graph, nor its weights file, nor the temporary folder


def test_cli_errors(exported, tmp_path, capsys, monkeypatch):
    run, output, data = exported["conv_lora"]
    target = tmp_path / "m.onnx"

    def fails(args, message):
        assert main(args) == 2
        assert message in capsys.readouterr().err
        assert not target.exists()

    fails(["export", "--run-dir", str(run), "--format", "onnx"], "--format onnx writes the ONNX graph to --output")
    fails(["export", "--run-dir", str(run), "--format", "onnx", "--output", str(tmp_path / "m.safetensors")],
          "name it e.g. model.onnx")
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--run-dir", str(run), "--format", "tflite", "--output", str(target)])
    assert exit_.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    fails(["export", "--run-dir", str(output), "--format", "onnx", "--output", str(target)],
          "is an ONNX export already")
    # a run that has not finished, and one without weights
    unfinished = RunDir(shutil.copytree(run, tmp_path / "unfinished"))
    unfinished.write_metrics({**unfinished.read_metrics(), "completed": False})
    fails(["export", "--run-dir", str(unfinished.path), "--format", "onnx", "--output", str(target)],
          "has not finished training")
    unfinished.best.unlink()
    fails(["export", "--run-dir", str(unfinished.path), "--format", "onnx", "--output", str(target)], "has no weights")
    # corrupted files, a graph of another model, --checkpoint with an ONNX file
    image = str(sorted((data / "images").iterdir())[0])
    predict = ["predict", image, "--output-dir", str(tmp_path / "out"), "--run-dir"]
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(output.read_bytes()[: output.stat().st_size // 2])
    fails(predict + [str(truncated)], "is not a readable ONNX model")
    (tmp_path / "noise.onnx").write_bytes(b"\x08\x07garbage" * 100)
    fails(predict + [str(tmp_path / "noise.onnx")], "is not a readable ONNX model")
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["x2"])], "other", [value],
                              [helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(other), str(tmp_path / "other.onnx"))
    fails(predict + [str(tmp_path / "other.onnx")], "is not a convlora ONNX export")
    fails(predict + [str(output), "--checkpoint", str(tmp_path / "sam.pth")], "an ONNX file holds all its weights")
    fails(predict + [str(tmp_path / "missing.onnx")], "does not exist")
    assert not (tmp_path / "out").exists()
    # onnxruntime missing: the pip command
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    fails(predict + [str(output)], "pip install 'convlora_lite[onnx]'")
    fails(["export", "--run-dir", str(run), "--format", "onnx", "--output", str(target)],
          "pip install 'convlora_lite[onnx]'")


def test_a_prompted_run_is_refused(tmp_path):
    data = write_own_data(tmp_path / "data", "synth_polyp", n_images=10, image_size=40)
    config = TrainConfig.resolve(None, "lora", "smoke", data_dir=str(data), model="test_tiny", checkpoint=None,
                                 image_size=32, epochs=1, batch_size=2, max_train_batches=1, max_eval_batches=1,
                                 prompt="box", output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="prompt-free model"):
        export_onnx(fit(config), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
