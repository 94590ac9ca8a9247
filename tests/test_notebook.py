"""The notebooks' shared sweep settings: where data and runs go."""
from convlora_lite.data import get_dataset_spec, is_installed
from convlora_lite.notebook import ensure_synthetic, notebook_data_root, sweep_dir
from convlora_lite.training.rundir import RunDir


def test_smoke_data_is_kept_apart_and_generated_small(tmp_path):
    assert notebook_data_root("cpu", tmp_path) == tmp_path.resolve()
    root = ensure_synthetic(["synth_polyp"], "smoke", tmp_path)
    assert root == tmp_path.resolve() / "smoke"
    train_csv = next(root.rglob("train.csv"))
    assert len(train_csv.read_text().strip().splitlines()) == 1 + 4  # header + 4 training images
    assert not (tmp_path / "synth_polyp").exists()
    run = RunDir.of(sweep_dir(tmp_path, "cpu"), "synth_polyp", "lora", 7)
    assert run.path == tmp_path.resolve() / "sweep_cpu/synth_polyp/lora/seed7"



def test_an_analog_whose_generation_was_interrupted_is_generated_again(tmp_path):
    spec = get_dataset_spec("synth_leaf")
    root = ensure_synthetic([spec.name], "smoke", tmp_path)
    assert is_installed(spec, root)
    (spec.dataset_dir(root) / "SYNTHETIC.json").unlink()  # written last: a killed generation has none
    (spec.dataset_dir(root) / "test.csv").unlink()
    assert not is_installed(spec, root)
    ensure_synthetic([spec.name], "smoke", tmp_path)
    assert is_installed(spec, root) and (spec.dataset_dir(root) / "test.csv").is_file()
