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

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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

from radtune.common.errors import HubError, MissingPathError
from radtune.common.model_card import build_model_card

try:  # the HTTP client huggingface_hub speaks through: httpx2 from huggingface_hub 2.0, httpx before
    from httpx2 import TransportError
except ImportError:
    from httpx import TransportError

__all__ = ["HubError", "MissingPathError", "PushResult", "check_path_or_repo", "hub_errors", "looks_like_local_path",
           "pull", "push_folder", "require_model_files", "resolve_model_path"]  # fmt: skip

REPO_TYPES = ("model", "dataset")
# Never pushed: git and huggingface_hub cache folders, bytecode, and the Trainer's intermediate checkpoints.
DEFAULT_IGNORE = (".git/*", ".cache/*", "*/.cache/*", "__pycache__/*", "*/__pycache__/*", "checkpoint-*/*")
# Seconds one Hub request may take when asking whether a name that is not a local folder is a repo (the client
# tries twice, so a Hub out of reach fails in about 2 × this + 1 s); RADTUNE_HUB_TIMEOUT overrides it.
HUB_PROBE_TIMEOUT = 3.0
# What a folder holding a model or an adapter has at its top level (a Trainer run that stopped early has only
# `checkpoint-*` folders).
MODEL_FILES = ("config.json", "adapter_config.json", "dual_encoder_config.json", "model.safetensors",
               "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")  # fmt: skip


@dataclass
class PushResult:
    repo_url: str
    commit_url: str
    private: bool | None
    left_out: list[str] = field(default_factory=list)  # per-item files of a credentialed run, not pushed


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
        hint = ""
        if status in (401, 403):
            access = "write" if _request_method(error) in ("POST", "PUT", "PATCH", "DELETE") else "read"
            hint = f" Is HF_TOKEN set (or `hf auth login` done) with a valid token that has {access} access to it?"
        raise HubError(
            f"the Hub refused a request for {repo} (HTTP {status}): {error.server_message or error}.{hint}"
        ) from error
    except TransportError as error:
        raise HubError(f"could not reach the Hub at {constants.ENDPOINT} for {repo}: {error}") from error
    except RuntimeError as error:
        # huggingface_hub wraps a failed LFS upload (a dropped connection, a refused part) in a bare RuntimeError.
        cause = error.__cause__
        if isinstance(error, HubError) or not isinstance(cause, (TransportError, HfHubHTTPError)):
            raise
        raise HubError(
            f"{str(error).rstrip('.')} ({type(cause).__name__}: {str(cause).rstrip('.')}); nothing was committed to "
            f"{repo}: run the same command again (files already uploaded are not sent twice)"
        ) from error


def _request_method(error: HfHubHTTPError) -> str:
    try:
        return error.response.request.method.upper()
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError for a response built without a request
        return ""


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise HubError(f"repo_type must be one of {REPO_TYPES}, got '{repo_type}'")


def looks_like_local_path(name: str | Path) -> bool:
    """True for a name that can only mean a local path: it starts with `./`, `../`, `/` or `~`, ends with `/`, or
    has more than two `/`-separated parts (a Hub repo id is `name` or `namespace/name`)."""
    text = str(name)
    if text in (".", "..") or text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or text.endswith("/"):
        return True
    return "\\" in text or os.path.isabs(text) or len(text.split("/")) > 2


def _not_here(name: str) -> str:
    where = "" if os.path.isabs(os.path.expanduser(name)) else f" (cwd {Path.cwd()})"
    return f"no such folder: {name}{where}"


@dataclass
class _HubAnswer:
    found: bool
    answered: bool  # False: offline mode, or the Hub out of reach
    reason: str = ""


