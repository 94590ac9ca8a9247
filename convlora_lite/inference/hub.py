"""A Hub folder to and from the Hugging Face Hub: :func:`push` (``convlora hub push``) and :func:`pull`
(``convlora hub pull``), with ``huggingface_hub``.

:func:`push` creates the model repository (private unless ``public``; an existing one keeps its
visibility) and uploads a folder written by ``convlora export --format hub``; :func:`pull` downloads
one (``snapshot_download``) into a folder that ``convlora predict --run-dir`` and
``Segmenter.from_run`` take. The token is ``huggingface_hub``'s own: ``HF_TOKEN``, else the one
``hf auth login`` (``huggingface-cli login`` before huggingface_hub 1.0) stored. Its exceptions
become the project's errors, each saying what to do: not logged in or a token refused (ConfigError),
a repository or revision that does not exist or cannot be seen (ConfigError), no network
(DownloadError).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from convlora_lite.errors import CheckpointError, ConfigError, DownloadError
from convlora_lite.inference.export import HUB_WEIGHTS, check_hub_output, is_hub_folder
from convlora_lite.io import atomic_folder

LOGIN = ("log in with `hf auth login` (`huggingface-cli login` before huggingface_hub 1.0) or set HF_TOKEN to a "
         "token from https://huggingface.co/settings/tokens")
#: what the exceptions of the HTTP libraries huggingface_hub has used are called when the Hub cannot be reached:
#: httpx's (huggingface_hub 1.0 and later) ``TransportError``, requests' ``ConnectionError`` and ``Timeout``.
NETWORK_ERRORS = ("TransportError", "ConnectionError", "Timeout")


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` says the server could not be reached (matched by class name: no HTTP library imported)."""
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        cls.__name__ in NETWORK_ERRORS for cls in type(error).__mro__)


@contextmanager
def hub_errors(repo_id: str, revision: str | None = None):
    """Turn huggingface_hub's exceptions inside the block into the project's errors about ``repo_id``."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = (f"cannot reach the Hugging Face Hub for {repo_id} (no network, a proxy in the way, or HF_HUB_OFFLINE=1 "
               "set): connect and run the command again.")
    try:
        yield
    except HFValidationError as err:
        raise ConfigError(f"{repo_id!r} is not a Hub repository name: use user/name or org/name ({err}).") from err
    except GatedRepoError as err:
        raise ConfigError(f"{repo_id} is gated: accept its conditions at https://huggingface.co/{repo_id} with the "
                          "account whose token this is, then run the command again.") from err
    except RepositoryNotFoundError as err:
        raise ConfigError(f"no repository {repo_id} on the Hugging Face Hub that this token can see: check the name "
                          f"(user/name); a private one needs its owner's token: {LOGIN}.") from err
    except RevisionNotFoundError as err:
        raise ConfigError(f"{repo_id} has no revision {revision!r}: pass one of its branches, tags or commits, or "
                          "leave --revision out for main.") from err
    except LocalEntryNotFoundError as err:  # snapshot_download: the Hub unreachable and nothing in the cache
        raise DownloadError(offline) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            raise ConfigError(f"the Hugging Face Hub refused the token (401: invalid or expired): {LOGIN}.") from err
        if status == 403:
            raise ConfigError(f"the token may not write to {repo_id} (403): use a token with write access to that "
                              f"user or organisation ({LOGIN}).") from err
        raise DownloadError(f"the Hugging Face Hub answered {status} for {repo_id}: {err}. Try again later.") from err
    except Exception as err:
        if _is_network_error(err):
            raise DownloadError(offline) from err
        raise


def push(folder, repo_id: str, *, public: bool = False) -> str:
    """Create the model repository ``repo_id`` (private unless ``public``; kept as it is when it exists) and
    upload the Hub folder ``folder`` to it; returns the repository's URL."""
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    if not is_hub_folder(folder):
        raise CheckpointError(f"{folder} is not a Hub folder (no {HUB_WEIGHTS}): write one first with "
                              f"`convlora export --run-dir RUN --format hub --output {folder}`.")
    if get_token() is None:
        raise ConfigError(f"not logged in to the Hugging Face Hub: {LOGIN} (a token with write access), then push "
                          "again.")
    api = HfApi()
    with hub_errors(repo_id):
        url = api.create_repo(repo_id, private=not public, exist_ok=True)
        api.upload_folder(repo_id=getattr(url, "repo_id", repo_id), folder_path=str(folder),
                          commit_message="convlora hub push")
    return str(url)


def pull(repo_id: str, output=None, *, revision: str | None = None) -> Path:
    """Download the Hub folder ``repo_id`` (at ``revision``, default main) to ``output``, written whole (an
    earlier Hub folder there is replaced), or, without ``output``, into huggingface_hub's cache; returns
    the folder. CheckpointError when the repository holds no export."""
    from huggingface_hub import snapshot_download

    def download(local_dir=None) -> Path:
        with hub_errors(repo_id, revision):
            folder = Path(snapshot_download(repo_id, revision=revision, local_dir=local_dir))
        if not is_hub_folder(folder):
            raise CheckpointError(f"{repo_id} holds no {HUB_WEIGHTS}: it is not a model shared with "
                                  "`convlora hub push`.")
        return folder

    if output is None:
        return download()
    output = check_hub_output(output)
    atomic_folder(output, download)
    return output
