"""Publishing to and pulling from the Hugging Face Hub, and the one resolver for "a repo id or a local path".

Every radtune command that takes a model, adapter or dataset accepts either a local folder or a Hub repo id and
calls `resolve_model_path` to get a local folder. The token comes from the environment (`HF_TOKEN`) or from
`hf auth login`, read by huggingface_hub itself: radtune never prints it nor writes it anywhere. Hub failures
surface as `HubError` with a message naming the repo, revision or file, not as a stack trace.

    from radtune.common.hub import push_folder, pull, resolve_model_path

    push_folder("runs/slake-lora", "me/llava-slake-lora")             # private by default, with a model card
    path = resolve_model_path("me/llava-slake-lora")                   # → the local snapshot folder
    pull("me/llava-slake-lora", "adapters/slake")                      # → a plain folder
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects

from radtune.common.model_card import build_model_card

try:  # the HTTP client huggingface_hub speaks through: httpx2 from huggingface_hub 2.0, httpx before
    from httpx2 import TransportError
except ImportError:
    from httpx import TransportError

REPO_TYPES = ("model", "dataset")
# Never pushed: git and huggingface_hub cache folders, bytecode, and the Trainer's intermediate checkpoints.
DEFAULT_IGNORE = (".git/*", ".cache/*", "*/.cache/*", "__pycache__/*", "*/__pycache__/*", "checkpoint-*/*")


class HubError(RuntimeError):
    """A Hub operation failed; the message names the repo, revision or file and says what to check."""


@dataclass
class PushResult:
    repo_url: str
    commit_url: str
    private: bool | None


def _describe(repo_id: str, repo_type: str, revision: str | None) -> str:
    at = f" at revision '{revision}'" if revision else ""
    return f"{repo_type} repo '{repo_id}'{at}"


@contextmanager
def hub_errors(repo_id: str, repo_type: str = "model", revision: str | None = None, filename: str | None = None):
    """Turn huggingface_hub's exceptions into a `HubError` whose message names what was missing."""
    repo = _describe(repo_id, repo_type, revision)
    try:
        yield
    except GatedRepoError as error:
        raise HubError(
            f"{repo} is gated: accept its conditions on the Hub, then retry with a token that may read it"
        ) from error
    except RepositoryNotFoundError as error:
        raise HubError(
            f"{repo} was not found (or it is private and the token cannot read it). Check the repo id and "
            "--repo-type, and that HF_TOKEN or `hf auth login` gives access to it."
        ) from error
    except RevisionNotFoundError as error:
        raise HubError(f"revision '{revision or 'main'}' was not found in {repo_type} repo '{repo_id}'") from error
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        what = f"file '{filename}' of {repo}" if filename else repo
        raise HubError(
            f"{what} is not in the local cache and the Hub could not be reached (offline mode, or no "
            f"connection): {error}"
        ) from error
    except EntryNotFoundError as error:
        raise HubError(f"file '{filename or '?'}' was not found in {repo}") from error
    except HFValidationError as error:
        raise HubError(f"'{repo_id}' is neither an existing local path nor a valid Hub repo id: {error}") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        hint = " Is HF_TOKEN set (or `hf auth login` done) with write access?" if status in (401, 403) else ""
        raise HubError(
            f"the Hub refused a request for {repo} (HTTP {status}): {error.server_message or error}.{hint}"
        ) from error
    except TransportError as error:
        raise HubError(f"could not reach the Hub at {constants.ENDPOINT} for {repo}: {error}") from error


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise HubError(f"repo_type must be one of {REPO_TYPES}, got '{repo_type}'")


def resolve_model_path(repo_or_path: str | Path, repo_type: str = "model", revision: str | None = None) -> Path:
    """A local folder for a model, adapter or dataset named by a local path or a Hub repo id.

    An existing local path comes back unchanged; anything else is downloaded (or taken from the cache) with
    `snapshot_download`.

    Args:
        repo_or_path (`str` or `Path`): a local folder or file, or a Hub repo id (`namespace/name`).
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"` or `"dataset"`.
        revision (`str`, *optional*): branch, tag or commit on the Hub; defaults to `main`.

    Returns:
        `Path`

    Raises:
        `HubError`: the path does not exist and the repo (or revision) cannot be found or fetched.
    """
    path = Path(repo_or_path).expanduser()
    if path.exists():
        return path
    _check_repo_type(repo_type)
    with hub_errors(str(repo_or_path), repo_type, revision):
        return Path(snapshot_download(str(repo_or_path), repo_type=repo_type, revision=revision))


