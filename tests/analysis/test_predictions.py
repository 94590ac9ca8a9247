"""convlora_lite.analysis.predictions: predictions of a model / a finished run on a few dataset items."""
import pytest
import torch

from convlora_lite.analysis.predictions import predict_items, predict_run, predict_runs
from convlora_lite.data import generate_synthetic
from convlora_lite.errors import ConfigError, DataError
from convlora_lite.training import TrainConfig, devices, fit, load_run


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two finished one-batch runs on tiny synthetic analogs: binary (polyp) and multi-class."""
    root = tmp_path_factory.mktemp("data")
    runs = {}
    for name in ("synth_polyp", "synth_trans10k"):
        generate_synthetic(name, root, image_size=64, n_train=2, n_val=1, n_test=3)
        config = TrainConfig.resolve(name, "conv_lora", "smoke", model="test_tiny", checkpoint=None,
                                     data_root=str(root), output_dir=str(root / "runs" / name), epochs=1,
                                     max_train_batches=1)
        runs[name] = fit(config)
    return runs


def _model_probabilities(run_dir, images):
    """The run's model on ``images`` where and in the precision the run was trained (CUDA when it is there)."""
    model, config = load_run(run_dir)
    device = devices.resolve_device(config.device)
    with devices.autocast(device, devices.inference_precision(config.precision, device)):
        return model.to(device).predict(images.to(device)).float().cpu()


def test_binary_run_predictions_are_the_models_probabilities(tiny_runs):
    images, masks, predictions, names = predict_run(tiny_runs["synth_polyp"], "test", n=2)
    assert images.shape == (2, 3, 64, 64) and masks.shape == predictions.shape == (2, 64, 64)
    assert predictions.dtype == torch.float32 and names == ["test_0000", "test_0001"]
    torch.testing.assert_close(predictions, _model_probabilities(tiny_runs["synth_polyp"], images))
    assert ((predictions >= 0) & (predictions <= 1)).all()


def test_multiclass_run_predictions_are_class_ids(tiny_runs):
    result = predict_run(tiny_runs["synth_trans10k"], "val", indices=[0])
    assert result.predictions.shape == (1, 64, 64) and result.predictions.dtype == torch.int64
    torch.testing.assert_close(result.predictions, _model_probabilities(tiny_runs["synth_trans10k"],
                                                                        result.images).argmax(1))
    assert int(result.predictions.max()) < 12


def test_predict_items_batches_and_index_errors(tiny_runs):
    from convlora_lite.data import build_dataset

    model, config = load_run(tiny_runs["synth_polyp"])
    dataset = build_dataset(config.dataset, "test", config.data_root, 64, train=False)
    whole = predict_items(model, dataset, n=3, batch_size=3).predictions
    torch.testing.assert_close(predict_items(model, dataset, n=3, batch_size=2).predictions, whole)
    assert predict_items(model, dataset, n=10).predictions.shape[0] == 3  # capped at the dataset's size
    with pytest.raises(DataError, match="not in the dataset"):
        predict_items(model, dataset, indices=[5])


def test_predict_runs_returns_the_grid_arguments(tiny_runs):
    images, masks, by_label = predict_runs({"A": tiny_runs["synth_polyp"], "B": tiny_runs["synth_polyp"]}, n=2)
    assert list(by_label) == ["A", "B"] and images.shape[0] == masks.shape[0] == 2
    torch.testing.assert_close(by_label["A"], by_label["B"])
    with pytest.raises(DataError, match="must share a dataset"):
        predict_runs({"A": tiny_runs["synth_polyp"], "B": tiny_runs["synth_trans10k"]}, n=2)
    with pytest.raises(ConfigError, match="no split"):
        predict_run(tiny_runs["synth_polyp"], "test_kvasir")
