"""A local Hugging Face Hub-compatible HTTP server for radtune's tests.

Nothing in the test suite can reach huggingface.co and no self-hostable Hub exists, so this module speaks enough of
the Hub's HTTP API for the real clients (huggingface_hub, datasets, transformers, peft) to create repos, upload
(regular and LFS files), list, resolve and download them:

    POST /api/repos/create                                 (honours `visibility` and the legacy `private`)
    DELETE /api/repos/delete
    GET  /api/whoami-v2
    POST /api/validate-yaml                                (checks the card's YAML; 400 with the reasons)
    GET  /api/{models|datasets}/{ns}/{name}[/revision/{rev}]
    GET  /api/{models|datasets}/{ns}/{name}/refs
    GET  /api/{models|datasets}/{ns}/{name}/tree/{rev}[/{path}]     (?recursive=, ?expand=)
    POST /api/{models|datasets}/{ns}/{name}/paths-info/{rev}        (form or JSON `paths`)
    POST /api/{models|datasets}/{ns}/{name}/preupload/{rev}         ("lfs" for binary, "regular" for text)
    POST /api/{models|datasets}/{ns}/{name}/commit/{rev}            (NDJSON: header, file, lfsFile, deleted*)
    POST /[datasets/]{ns}/{name}.git/info/lfs/objects/batch         (LFS batch API, basic transfer)
    PUT  /lfs-storage/{sha256}   POST /lfs-verify/{sha256}          (upload storage: checks the sha256)
    HEAD|GET /[datasets/]{ns}/{name}/resolve/{rev}/{path}           (ETag, X-Repo-Commit, X-Linked-*; Range)

Errors carry the Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) so the clients raise
their usual exceptions. Requests without a token are anonymous: they cannot write, and private repos look missing
to them, as on the Hub; a request with a wrong token gets the Hub's 401 "Invalid credentials in Authorization
header", whatever it asks. Storage lives in a temporary folder.

Faults for the tests of radtune's error handling (`HubServer(faults={...})` or `server.inject_fault(name, times)`):

    drop-lfs-upload    an LFS upload (PUT /lfs-storage) is cut: the server reads part of the body, then closes the
                       connection without answering

Run it alone with `python tests/hub_server.py` (prints the URL and token), or in-process with `HubServer()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import yaml
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

USER = "radtune-tester"
DEFAULT_TOKEN = "hf_radtune_local_test_token"
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".npy")
_LFS_MIN_SIZE = 10 * 1024 * 1024
_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in _LFS_SUFFIXES)
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
FAULTS = ("drop-lfs-upload",)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _looks_binary(path: str, sample: bytes, size: int) -> bool:
    """The Hub's choice between LFS and a regular git blob: LFS for binary content, weights and large files."""
    if path.lower().endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start < len(sample) - 3  # not just a multi-byte character cut at the end of the sample
    return False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class StoredFile:
    size: int
    sha256: str
    git_oid: str  # the git blob id (of the pointer file for LFS files)
    lfs: bool

    def entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.git_oid, "size": self.size, "path": path}
        if self.lfs:
            entry["lfs"] = {
                "oid": self.sha256,
                "size": self.size,
                "pointerSize": len(_lfs_pointer(self.sha256, self.size)),
            }
        return entry

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    oid: str
    title: str
    date: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


class HubState:
    """Repos, commits and blobs. Blob bytes live in `root/blobs/<sha256>`; everything else in memory."""

    def __init__(self, root: Path):
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.Lock()
        self._counter = 0

    def store_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.blobs / sha256
        if not path.exists():
            partial = path.with_suffix(f".{threading.get_ident()}.part")
            partial.write_bytes(data)
            partial.replace(path)
        return sha256

    def has_blob(self, sha256: str) -> bool:
        return (self.blobs / sha256).exists()

    def read_blob(self, sha256: str) -> bytes:
        return (self.blobs / sha256).read_bytes()

    def new_commit(self, repo: Repo, parent: Commit | None, title: str, files: dict[str, StoredFile]) -> Commit:
        with self.lock:
            self._counter += 1
            seed = (
                f"{repo.repo_type}/{repo.repo_id}/{parent.oid if parent else ''}/{title}/{self._counter}/{time.time()}"
            )
        commit = Commit(oid=hashlib.sha1(seed.encode()).hexdigest(), title=title, date=_now(), files=files)
        repo.commits[commit.oid] = commit
        return commit


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-") -> None:  # the clients' requests are in `HubServer.requests`
        pass


