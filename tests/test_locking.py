"""One process at a time on a run directory or a synthetic dataset (convlora_lite.locking)."""
import functools
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time

from convlora_lite.locking import exclusive


def _hold(folder, seconds):
    with exclusive(folder):
        (folder.parent / "held").write_text("yes")
        time.sleep(seconds)
        (folder.parent / "released").write_text("yes")


def _wait_for(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_process_waits_until_the_first_is_done(tmp_path):
    folder = tmp_path / "runs" / "seed1"
    holder = multiprocessing.get_context("spawn").Process(target=_hold, args=(folder, 1.0))
    holder.start()
    _wait_for(tmp_path / "runs" / "held")
    said = []
    with exclusive(folder, log=said.append):
        assert (tmp_path / "runs" / "released").exists()  # entered only after the holder finished
    holder.join(30)
    assert holder.exitcode == 0
    assert said == [f"{folder} is in use by another process: waiting until it is done."]
    assert not folder.exists()  # the lock lives beside the folder, which it does not create
    with exclusive(folder, log=said.append):  # free again: no wait, no message
        pass
    assert len(said) == 1


def test_a_run_another_process_is_training_is_read_back_not_trained_again(tmp_path):
    from accelerate.utils import set_seed

    from convlora_lite.data.install import ensure_dataset
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.training import TrainConfig, Trainer, build_model
    from convlora_lite.training.run_data import config_spec, run_datasets

    root, out = tmp_path / "data", tmp_path / "run"
    ensure_dataset(get_dataset_spec("synth_polyp"), root, log=lambda *_: None)
    command = [sys.executable, "-m", "convlora_lite", "train", "--dataset", "synth_polyp", "--method", "lora",
               "--preset", "smoke", "--model", "test_tiny", "--root", str(root),
               "--output-dir", str(out), "--resume"]
    config = TrainConfig.resolve("synth_polyp", "lora", "smoke", model="test_tiny",
                                 data_root=str(root), output_dir=str(out), resume=True)
    with exclusive(out):
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "CONVLORA_HEADLESS": "1"})
        lines = []
        for line in second.stdout:  # wait until it reports that it is waiting for this process
            lines.append(line)
            if "is in use by another process" in line:
                break
        assert any("is in use by another process" in line for line in lines), "".join(lines)
        # this process trains the run meanwhile (the parts fit() builds, without fit()'s lock, held here)
        spec = config_spec(config)
        trainer = Trainer(config, spec)
        set_seed(config.seed)
        trainer.setup(build_model(config), run_datasets(config, spec, trainer.run)).fit()
    rest, _ = second.communicate(timeout=120)
    assert second.returncode == 0, "".join(lines) + rest
    assert "is already complete: nothing to resume" in rest
    assert "training images" not in rest  # it trained nothing
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + config.epochs


def _ask_for_synth_polyp(root, name, barrier):
    """A child process: ``ensure_dataset(synth_polyp)`` with a small generator that notes that it ran and,
    holding the lock, waits (at most 15 s) until the other child says that it is waiting; then the
    log and a listing (path -> sha256) of the dataset as this child sees it when ensure_dataset returns."""
    from convlora_lite.data import synthetic
    from convlora_lite.data.install import ensure_dataset, install_dir
    from convlora_lite.data.registry import get_dataset_spec

    small = functools.partial(synthetic.generate_synthetic, image_size=32, n_train=3, n_val=1, n_test=1)
    notes = root.parent

    def generate(*args, **kwargs):
        (notes / f"generated-{name}").write_text("yes")
        deadline = time.monotonic() + 15.0
        while not any(notes.glob("waiting-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return small(*args, **kwargs)

    said = []

    def log(line):
        said.append(line)
        if "is in use by another process" in line:
            (notes / f"waiting-{name}").write_text(line)

    synthetic.generate_synthetic = generate  # ensure_dataset calls it through the module
    spec = get_dataset_spec("synth_polyp")
    barrier.wait(120)  # both children imported and patched: ask at the same time
    ensure_dataset(spec, root, log=log)
    folder = install_dir(spec, root)
    files = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    (notes / f"seen-{name}.json").write_text(json.dumps({"said": said, "files": files}))


def test_two_processes_asking_for_one_synthetic_dataset_generate_it_once(tmp_path):
    from convlora_lite.data.install import install_dir, is_installed
    from convlora_lite.data.registry import get_dataset_spec

    root = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    children = [context.Process(target=_ask_for_synth_polyp, args=(root, name, barrier)) for name in ("a", "b")]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    generated = sorted(p.name for p in tmp_path.glob("generated-*"))
    assert len(generated) == 1, generated  # one process generated it...
    assert [child.exitcode for child in children] == [0, 0]
    maker = generated[0].removeprefix("generated-")
    waiter = "b" if maker == "a" else "a"
    seen = {name: json.loads((tmp_path / f"seen-{name}.json").read_text()) for name in ("a", "b")}
    spec = get_dataset_spec("synth_polyp")
    folder = install_dir(spec, root)
    assert seen[maker]["said"] == [f"synth_polyp is not in {root}: generating it (synthetic, offline)..."]
    # ...while the other waited for it, then found it complete and did not generate it again
    assert seen[waiter]["said"] == [f"{folder} is in use by another process: waiting until it is done."]
    on_disk = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(folder.rglob("*")) if p.is_file()}
    assert is_installed(spec, root)
    assert seen["a"]["files"] == seen["b"]["files"] == on_disk  # the same complete dataset, byte for byte
    assert sum("/images/" in f"/{name}" for name in on_disk) == 3 + 1 + 1  # the small one of the children
