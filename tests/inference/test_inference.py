"""Segmenter, predict_files and export on one tiny LoRA run of own data (test_tiny, 32 px, one batch)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from convlora_lite import Segmenter
from convlora_lite.cli import main
from convlora_lite.data.own import write_own_data
from convlora_lite.errors import CheckpointError, ConfigError
from convlora_lite.training import TrainConfig, fit, load_run


def _train(root, method, analog="synth_polyp"):
    data = write_own_data(root / f"data_{analog}", analog, n_images=10, image_size=40)
    config = TrainConfig.resolve(None, method, "smoke", data_dir=str(data), model="test_tiny", checkpoint=None,
                                 image_size=32, epochs=1, batch_size=2, max_train_batches=1, max_eval_batches=1,
                                 output_dir=str(root / f"run_{method}_{analog}"))
    return fit(config), data


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    torch.manual_seed(0)
    return _train(tmp_path_factory.mktemp("own"), "lora")


def test_segmenter_returns_a_mask_at_the_input_size_for_pil_and_arrays(lora_run):
    run, _ = lora_run
    segmenter = Segmenter.from_run(run, device="cpu")
    assert segmenter.is_binary and segmenter.classes == ("background", "foreground")
    rgb = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    rgba = Image.fromarray(rgb).convert("RGBA")
    for image in (Image.fromarray(rgb), rgb, rgb[..., 0], rgb.astype(np.float32) / 255, rgba):
        mask = segmenter.segment(image)
        assert mask.shape == (45, 70) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    probs = segmenter.probabilities(rgb)
    assert probs.shape == (45, 70) and (segmenter.mask_of(probs) == segmenter.segment(rgb)).all()
    assert len(segmenter.segment_batch([rgb, rgb[:20, :30]])) == 2


def test_predict_writes_probabilities_overlays_scores_and_reports_bad_inputs(lora_run, tmp_path, capsys):
    run, data = lora_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    for stem in ("image_0000", "image_0001"):
        (inputs / f"{stem}.png").write_bytes((data / "images" / f"{stem}.png").read_bytes())
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["predict", "--run-dir", str(run), str(inputs), str(tmp_path / "missing.png"), "--output-dir", str(out),
            "--probabilities", "--overlays", "--masks", str(data / "masks"), "--batch-size", "2"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "missing.png" in captured.err and "2 input(s) skipped" in captured.err
    assert "mean iou over 2 scored image(s)" in captured.out
    for sub in ("masks", "probabilities", "overlays"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["image_0000.png", "image_0001.png"]
    header = (out / "predictions.csv").read_text().splitlines()[0].split(",")
    assert {"foreground_fraction", "ground_truth", "iou", "dice", "s_alpha", "e_phi"} <= set(header)
    before = (out / "masks" / "image_0000.png").stat().st_mtime_ns
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "masks" / "image_0000.png").stat().st_mtime_ns == before
    assert main(args + ["--overwrite"]) == 1
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporary file
    assert main(["predict", "--run-dir", str(run), str(tmp_path / "nothing*.png"), "--output-dir", str(out)]) == 2


def test_export_is_accepted_in_place_of_the_run_and_merged_lora_loads_in_plain_sam(lora_run, tmp_path, capsys):
    from safetensors import safe_open
    from segment_anything.modeling import Sam

    from convlora_lite.models.sam import get_config, sam_from_config, sized_config

    run, data = lora_run
    export, merged = tmp_path / "model.safetensors", tmp_path / "sam_merged.pth"
    assert main(["export", "--run-dir", str(run), "--output", str(export), "--merged-sam", str(merged)]) == 0
    with safe_open(str(export), framework="pt") as f:
        meta = f.metadata()
        names = set(f.keys())
    assert json.loads(meta["config"])["method"] == "lora" and json.loads(meta["base"])["random_seed"]
    assert all("lora_" in n or n.startswith("mask_decoder") for n in names)  # trainable tensors only
    image = Image.open(data / "images" / "image_0000.png")
    from_run, from_export = Segmenter.from_run(run, device="cpu"), Segmenter.from_run(export, device="cpu")
    assert np.allclose(from_run.probabilities(image), from_export.probabilities(image), atol=1e-6)

    sam = sam_from_config(sized_config(get_config("test_tiny"), 32))
    assert isinstance(sam, Sam)
    sam.load_state_dict(torch.load(merged, weights_only=True), strict=True)
    model, _ = load_run(run)
    # merging is only tested if training moved B off its zero start (else merged == unmerged trivially)
    assert all(p.abs().max() > 0 for name, p in model.named_parameters() if name.endswith("lora_B"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sam.image_encoder(x), model.image_encoder(x), atol=1e-5)

    out = tmp_path / "pred"
    assert main(["predict", "--run-dir", str(export), str(data / "images" / "image_0000.png"),
                 "--output-dir", str(out)]) == 0


def test_export_errors(lora_run, tmp_path, capsys):
    run, _ = lora_run
    from convlora_lite.models.checkpoints import ASSETS_DIR

    # a file that is not an export: SAM weights
    assert main(["predict", "--run-dir", str(ASSETS_DIR / "micro_sam.safetensors"), "x.png", "--output-dir",
                 str(tmp_path)]) == 2
    assert "not a convlora export" in capsys.readouterr().err
    # an export for another model: its base reference does not match what the config resolves to here
    from safetensors.torch import load_file, save_file

    export = tmp_path / "m.safetensors"
    assert main(["export", "--run-dir", str(run), "--output", str(export)]) == 0
    from safetensors import safe_open
    with safe_open(str(export), framework="pt") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    config["model"], config["image_size"] = "micro_sam", 256
    config["checkpoint"] = "auto"
    save_file(load_file(str(export)), str(export), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="an export for another model"):
        Segmenter.from_run(export)
    assert main(["predict", "--run-dir", str(export), "x.png", "--output-dir", str(tmp_path)]) == 2
    assert "an export for another model" in capsys.readouterr().err
    # a run directory without weights
    (run.parent / "empty").mkdir()
    (run.parent / "empty" / "config.json").write_text((run / "config.json").read_text())
    assert main(["predict", "--run-dir", str(run.parent / "empty"), "x.png", "--output-dir", str(tmp_path)]) == 2
    assert "has no weights" in capsys.readouterr().err
    assert main(["export", "--run-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "a.safetensors")]) == 2


def test_conv_lora_cannot_be_merged(tmp_path, capsys):
    run, _ = _train(tmp_path, "conv_lora")
    assert main(["export", "--run-dir", str(run), "--merged-sam", str(tmp_path / "m.pth")]) == 2
    assert "non-linear" in capsys.readouterr().err
    assert not (tmp_path / "m.pth").exists()
    with pytest.raises(ConfigError, match="non-linear"):
        from convlora_lite.inference import merged_sam_state

        merged_sam_state(*load_run(run))


def test_multiclass_masks_are_palette_pngs_at_the_image_size(tmp_path):
    from convlora_lite.inference import predict_files

    run, data = _train(tmp_path, "decoder_only", "synth_trans10k")
    segmenter = Segmenter.from_run(run, device="cpu")
    assert not segmenter.is_binary and len(segmenter.classes) == 12
    report = predict_files(segmenter, [str(data / "images" / "*.jpg")], tmp_path / "out", probabilities=True,
                           progress=False)
    assert report.ok and len(report.written) == 10
    mask = Image.open(tmp_path / "out" / "masks" / f"{report.written[0].stem}.png")
    assert mask.mode == "P" and mask.size == Image.open(report.written[0]).size
    assert np.load(tmp_path / "out" / "probabilities" / f"{report.written[0].stem}.npy").shape == (12, 40, 40)


def test_an_export_references_its_base_weights_by_checksum(tmp_path):
    from convlora_lite.inference import export_run
    from convlora_lite.models.sam import get_config, sam_from_config

    torch.manual_seed(1)
    base = tmp_path / "base.pth"
    torch.save(sam_from_config(get_config("test_tiny")).state_dict(), base)
    data = write_own_data(tmp_path / "data", "synth_polyp", n_images=10, image_size=40)
    config = TrainConfig.resolve(None, "lora", "smoke", data_dir=str(data), model="test_tiny", checkpoint=str(base),
                                 image_size=32, epochs=1, batch_size=2, max_train_batches=1, max_eval_batches=1,
                                 output_dir=str(tmp_path / "run"))
    export = export_run(fit(config), tmp_path / "model.safetensors")
    moved = tmp_path / "elsewhere.pth"
    base.rename(moved)
    with pytest.raises(CheckpointError, match="does not exist"):
        Segmenter.from_run(export)
    image = Image.open(data / "images" / "image_0000.png")
    assert Segmenter.from_run(export, checkpoint=moved, device="cpu").segment(image).shape == (40, 40)
    torch.manual_seed(2)
    other = tmp_path / "other.pth"
    torch.save(sam_from_config(get_config("test_tiny")).state_dict(), other)
    with pytest.raises(CheckpointError, match="an export for another model"):
        Segmenter.from_run(export, checkpoint=other)
