"""`convlora export --format hub` and `convlora hub push/pull` on tiny LoRA and Conv-LoRA runs (test_tiny, 32 px):
the folder's files, its model card checked by yaml and by huggingface_hub against the run's metrics.json, predictions
from it equal to the run's; push and pull through huggingface_hub with its network calls replaced by a local folder,
and its offline errors from the real library pointed at a closed local port. No call leaves this machine."""
import json
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, RepoUrl, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from PIL import Image
from safetensors.torch import load_file

from convlora_lite import Segmenter
from convlora_lite.cli import main
from convlora_lite.data.own import write_own_data
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.inference import export_hub
from convlora_lite.inference.export import public_config
from convlora_lite.training import TrainConfig, fit
from convlora_lite.training.rundir import RunDir

HUB_FILES = ["README.md", "config.json", "model.safetensors"]
#: what a binary own-data task reports (README, "Your own data").
OWN_BINARY_METRICS = ("iou", "dice", "s_alpha", "e_phi")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished LoRA and Conv-LoRA run on the same own data, and the data."""
    root = tmp_path_factory.mktemp("hub")
    data = write_own_data(root / "data", "synth_polyp", n_images=10, image_size=40)
    trained = {}
    for method in ("lora", "conv_lora"):
        torch.manual_seed(0)
        trained[method] = RunDir(fit(TrainConfig.resolve(
            None, method, "smoke", data_dir=str(data), model="test_tiny", checkpoint=None, image_size=32, epochs=1,
            batch_size=2, max_train_batches=1, max_eval_batches=1, output_dir=str(root / method)))).path
    return trained, data


def _export(run, output) -> None:
    assert main(["export", "--run-dir", os.fspath(run), "--format", "hub", "--output", str(output)]) == 0


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


def _masks(folder) -> dict:
    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "masks").iterdir())}


@pytest.mark.parametrize("method", ["lora", "conv_lora"])
def test_a_hub_folder_holds_the_export_the_config_and_a_card_with_the_runs_test_scores(runs, method, tmp_path):
    trained, data = runs
    run, out = RunDir(trained[method]), tmp_path / "hub"
    _export(run, out)
    assert sorted(p.name for p in out.iterdir()) == HUB_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["hub"]  # no temporary folder left beside it
    best, exported = load_file(str(run.best)), load_file(str(out / "model.safetensors"))
    assert exported.keys() == best.keys() and all(torch.equal(exported[k], best[k]) for k in best)
    published = json.loads((out / "config.json").read_text())
    assert published == public_config(TrainConfig.of_run(run.path).to_dict())
    local = TrainConfig.of_run(run.path)
    published_bytes = (out / "model.safetensors").read_bytes() + (out / "config.json").read_bytes()
    assert published["output_dir"] is None and all(path.encode() not in published_bytes for path in
                                                   (local.output_dir, str(Path(local.data_root).resolve())))
    assert {k: v for k, v in published.items() if k not in ("output_dir", "data_root", "data_dir", "checkpoint")} \
        == {k: v for k, v in TrainConfig.of_run(run.path).to_dict().items()
            if k not in ("output_dir", "data_root", "data_dir", "checkpoint")}

    readme = (out / "README.md").read_text()
    meta = _front_matter(readme)
    assert (meta["library_name"], meta["license"], meta["pipeline_tag"]) == ("convlora_lite", "apache-2.0",
                                                                            "image-segmentation")
    assert set(meta["tags"]) == {"segment-anything", "conv-lora", "peft", "image-segmentation",
                                 method.replace("_", "-")}
    assert "base_model" not in meta and "datasets" not in meta  # test_tiny has no Hub copy, own data no Hub id
    scores = {k: v for k, v in run.read_metrics()["test"]["test"].items() if k in OWN_BINARY_METRICS}
    assert len(scores) == len(OWN_BINARY_METRICS)
    (result,) = meta["model-index"][0]["results"]
    assert (result["task"]["type"], result["dataset"]["split"]) == ("image-segmentation", "test")
    assert {m["type"]: m["value"] for m in result["metrics"]} == scores
    card = ModelCard(readme)  # huggingface_hub's parser and its checks of the model-index
    assert {(r.metric_type, r.metric_value, r.dataset_split) for r in card.data.eval_results} == {
        (name, value, "test") for name, value in scores.items()}
    assert all(f"{value:.4f}" in readme for value in scores.values())  # the body's table
    assert "convlora hub pull" in readme and 'Segmenter.from_run("model")' in readme

    image = Image.open(data / "images" / "image_0000.png")
    assert np.allclose(Segmenter.from_run(out, device="cpu").probabilities(image),
                       Segmenter.from_run(run.path, device="cpu").probabilities(image), atol=1e-6)
    for source, dest in ((run.path, tmp_path / "from_run"), (out, tmp_path / "from_hub")):
        assert main(["predict", "--run-dir", str(source), str(data / "images"), "--output-dir", str(dest)]) == 0
    from_run, from_hub = _masks(tmp_path / "from_run"), _masks(tmp_path / "from_hub")
    assert len(from_run) == 10 and from_run.keys() == from_hub.keys()
    assert all(np.array_equal(from_run[name], from_hub[name]) for name in from_run)


def test_a_sam_runs_card_names_the_hub_base_model_and_metas_weights(tmp_path, fake_run):
    test = {"test": {"s_alpha": 0.8125, "e_phi": 0.875, "iou": 0.5}}  # iou is not one of this task's metrics
    path = fake_run(tmp_path / "run", "synth_polyp", "lora", 7, test, model="vit_b", checkpoint="auto")
    run = RunDir(path)
    run.save_tensors(run.best, {"mask_decoder.iou_token.weight": torch.ones(1, 4)})
    readme = (export_hub(path, tmp_path / "hub") / "README.md").read_text()
    meta = _front_matter(readme)
    assert (meta["base_model"], meta["base_model_relation"]) == ("facebook/sam-vit-base", "adapter")
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["name"] == get_dataset_spec("synth_polyp").title
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"s_alpha": 0.8125, "e_phi": 0.875}
    assert "`sam_vit_b_01ec64.pth`" in readme and "Meta's official checkpoint" in readme
    assert "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912" in readme  # Meta's ViT-B sha256


def test_export_refuses_unfinished_runs_and_other_folders_and_replaces_an_earlier_hub_folder(runs, tmp_path, capsys,
                                                                                              monkeypatch):
    run = runs[0]["lora"]
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"x")
    args = ["export", "--run-dir", str(run), "--format", "hub", "--output"]
    assert main(args + [str(photos)]) == 2
    assert "is not a Hub folder" in capsys.readouterr().err and [p.name for p in photos.iterdir()] == ["a.jpg"]
    assert main(args + [str(tmp_path / "m.safetensors")]) == 2 and "writes a folder" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    RunDir(unfinished).metrics.unlink()
    assert main(["export", "--run-dir", str(unfinished), "--format", "hub", "--output", str(tmp_path / "u")]) == 2
    assert "not a finished run" in capsys.readouterr().err and not (tmp_path / "u").exists()

    out = tmp_path / "hub"
    _export(run, out)
    (out / "stale.txt").write_text("from before")
    _export(run, out)  # an earlier Hub folder is replaced whole
    assert sorted(p.name for p in out.iterdir()) == HUB_FILES

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("convlora_lite.inference.model_card.model_card", broken_card)
    with pytest.raises(RuntimeError):
        export_hub(run, tmp_path / "new")
    with pytest.raises(RuntimeError):
        export_hub(run, out)
    assert not (tmp_path / "new").exists() and sorted(p.name for p in out.iterdir()) == HUB_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub", "photos", "unfinished"]  # no half-written folder


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """huggingface_hub without the network: ``HfApi.create_repo``/``upload_folder`` and ``snapshot_download``
    recorded in ``calls`` and served from the folder ``remote``; a token in HF_TOKEN."""
    remote, cache, calls = tmp_path / "remote", tmp_path / "cache", []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, folder_path))
        shutil.copytree(folder_path, remote / repo_id, dirs_exist_ok=True)

    def snapshot_download(repo_id, *, revision=None, local_dir=None, **kwargs):
        calls.append(("snapshot_download", repo_id, revision))
        target = cache / repo_id if local_dir is None else local_dir
        shutil.copytree(remote / repo_id, target, dirs_exist_ok=True)
        return str(target)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    return SimpleNamespace(remote=remote, cache=cache, calls=calls)


def test_push_is_private_by_default_and_pull_gives_a_folder_that_predict_takes(runs, hub, tmp_path, capsys):
    from convlora_lite.inference.hub import pull

    trained, data = runs
    out = tmp_path / "hub_folder"
    _export(trained["conv_lora"], out)
    assert main(["hub", "push", str(out), "--repo-id", "user/model"]) == 0
    assert hub.calls == [("create_repo", "user/model", {"private": True, "exist_ok": True}),
                         ("upload_folder", "user/model", str(out))]
    assert "https://huggingface.co/user/model" in capsys.readouterr().out
    hub.calls.clear()
    assert main(["hub", "push", str(out), "--repo-id", "user/open", "--public"]) == 0
    assert hub.calls[0] == ("create_repo", "user/open", {"private": False, "exist_ok": True})
    hub.calls.clear()

    pulled = tmp_path / "pulled"
    assert main(["hub", "pull", "user/model", "--output", str(pulled), "--revision", "v1"]) == 0
    assert hub.calls == [("snapshot_download", "user/model", "v1")]
    assert sorted(p.name for p in pulled.iterdir()) == HUB_FILES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # downloaded beside it, then moved in
    for source, dest in ((trained["conv_lora"], tmp_path / "from_run"), (pulled, tmp_path / "from_pull")):
        assert main(["predict", "--run-dir", str(source), str(data / "images"), "--output-dir", str(dest)]) == 0
    from_run, from_pull = _masks(tmp_path / "from_run"), _masks(tmp_path / "from_pull")
    assert len(from_run) == 10 and all(np.array_equal(from_run[name], from_pull[name]) for name in from_run)

    cached = pull("user/model")  # no --output: huggingface_hub's cache
    assert cached == hub.cache / "user" / "model"
    image = Image.open(data / "images" / "image_0000.png")
    assert np.allclose(Segmenter.from_run(cached, device="cpu").probabilities(image),
                       Segmenter.from_run(trained["conv_lora"], device="cpu").probabilities(image), atol=1e-6)


def _http_error(cls, status):
    """huggingface_hub's exception ``cls`` as it raises it for an answer with ``status``."""
    return cls(f"{status} Client Error", response=SimpleNamespace(status_code=status, headers={}, request=None))


