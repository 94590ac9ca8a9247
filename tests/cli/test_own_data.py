"""End to end from the command line on generated own-data folders of each accepted shape:
train, eval, resume and predict (test_tiny at 32 px, one batch per epoch)."""
import json

import numpy as np
import pytest
from PIL import Image

from convlora_lite.cli import main
from convlora_lite.data.own import write_own_data
from convlora_lite.training.presets import Preset


@pytest.fixture(autouse=True)
def _one_batch(monkeypatch):
    tiny = Preset("smoke", "tests", dict(model="test_tiny", epochs=1, lr=1e-3, batch_size=2, max_train_batches=1,
                                         max_eval_batches=1))
    monkeypatch.setattr("convlora_lite.training.config.get_preset", lambda name: tiny)


def _train_args(data_dir, run, method="decoder_only", *extra):
    return ["train", "--data-dir", str(data_dir), "--method", method, "--preset", "smoke", "--checkpoint", "none",
            "--image-size", "32", "--output-dir", str(run), *extra]


CASES = [("synth_polyp", "folder"), ("synth_polyp", "split_folders"), ("synth_polyp", "csv"),
         ("synth_polyp", "coco"), ("synth_trans10k", "folder"), ("synth_trans10k", "coco")]


@pytest.mark.parametrize("analog,shape", CASES, ids=[f"{a}-{s}" for a, s in CASES])
def test_train_eval_resume_predict(tmp_path, capsys, analog, shape):
    data = write_own_data(tmp_path / "data", analog, shape=shape, n_images=10, image_size=40)
    run = tmp_path / "run"
    assert main(_train_args(data, run)) == 0
    printed = capsys.readouterr().out
    binary = analog == "synth_polyp"
    assert f"(val {'iou' if binary else 'miou'} " in printed
    config = json.loads((run / "config.json").read_text())
    assert config["data_dir"] == str(data.resolve()) and config["task"] == ("binary" if binary else "multiclass")
    record = json.loads((run / "split.json").read_text())
    assert [len(record["splits"][s]) for s in ("train", "val", "test")] == [8, 1, 1]

    assert main(["eval", "--run-dir", str(run), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["metrics"]
    assert {"iou", "dice", "s_alpha", "e_phi"} <= set(scored) if binary else {"acc", "miou"} <= set(scored)
    assert main(_train_args(data, run, "decoder_only", "--resume")) == 0
    assert "already complete" in capsys.readouterr().out

    images = data if data.is_dir() else data.parent
    inputs = [p for p in sorted(images.rglob("*.*")) if p.parent.name == "images"][:3]
    out = tmp_path / "pred"
    assert main(["predict", "--run-dir", str(run), *map(str, inputs), "--output-dir", str(out)]) == 0
    for image in inputs:
        mask = Image.open(out / "masks" / f"{image.stem}.png")
        assert mask.size == Image.open(image).size
        assert mask.mode == ("L" if binary else "P")
        if binary:
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("image,mask,width,height,foreground_fraction") and len(rows) == len(inputs) + 1


def test_the_recorded_split_is_what_eval_and_resume_use(tmp_path, capsys):
    from convlora_lite.training import TrainConfig, fit

    data = write_own_data(tmp_path / "data", "synth_polyp", n_images=20, image_size=40)
    run = tmp_path / "run"
    config = TrainConfig.resolve(None, "decoder_only", "smoke", data_dir=str(data), checkpoint=None, image_size=32,
                                 epochs=2, output_dir=str(run))
    assert config.dataset == "own_data"

    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, on_epoch_end=stop)
    recorded = (run / "split.json").read_text()
    for extra in ("a", "b", "c"):  # new images after the split: the run keeps its own
        for sub in ("images", "masks"):
            (data / sub / f"new_{extra}.png").write_bytes((data / sub / "image_0000.png").read_bytes())
    assert main(_train_args(data, run, "decoder_only", "--epochs", "2", "--resume")) == 0
    assert "Resuming" in capsys.readouterr().out
    assert (run / "split.json").read_text() == recorded
    assert all("new_" not in key for keys in json.loads(recorded)["splits"].values() for key in keys)
    assert main(["eval", "--run-dir", str(run), "--split", "val"]) == 0
    gone = json.loads(recorded)["splits"]["test"][0].split("/")[-1]
    (data / "images" / gone).unlink()
    (data / "masks" / gone).unlink()
    assert main(["eval", "--run-dir", str(run)]) == 2
    assert "no longer in" in capsys.readouterr().err


def test_loss_and_select_metric_are_overridable(tmp_path, capsys):
    data = write_own_data(tmp_path / "data", "synth_polyp", n_images=10, image_size=40)
    run = tmp_path / "run"
    assert main(_train_args(data, run, "decoder_only", "--loss", "balanced_bce", "--select-metric", "dice")) == 0
    assert "(val dice " in capsys.readouterr().out
    assert json.loads((run / "split.json").read_text())["spec"]["loss"] == "balanced_bce"
    assert main(["table", str(run)]) == 0  # tables and figures read an own-data run's recorded spec
    assert "own_data" in capsys.readouterr().out
    from convlora_lite.analysis.predictions import predict_run

    assert len(predict_run(run, "test", n=1).names) == 1
    assert main(_train_args(data, tmp_path / "r2", "decoder_only", "--loss", "set")) == 2
    assert "does not fit a binary task" in capsys.readouterr().err
    assert main(_train_args(data, tmp_path / "r3", "decoder_only", "--select-metric", "miou")) == 2