def _folder_operations(folder: Path, ignore_patterns: Sequence[str]) -> list[CommitOperationAdd]:
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    kept = filter_repo_objects(files, ignore_patterns=list(ignore_patterns))
    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in kept]


def push_folder(
    folder: str | Path,
    repo_id: str,
    repo_type: str = "model",
    private: bool = True,
    revision: str | None = None,
    commit_message: str | None = None,
    card: bool = True,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str = "other",
    tags: list[str] | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE,
) -> PushResult:
    """Push a model, adapter or dataset folder to the Hub in one commit.

    For models and adapters a model card is generated (see `radtune.common.model_card.build_model_card`), checked
    by the Hub's YAML validator, and committed as `README.md`; the folder itself is never modified.

    Args:
        folder (`str` or `Path`): the folder to push.
        repo_id (`str`): `namespace/name`; created when missing.
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"` (models and adapters) or `"dataset"`.
        private (`bool`, *optional*, defaults to `True`): visibility of a repo this call creates (an existing
            repo keeps its visibility).
        revision (`str`, *optional*): the branch to commit to; defaults to `main`.
        commit_message (`str`, *optional*): defaults to "Upload <folder name> with radtune".
        card (`bool`, *optional*, defaults to `True`): generate the model card (models and adapters only).
        base_model, datasets, license, tags: passed to `build_model_card`.
        ignore_patterns (`Sequence[str]`, *optional*): glob patterns of files left out; defaults to git and cache
            folders and the Trainer's `checkpoint-*` folders.

    Returns:
        `PushResult`: the repo URL, the commit URL and the repo's visibility.
    """
    _check_repo_type(repo_type)
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"folder to push not found: {folder}")
    operations = _folder_operations(folder, ignore_patterns)
    if not operations:
        raise HubError(f"nothing to push: {folder} holds no files")
    if card and repo_type == "model":
        try:
            model_card = build_model_card(folder, repo_id, base_model, datasets, license, tags)
        except ValueError as error:
            raise HubError(f"cannot write the model card: {error}") from error
        with hub_errors(repo_id, repo_type, revision):
            try:
                model_card.validate(repo_type="model")
            except ValueError as error:
                raise HubError(f"the Hub rejected the generated model card's YAML: {error}") from error
        operations = [op for op in operations if op.path_in_repo != "README.md"]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(model_card).encode()))

    api = HfApi()
    with hub_errors(repo_id, repo_type, revision):
        repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.create_commit(
            repo_url.repo_id,
            operations,
            commit_message=commit_message or f"Upload {folder.resolve().name} with radtune",
            repo_type=repo_type,
            revision=revision,
        )
        info = api.repo_info(repo_url.repo_id, repo_type=repo_type)
    return PushResult(repo_url=str(repo_url), commit_url=commit.commit_url, private=info.private)


def pull(
    repo_id: str,
    local_dir: str | Path,
    repo_type: str = "model",
    revision: str | None = None,
    filenames: Sequence[str] | None = None,
) -> Path:
    """Download a repo (or only `filenames` from it) into `local_dir`, as plain files.

    Args:
        repo_id (`str`): `namespace/name` on the Hub.
        local_dir (`str` or `Path`): where the files go (created when missing).
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"` or `"dataset"`.
        revision (`str`, *optional*): branch, tag or commit; defaults to `main`.
        filenames (`Sequence[str]`, *optional*): pull only these files; by default the whole repo.

    Returns:
        `Path`: `local_dir`.

    Raises:
        `HubError`: the repo, revision or one of `filenames` does not exist (the message names it).
    """
    _check_repo_type(repo_type)
    local_dir = Path(local_dir)
    for filename in filenames or ():
        with hub_errors(repo_id, repo_type, revision, filename=filename):
            hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, local_dir=local_dir)
    if not filenames:
        with hub_errors(repo_id, repo_type, revision):
            snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=local_dir)
    return local_dir
