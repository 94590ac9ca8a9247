"""convlora bench: method specs, the report's structure and its arithmetic, the CLI (tiny model)."""
import json
import statistics

import pytest

from convlora_lite.bench.step_benchmark import MethodSpec, format_benchmark, parse_method_specs, run_benchmark
from convlora_lite.cli import main
from convlora_lite.errors import ConfigError


def test_parse_method_specs_with_options():
    specs = parse_method_specs("lora, conv_lora:implementation=official:top_k=2:gated=true")
    assert specs == [
        MethodSpec("lora", "lora", {}),
        MethodSpec("conv_lora:implementation=official:top_k=2:gated=true", "conv_lora",
                   {"implementation": "official", "top_k": 2, "gated": True}),
    ]


@pytest.mark.parametrize("text, message", [
    ("lora,nope", "Unknown method"),
    ("conv_lora:top_k", "Bad option"),
    ("lora,lora", "twice"),
    (" , ", "No method"),
])
def test_parse_method_specs_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_method_specs(text)


@pytest.fixture(scope="module")
def tiny_report():
    return run_benchmark("test_tiny", image_size=64, methods="lora,conv_lora,conv_lora:implementation=official",
                         steps=2, warmup=1)


def test_report_times_every_method_and_computes_ratios(tiny_report):
    methods = {m["label"]: m for m in tiny_report["methods"]}
    assert list(methods) == ["lora", "conv_lora", "conv_lora:implementation=official"]
    lora = methods["lora"]
    for m in methods.values():
        assert len(m["step_times_s"]) == 2 and len(m["cpu_times_s"]) == 2
        assert m["median_step_s"] == statistics.median(m["step_times_s"])
        assert m["time_ratio"] == pytest.approx(m["median_step_s"] / lora["median_step_s"])
        assert m["paired_time_ratio"] == pytest.approx(
            statistics.median(t / r for t, r in zip(m["step_times_s"], lora["step_times_s"])))
        assert m["memory_ratio"] == pytest.approx(m["peak_memory_mib"] / lora["peak_memory_mib"])
        assert m["saved_activations_mib"] > 0 and m["peak_memory_mib"] > 0
    assert lora["time_ratio"] == 1.0
    # test_tiny has 2 blocks: Conv-LoRA adds 2 x (2*3*8 + 8*84) parameters to LoRA, in both implementations.
    assert methods["conv_lora"]["trainable_params"] - lora["trainable_params"] == 2 * (48 + 672)
    assert methods["conv_lora:implementation=official"]["trainable_params"] == methods["conv_lora"]["trainable_params"]
    assert tiny_report["device"] == "cpu" and tiny_report["precision"] == "fp32"
    assert "RSS" in tiny_report["memory_measure"]


def test_saved_activations_grow_with_the_input():
    small = run_benchmark("test_tiny", image_size=64, methods="lora", steps=1, warmup=0)
    large = run_benchmark("test_tiny", image_size=64, methods="lora", steps=1, warmup=0, batch_size=3)
    ratio = large["methods"][0]["saved_activations_mib"] / small["methods"][0]["saved_activations_mib"]
    assert 2.0 < ratio < 3.5


def test_format_shows_every_method(tiny_report):
    text = format_benchmark(tiny_report)
    assert all(label in text for label in ("lora", "conv_lora", "conv_lora:implementation=official"))
    assert "ratios are to lora" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps"),
    ({"threads": 0}, "threads"),
    ({"image_size": 60}, "image_size"),
    ({"device": "cuda"}, "not available"),
])
def test_bad_settings_raise_config_error(kwargs, message, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):
        run_benchmark("test_tiny", **{"image_size": 64, "methods": "lora", **kwargs})


def test_cli_json_writes_what_it_prints(capsys, tmp_path):
    out_file = tmp_path / "bench.json"
    code = main(["bench", "--model", "test_tiny", "--image-size", "64", "--methods", "decoder_only,lora",
                 "--steps", "1", "--warmup", "0", "--json", "--output", str(out_file)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out_file.read_text())
    decoder_only, lora = printed["methods"]
    assert decoder_only["median_step_s"] > 0 and lora["median_step_s"] > 0
    assert lora["trainable_params"] > decoder_only["trainable_params"]
    assert "decoder_only" in format_benchmark(printed) and "ratios are to decoder_only" in format_benchmark(printed)


def test_cli_user_error_exits_2(capsys):
    assert main(["bench", "--model", "test_tiny", "--image-size", "64", "--methods", "nope"]) == 2
    assert "Unknown method" in capsys.readouterr().err
