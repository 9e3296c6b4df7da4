"""The errors radtune shows a person as one or two lines instead of a traceback.

`HubError` and `MissingPathError` live here, not in `hub.py`, so that the command-line entry points can catch
them without importing huggingface_hub. `USER_ERRORS` are the exceptions whose message is the whole story (a bad
value, a missing file, a Hub refusal): the `radtune` commands and the training modules (`config.run_main`) print
them as `error: <message>` plus `TRACEBACK_HINT`, and re-raise them when `RADTUNE_TRACEBACK=1`.
"""

from __future__ import annotations

import os

TRACEBACK_ENV = "RADTUNE_TRACEBACK"
TRACEBACK_HINT = f"(set {TRACEBACK_ENV}=1 to see the traceback)"


class HubError(RuntimeError):
    """A Hub operation failed; the message names the repo, revision or file and says what to check."""


class MissingPathError(HubError, FileNotFoundError):
    """A path exists neither here nor (for a name shaped like a repo id) on the Hub.

    Both a `HubError` and a `FileNotFoundError`, so callers that catch either keep working.
    """

    def __str__(self) -> str:  # FileNotFoundError would format "[Errno …]" when given two arguments
        return str(self.args[0]) if self.args else ""


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, HubError)


def traceback_wanted() -> bool:
    """True when `RADTUNE_TRACEBACK` asks for full tracebacks (`1`, `true`, `yes`)."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() in {"1", "true", "yes"}