def test_push_and_pull_errors_say_what_to_do(runs, hub, tmp_path, monkeypatch, capsys):
    out = tmp_path / "hub_folder"
    _export(runs[0]["lora"], out)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_stored_token"))
    assert huggingface_hub.get_token() is None
    assert main(["hub", "push", str(out), "--repo-id", "user/model"]) == 2
    err = capsys.readouterr().err
    assert "not logged in" in err and "hf auth login" in err and "HF_TOKEN" in err and hub.calls == []
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["hub", "push", str(tmp_path), "--repo-id", "user/model"]) == 2
    assert "convlora export --run-dir RUN --format hub" in capsys.readouterr().err and hub.calls == []

    def refuse(self, repo_id, **kwargs):
        raise _http_error(HfHubHTTPError, 403)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    assert main(["hub", "push", str(out), "--repo-id", "org/model"]) == 2
    assert "write access" in capsys.readouterr().err

    def missing(repo_id, **kwargs):
        raise _http_error(RepositoryNotFoundError, 404)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    assert main(["hub", "pull", "user/missing", "--output", str(tmp_path / "pulled")]) == 2
    err = capsys.readouterr().err
    assert "no repository user/missing" in err and "hf auth login" in err and not (tmp_path / "pulled").exists()

    def not_an_export(repo_id, local_dir=None, **kwargs):
        (local_dir / "pytorch_model.bin").write_bytes(b"weights of something else")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_an_export)
    assert main(["hub", "pull", "someone/other", "--output", str(tmp_path / "pulled")]) == 2
    assert "holds no model.safetensors" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub_folder"]  # no partial folder


def test_offline_push_and_pull_say_the_hub_cannot_be_reached(runs, tmp_path, monkeypatch, capsys):
    """The real huggingface_hub, its endpoint a local port nothing listens on: what it raises offline."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "hub_folder"
    _export(runs[0]["lora"], out)
    assert main(["hub", "push", str(out), "--repo-id", "user/model"]) == 2
    assert "cannot reach the Hugging Face Hub" in capsys.readouterr().err
    assert main(["hub", "pull", "user/model", "--output", str(tmp_path / "pulled")]) == 2
    assert "cannot reach the Hugging Face Hub" in capsys.readouterr().err
    assert not (tmp_path / "pulled").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["hub", "pull", "user/model"]) == 2 and "HF_HUB_OFFLINE" in capsys.readouterr().err