class HubServer:
    """The server on 127.0.0.1, port 0 by default, in a daemon thread. Use as a context manager or call `close()`."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        storage: str | Path | None = None,
        port: int = 0,
        faults: dict[str, int] | None = None,
    ):
        self.token = token
        self._faults: dict[str, int] = {}
        self._faults_lock = threading.Lock()
        for name, times in (faults or {}).items():
            self.inject_fault(name, times)
        self._tmp = None if storage else tempfile.TemporaryDirectory(prefix="radtune-hub-")
        self.state = HubState(Path(storage or self._tmp.name))
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): what the clients called
        self._server = make_server("127.0.0.1", port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def inject_fault(self, name: str, times: int = 1) -> None:
        """Make the next `times` requests that `name` concerns fail that way (`times=0` clears it); see `FAULTS`."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}")
        with self._faults_lock:
            self._faults[name] = times

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, name: str) -> bool:
        with self._faults_lock:
            if self._faults.get(name, 0) <= 0:
                return False
            self._faults[name] -= 1
            return True

    def client_env(self, hf_home: str | Path) -> dict[str, str]:
        """The variables a client process needs, to be set before huggingface_hub is imported."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    # ---------------------------------------------------------------------------------------------------------
    # WSGI plumbing

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        raw_path = urlsplit(environ.get("REQUEST_URI") or environ.get("RAW_URI") or request.path).path
        try:
            self._check_token(request)
            response = self._dispatch(request, raw_path)
        except HubHTTPError as error:
            response = Response(json.dumps({"error": error.message}), status=error.status, mimetype="application/json")
            response.headers["X-Error-Message"] = error.message
            if error.code:
                response.headers["X-Error-Code"] = error.code
        self.requests.append((request.method, raw_path, response.status_code))
        return response(environ, start_response)

    _REPO_API = r"/api/(?P<kind>models|datasets)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
    _REPO_WEB = r"/(?P<prefix>datasets/)?(?P<ns>[^/]+)/(?P<name>[^/]+)"
    _ROUTES = [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("GET", r"/api/agent-harnesses", "agent_harnesses"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("DELETE", r"/api/repos/delete", "delete_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", _REPO_API + r"(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
        ("GET", _REPO_API + r"/refs", "refs"),
        ("GET", _REPO_API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        ("POST", _REPO_API + r"/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("POST", _REPO_API + r"/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", _REPO_API + r"/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", _REPO_WEB + r"\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-storage/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", r"/lfs-verify/(?P<oid>[0-9a-f]{64})", "lfs_verify"),
        ("GET|HEAD", _REPO_WEB + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]

    def _dispatch(self, request: Request, raw_path: str) -> Response:
        for methods, pattern, handler in self._ROUTES:
            match = re.fullmatch(pattern, raw_path)
            if match and request.method in methods.split("|"):
                args = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                return getattr(self, f"_{handler}")(request, **args)
        raise HubHTTPError(404, f"No route for {request.method} {raw_path} on the local test Hub")

    @staticmethod
    def _json(payload, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    def _check_token(self, request: Request) -> None:
        """A token that is not the server's is refused whatever the request, as the Hub does."""
        header = request.headers.get("Authorization")
        if header is not None and header != f"Bearer {self.token}" and request.path != "/api/agent-harnesses":
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _require_auth(self, request: Request) -> None:
        if not self._authorised(request):
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, request: Request, kind: str, repo_id: str, write: bool = False) -> Repo:
        repo_type = kind.removesuffix("s")
        repo = self.state.repos.get((repo_type, repo_id))
        if write:
            self._require_auth(request)
        if repo is None or (repo.private and not self._authorised(request)):
            raise HubHTTPError(404, f"Repository Not Found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ---------------------------------------------------------------------------------------------------------
    # Account and repos

    def _whoami(self, request: Request) -> Response:
        self._require_auth(request)
        return self._json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": USER,
                "fullname": "radtune tests",
                "email": None,
                "orgs": [],
                "isPro": False,
                "auth": {"type": "access_token", "accessToken": {"displayName": "local-tests", "role": "write"}},
            }
        )

    def _agent_harnesses(self, request: Request) -> Response:
        return self._json({"standardEnvVars": [], "harnesses": {}})  # asked by every client: nothing to detect

    def _create_repo(self, request: Request) -> Response:
        self._require_auth(request)
        body = request.get_json(force=True)
        repo_type = body.get("type") or "model"
        if repo_type not in _PREFIX:
            raise HubHTTPError(400, f"Invalid repo type: {repo_type}")
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        if "visibility" in body:
            if body["visibility"] not in ("public", "private"):
                raise HubHTTPError(400, f"Invalid visibility: {body['visibility']}")
            private = body["visibility"] == "private"
        else:
            private = bool(body.get("private", False))
        with self.state.lock:
            key = (repo_type, repo_id)
            if key in self.state.repos:
                repo = self.state.repos[key]
                return self._json({"error": "You already created this repo", "url": self._repo_url(repo)}, 409)
            repo = self.state.repos[key] = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created=_now())
        data = _GITATTRIBUTES.encode()
        sha256 = self.state.store_blob(data)
        initial = {".gitattributes": StoredFile(len(data), sha256, _git_oid(data), lfs=False)}
        repo.branches["main"] = self.state.new_commit(repo, None, "initial commit", initial).oid
        return self._json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, request: Request) -> Response:
        self._require_auth(request)
        body = request.get_json(force=True)
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        repo_type = body.get("type") or "model"
        if self.state.repos.pop((repo_type, repo_id), None) is None:
            raise HubHTTPError(404, f"Repository Not Found: {repo_type} {repo_id}", "RepoNotFound")
        return self._json({})

    def _repo_info(self, request: Request, kind: str, ns: str, name: str, rev: str = "main") -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}")
        commit = repo.resolve(rev)
        blobs = request.args.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, stored in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=stored.size, blobId=stored.git_oid)
                if stored.lfs:
                    sibling["lfs"] = {
                        "size": stored.size,
                        "sha256": stored.sha256,
                        "pointerSize": len(_lfs_pointer(stored.sha256, stored.size)),
                    }
            siblings.append(sibling)
        card = self._card_data(commit)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "createdAt": repo.created,
            "lastModified": commit.date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []) if isinstance(card.get("tags"), list) else [],
            "cardData": card or None,
            "siblings": siblings,
            "usedStorage": sum(stored.size for stored in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = card.get("library_name")
        return self._json(info)

    def _card_data(self, commit: Commit) -> dict:
        stored = commit.files.get("README.md")
        if stored is None:
            return {}
        try:
            metadata, _ = _split_front_matter(self.state.read_blob(stored.sha256).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, yaml.YAMLError):
            return {}
        return metadata

    def _refs(self, request: Request, kind: str, ns: str, name: str) -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}")
        branches = [
            {"name": branch, "ref": f"refs/heads/{branch}", "targetCommit": oid}
            for branch, oid in repo.branches.items()
        ]
        return self._json({"branches": branches, "tags": [], "converts": []})

    # ---------------------------------------------------------------------------------------------------------
    # Listing

    @staticmethod
    def _folder_entry(commit: Commit, path: str) -> dict:
        return {
            "type": "directory",
            "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
            "size": 0,
            "path": path,
        }

    @staticmethod
    def _folders(commit: Commit) -> set[str]:
        folders = set()
        for path in commit.files:
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return folders

    def _with_last_commit(self, entry: dict, commit: Commit, expand: bool) -> dict:
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _tree(self, request: Request, kind: str, ns: str, name: str, rev: str, path: str = "") -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}")
        commit = repo.resolve(rev)
        recursive = request.args.get("recursive", "").lower() in ("1", "true")
        expand = request.args.get("expand", "").lower() in ("1", "true")
        path = path.strip("/")
        folders = self._folders(commit)
        if path and path not in folders:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound")
        prefix = f"{path}/" if path else ""

        def wanted(candidate: str) -> bool:
            if not candidate.startswith(prefix):
                return False
            return recursive or "/" not in candidate[len(prefix) :]

        entries = [self._folder_entry(commit, folder) for folder in sorted(folders) if wanted(folder)]
        entries += [stored.entry(p) for p, stored in sorted(commit.files.items()) if wanted(p)]
        return self._json([self._with_last_commit(entry, commit, expand) for entry in entries])

    def _paths_info(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}")
        commit = repo.resolve(rev)
        if request.is_json:
            body = request.get_json()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            paths = request.form.getlist("paths")
            expand = request.form.get("expand", "").lower() in ("1", "true")
        folders = self._folders(commit)
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(self._with_last_commit(commit.files[path].entry(path), commit, expand))
            elif path in folders:
                entries.append(self._with_last_commit(self._folder_entry(commit, path), commit, expand))
        return self._json(entries)

    # ---------------------------------------------------------------------------------------------------------
    # Upload

    def _preupload(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}", write=True)
        commit = repo.resolve(rev)
        files = []
        for item in request.get_json(force=True).get("files", []):
            path = item["path"]
            binary = _looks_binary(path, base64.b64decode(item.get("sample", "")), int(item.get("size", 0)))
            existing = commit.files.get(path)
            # The oid the client compares with its own to skip unchanged files: sha256 for LFS, git's sha1 otherwise.
            oid = existing.etag if existing is not None and existing.lfs == binary else None
            files.append(
                {"path": path, "uploadMode": "lfs" if binary else "regular", "shouldIgnore": False, "oid": oid}
            )
        return self._json({"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, request: Request, ns: str, name: str, prefix: str = "") -> Response:
        self._repo(request, "datasets" if prefix else "models", f"{ns}/{name}", write=True)
        body = request.get_json(force=True)
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "Only the LFS upload operation is supported by the local test Hub")
        objects = []
        for obj in body.get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"]}
            if not self.state.has_blob(obj["oid"]):
                answer["authenticated"] = True
                answer["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-storage/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/lfs-verify/{obj['oid']}", "header": {}},
                }
            objects.append(answer)
        return Response(json.dumps({"transfer": "basic", "objects": objects}), mimetype="application/vnd.git-lfs+json")

    def _lfs_put(self, request: Request, oid: str) -> Response:
        if self._take_fault("drop-lfs-upload"):
            request.stream.read(1024)  # part of the upload, then the connection goes away without an answer
            connection = request.environ["werkzeug.socket"]
            connection.shutdown(socket.SHUT_RDWR)
            self.requests.append((request.method, request.path, 0))
            raise ConnectionAbortedError("fault injected: drop-lfs-upload")  # werkzeug: a dropped connection
        data = request.get_data()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubHTTPError(400, f"Uploaded content does not match sha256 {oid}")
        self.state.store_blob(data)
        return Response(b"", status=200)

    def _lfs_verify(self, request: Request, oid: str) -> Response:
        body = request.get_json(force=True)
        if not self.state.has_blob(oid) or (self.state.blobs / oid).stat().st_size != body.get("size"):
            raise HubHTTPError(404, f"LFS object {oid} not found or of the wrong size")
        return self._json({"success": True})

    def _commit(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, f"{ns}/{name}", write=True)
        if rev not in repo.branches:
            raise HubHTTPError(404, f"Branch not found: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in request.get_data().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "A commit starts with a header line")
        header = lines[0]["value"]
        with self.state.lock:
            parent = repo.commits[repo.branches[rev]]
        if header.get("parentCommit") and header["parentCommit"] != parent.oid:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"].strip("/")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubHTTPError(400, f"Unsupported encoding for {path}")
                data = base64.b64decode(value["content"])
                files[path] = StoredFile(len(data), self.state.store_blob(data), _git_oid(data), lfs=False)
            elif key == "lfsFile":
                oid = value["oid"]
                if not self.state.has_blob(oid):
                    raise HubHTTPError(422, f"LFS object {oid} for {path} was never uploaded")
                size = (self.state.blobs / oid).stat().st_size
                files[path] = StoredFile(size, oid, _git_oid(_lfs_pointer(oid, size)), lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubHTTPError(404, f"Cannot delete missing file {path}", "EntryNotFound")
            elif key == "deletedFolder":
                for candidate in [p for p in files if p.startswith(f"{path}/")]:
                    del files[candidate]
            else:
                raise HubHTTPError(400, f"Unsupported commit operation: {key}")
        commit = self.state.new_commit(repo, parent, header.get("summary") or "commit", files)
        with self.state.lock:
            if repo.branches[rev] != parent.oid:
                raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
            repo.branches[rev] = commit.oid
        return self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}",
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

    # ---------------------------------------------------------------------------------------------------------
    # Download

    def _resolve(self, request: Request, ns: str, name: str, rev: str, path: str, prefix: str = "") -> Response:
        repo = self._repo(request, "datasets" if prefix else "models", f"{ns}/{name}")
        commit = repo.resolve(rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubHTTPError(404, f"Entry not found: {path} in {repo.repo_id}@{rev}", "EntryNotFound")
        data = self.state.read_blob(stored.sha256)
        status, body = 200, data
        headers = {
            "ETag": f'"{stored.etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.split('/')[-1])}",
        }
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
        byte_range = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", ""))
        if byte_range and request.method == "GET":
            start, end = byte_range.groups()
            if start == "":
                start, end = max(0, len(data) - int(end or 0)), len(data) - 1
            start, end = int(start), int(end) if end else len(data) - 1
            if start >= len(data) and len(data) > 0:
                return Response(b"", status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
        return Response(body, status=status, headers=headers, mimetype="application/octet-stream")

    # ---------------------------------------------------------------------------------------------------------
    # Card validation

    def _validate_yaml(self, request: Request) -> Response:
        body = request.get_json(force=True)
        try:
            metadata, _ = _split_front_matter(body.get("content", ""))
        except (ValueError, yaml.YAMLError) as error:
            return Response(f"Invalid YAML: {error}", status=400, mimetype="text/plain")
        problems = _card_problems(metadata, body.get("repoType") or "model")
        if problems:
            return Response("\n".join(problems), status=400, mimetype="text/plain")
        return self._json({"errors": [], "warnings": []})


def _split_front_matter(text: str) -> tuple[dict, str]:
    """The card's YAML block as a dict, and the text after it. Raises `ValueError` for a malformed block."""
    match = re.match(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", text, re.DOTALL)
    if match is None:
        return {}, text
    metadata = yaml.safe_load(match.group(1)) or {}
    if not isinstance(metadata, dict):
        raise ValueError("the metadata block must be a YAML mapping")
    return metadata, text[match.end() :]


def _card_problems(metadata: dict, repo_type: str) -> list[str]:
    """The Hub's checks, as far as radtune needs them: field types and the shape of `model-index`."""
    problems = []

    def is_str_or_str_list(value) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    for key in ("license", "library_name", "pipeline_tag", "language", "base_model", "datasets", "tags", "metrics"):
        if key in metadata and not is_str_or_str_list(metadata[key]):
            problems.append(f'"{key}" must be a string or a list of strings')
    for key in ("library_name", "pipeline_tag"):
        if isinstance(metadata.get(key), list):
            problems.append(f'"{key}" must be a string')
    for key in ("base_model", "datasets"):
        values = metadata.get(key)
        for value in [values] if isinstance(values, str) else values if isinstance(values, list) else []:
            if isinstance(value, str) and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", value):
                problems.append(f'"{key}" must name Hub repos (namespace/name), got "{value}"')
    if repo_type == "model" and "model-index" in metadata:
        problems += _model_index_problems(metadata["model-index"])
    return problems


def _model_index_problems(model_index) -> list[str]:
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty list']
    problems = []
    for i, model in enumerate(model_index):
        where = f"model-index[{i}]"
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            problems.append(f'"{where}.name" must be a string')
            continue
        results = model.get("results")
        if not isinstance(results, list) or not results:
            problems.append(f'"{where}.results" must be a non-empty list')
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                problems.append(f'"{at}" must be a mapping')
                continue
            if not isinstance(result.get("task"), dict) or not isinstance(result["task"].get("type"), str):
                problems.append(f'"{at}.task.type" must be a string')
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                problems.append(f'"{at}.dataset" needs string "type" and "name"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                problems.append(f'"{at}.metrics" must be a non-empty list')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
                    problems.append(f'"{at}.metrics[{k}].type" must be a string')
                elif (
                    "value" not in metric or isinstance(metric["value"], (dict, list, bool)) or metric["value"] is None
                ):
                    problems.append(f'"{at}.metrics[{k}].value" must be a number or a string')
    return problems


def main() -> None:
    with HubServer() as server:
        print(f"local Hub at {server.url}  (token: {server.token})", flush=True)
        print("set HF_ENDPOINT, HF_TOKEN and HF_HUB_DISABLE_XET=1 before importing huggingface_hub", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