def _probe_hub(name: str, repo_type: str, revision: str | None) -> _HubAnswer:
    """Ask the Hub, with a short timeout, whether `name` is a repo; a refused revision or a gated repo raise."""
    try:
        with hub_errors(name, repo_type, revision):
            timeout = float(os.environ.get("RADTUNE_HUB_TIMEOUT") or HUB_PROBE_TIMEOUT)
            HfApi().repo_info(name, repo_type=repo_type, revision=revision, timeout=timeout)
    except HubError as error:
        cause = error.__cause__
        if isinstance(cause, GatedRepoError):
            return _HubAnswer(True, True)  # it exists; downloading says what to do about the gate
        if isinstance(cause, RepositoryNotFoundError):
            return _HubAnswer(False, True, "not found (or it is private and the token from HF_TOKEN or `hf auth "
                                           "login` cannot read it)")  # fmt: skip
        if isinstance(cause, HFValidationError):
            return _HubAnswer(False, True, "not a valid repo id")
        if isinstance(cause, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            return _HubAnswer(False, False, "offline mode (HF_HUB_OFFLINE=1) and not in the local cache")
        if isinstance(cause, TransportError):
            return _HubAnswer(False, False, f"the Hub ({constants.ENDPOINT}) could not be reached ({cause}) and it "
                                            "is not in the local cache")  # fmt: skip
        raise
    return _HubAnswer(True, True)


def check_path_or_repo(
    name: str | Path,
    repo_type: str = "model",
    revision: str | None = None,
    in_cache: Callable[[], bool] | None = None,
) -> bool:
    """Fail fast, naming both readings, unless `name` is an existing local path or a repo on the Hub.

    A name that can only be a path (`looks_like_local_path`) and does not exist fails at once with "no such
    folder"; a one- or two-part name is asked of the Hub with a short timeout (`HUB_PROBE_TIMEOUT`, or the
    `RADTUNE_HUB_TIMEOUT` variable), so a mistyped `runs/x` fails within seconds, offline too.

    Args:
        name (`str` or `Path`): a local path or a Hub repo id.
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"` or `"dataset"`.
        revision (`str`, *optional*): branch, tag or commit on the Hub.
        in_cache (`Callable[[], bool]`, *optional*): when the Hub cannot be asked (offline, out of reach), whether
            a cached copy of the repo exists; without it, none does.

    Returns:
        `bool`: `True` when `name` is a local path, `False` when it is read from the Hub (or its cache).

    Raises:
        `MissingPathError`: neither a local path nor a repo (the message names the folder, the working directory
            and why the Hub reading failed). `HubError`: the repo exists but the revision does not, or the Hub
            refused the request.
    """
    if Path(name).expanduser().exists():
        return True
    text = str(name)
    if looks_like_local_path(name):
        raise MissingPathError(_not_here(text))
    _check_repo_type(repo_type)
    answer = _probe_hub(text, repo_type, revision)
    if answer.found or (not answer.answered and in_cache is not None and in_cache()):
        return False
    raise MissingPathError(
        f"{text} is not a folder here (cwd {Path.cwd()}) and not a {repo_type} repo on the Hub: {answer.reason}"
    )


def _cached_snapshot(repo_id: str, repo_type: str, revision: str | None) -> Path | None:
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, EntryNotFoundError, HFValidationError):
        return None


def resolve_model_path(repo_or_path: str | Path, repo_type: str = "model", revision: str | None = None) -> Path:
    """A local folder for a model, adapter or dataset named by a local path or a Hub repo id.

    An existing local path comes back unchanged; anything else is checked with `check_path_or_repo` (no Hub
    look-up for a name that can only be a path, a short timeout otherwise) and then downloaded (or taken from the
    cache) with `snapshot_download`.

    Args:
        repo_or_path (`str` or `Path`): a local folder or file, or a Hub repo id (`namespace/name`).
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"` or `"dataset"`.
        revision (`str`, *optional*): branch, tag or commit on the Hub; defaults to `main`.

    Returns:
        `Path`

    Raises:
        `MissingPathError` (a `HubError` and a `FileNotFoundError`): neither a local path nor a repo on the Hub.
        `HubError`: the repo exists but the revision or a download fails.
    """
    path = Path(repo_or_path).expanduser()
    if path.exists():
        return path
    name = str(repo_or_path)
    cached: list[Path] = []

    def in_cache() -> bool:
        cached.extend(filter(None, [_cached_snapshot(name, repo_type, revision)]))
        return bool(cached)

    check_path_or_repo(name, repo_type, revision, in_cache=in_cache)
    if cached:  # the Hub could not be asked: use the cached snapshot rather than wait on the network again
        return cached[0]
    with hub_errors(name, repo_type, revision):
        return Path(snapshot_download(name, repo_type=repo_type, revision=revision))


def require_model_files(folder: str | Path, flag: str = "--model") -> None:
    """Refuse a folder that holds no model or adapter, naming its `checkpoint-*` folders when it has some.

    A Trainer run that stopped before saving its model has only `checkpoint-N` folders; the message names them
    and the `flag` value that evaluates the newest one.

    Args:
        folder (`str` or `Path`): the folder given as a model (an existing local folder).
        flag (`str`, *optional*, defaults to `"--model"`): the option the user passes the folder with.

    Raises:
        `ValueError`: no model or adapter file (`config.json`, `adapter_config.json`, `*.safetensors`, …) at the
            folder's top level.
    """
    folder = Path(folder)
    if not folder.is_dir() or any((folder / name).is_file() for name in MODEL_FILES):
        return
    if any(folder.glob("*.safetensors")):
        return
    steps = sorted(
        (int(path.name.removeprefix("checkpoint-")), path.name)
        for path in folder.glob("checkpoint-*")
        if path.is_dir() and path.name.removeprefix("checkpoint-").isdigit()
    )
    if steps:
        names = ", ".join(name for _step, name in steps)
        raise ValueError(f"{folder} holds no saved model, only checkpoints ({names}): training stopped before "
                         f"saving it. Pass {flag} {folder / steps[-1][1]} to use the newest one.")  # fmt: skip
    raise ValueError(f"{folder} holds no model or adapter (no {', '.join(MODEL_FILES[:3])} or *.safetensors)")


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
    allow_credentialed_public: bool = False,
) -> PushResult:
    """Push a model, adapter or dataset folder to the Hub in one commit.

    Credentialed data (see `radtune.common.credentialed`) is checked before any request: a marked dataset goes
    only to a private repo, a marked run goes public only with `allow_credentialed_public`, and a marked run's
    per-item files (`evaluation_results.csv`, …) are left out (`PushResult.left_out` lists them). An existing
    public repo counts as public.

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
        allow_credentialed_public (`bool`, *optional*, defaults to `False`): let a run trained on credentialed data
            go to a public repo (still without its per-item files).

    Returns:
        `PushResult`: the repo URL, the commit URL, the repo's visibility and the files left out.

    Raises:
        `CredentialedPublishError` (a `HubError`): the push would make credentialed data public.
    """
    from radtune.common.credentialed import CredentialedPublishError, check_publish, left_out

    _check_repo_type(repo_type)
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"folder to push not found: {folder}")
    rule = check_publish(folder, repo_type=repo_type, private=private, allow_public=allow_credentialed_public)
    ignore_patterns = [*ignore_patterns, *rule.leave_out]
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
        if rule.private_only and not api.repo_info(repo_url.repo_id, repo_type=repo_type).private:
            raise CredentialedPublishError(
                f"{repo_url.repo_id} already exists and is public, and {folder} holds credentialed data: nothing was "
                "pushed. Push to a private repo (a new name, or make this one private first)."
            )
        commit = api.create_commit(
            repo_url.repo_id,
            operations,
            commit_message=commit_message or f"Upload {folder.resolve().name} with radtune",
            repo_type=repo_type,
            revision=revision,
        )
        info = api.repo_info(repo_url.repo_id, repo_type=repo_type)
    return PushResult(repo_url=str(repo_url), commit_url=commit.commit_url, private=info.private,
                      left_out=left_out(folder, rule.leave_out) if rule.leave_out else [])  # fmt: skip


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
