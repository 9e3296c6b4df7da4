"""What may leave the machine: identifier scrubbing and the credentialed-data guard.

PhysioNet's guidance for MIMIC-CXR (and the CheXpert Plus research use agreement) forbids sending the
reports to a third-party service that retains them. Azure OpenAI and self-hosted OpenAI-compatible servers
are the sanctioned routes, so the guard refuses only OpenAI's public endpoint, and it refuses before the
first request is made.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from radtune.dataprep.sources import SOURCES

PUBLIC_OPENAI_HOSTS = ("api.openai.com",)
CREDENTIALED_SOURCES = frozenset(name for name, info in SOURCES.items() if info.credentialed)
PLACEHOLDER = "___"  # MIMIC-CXR's own mark for removed text, kept as is

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
# Order matters: the longer, more specific patterns run first.
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("doctor", re.compile(r"\b(Dr|Doctor)\.?\s+(?!___)[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?")),
    ("date", re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b", re.IGNORECASE)),
    ("date", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}}\b", re.IGNORECASE)),
    ("date", re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")),
    ("date", re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b")),
    ("phone", re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b")),
    (
        "record",
        re.compile(
            r"\b(?:MRN|MR|Acc(?:ession)?|Record|Medical record|ID)\b\s*(?:#|No\.?|number|:)?\s*[:#]?\s*"
            r"(?=[A-Z-]*\d)[A-Z0-9-]{4,}\b",
            re.IGNORECASE,
        ),
    ),
    ("record", re.compile(r"\b\d{6,}\b")),
    ("time", re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AaPp]\.?[Mm]\b)?")),
]


def scrub(text: str) -> str:
    """Replace residual identifiers in `text` with `___`.

    Catches dates (`03/14/2021`, `2021-03-14`, `March 14, 2021`), times, phone numbers, record or accession
    numbers (labelled ones and any run of six or more digits) and "Dr. Name". Measurements such as `2.5 cm`
    or `T11` stay; MIMIC-CXR's `___` placeholders stay as they are.
    """
    for kind, pattern in _PATTERNS:
        if kind == "doctor":
            text = pattern.sub(lambda m: f"{m.group(1)}. {PLACEHOLDER}", text)
        else:
            text = pattern.sub(PLACEHOLDER, text)
    return text


def is_public_openai_endpoint(provider: str, base_url: str | None) -> bool:
    """True when requests would go to OpenAI's own public API (which retains data), whatever the provider says."""
    if provider == "azure":
        return False
    if not base_url:
        return provider == "openai"
    host = (urlparse(base_url).hostname or "").lower()
    return any(host == public or host.endswith("." + public) for public in PUBLIC_OPENAI_HOSTS)


def credentialed_sources(sources: set[str], card_text: str | None = None) -> set[str]:
    """The credentialed sources among a dataset's `source` values and what its card says.

    A card counts as credentialed when its metadata says `credentialed: true` or it carries the data use
    notice of a credentialed source (what `radtune data build` writes for MIMIC-CXR and CheXpert Plus).
    """
    found = {source for source in sources if source in CREDENTIALED_SOURCES}
    if card_text:
        if re.search(r"^credentialed:\s*true\s*$", card_text, re.IGNORECASE | re.MULTILINE):
            found.add("card: credentialed: true")
        for name in CREDENTIALED_SOURCES:
            notice = SOURCES[name].data_use_notice
            if notice and notice[:80] in card_text:
                found.add(name)
    return found


def read_card(dataset_path: str | Path) -> str | None:
    """The README.md card of a local dataset folder, or `None`."""
    card = Path(dataset_path) / "README.md"
    return card.read_text(encoding="utf-8") if card.is_file() else None


class CredentialedUploadRefusedError(Exception):
    """A credentialed dataset would be sent to OpenAI's public endpoint without `--allow-credentialed-upload`."""


def check_upload_allowed(found: set[str], provider: str, base_url: str | None, allow_credentialed: bool) -> None:
    """Refuse to send credentialed reports to OpenAI's public endpoint (called before any request).

    Raises:
        `CredentialedUploadRefusedError`: `found` is not empty, the endpoint is public and `allow_credentialed`
            is False.
    """
    if not found or allow_credentialed or not is_public_openai_endpoint(provider, base_url):
        return
    raise CredentialedUploadRefusedError(
        f"the dataset is credentialed ({', '.join(sorted(found))}); its data use agreement forbids sending reports "
        "to a third-party API that retains them, and OpenAI's public endpoint does. Use --provider azure, a "
        "self-hosted OpenAI-compatible server (--provider compatible --base-url ...), or, if your agreement allows "
        "it, pass --allow-credentialed-upload. Nothing was sent."
    )


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` (an API key) replaced, for error messages that are stored."""
    return text.replace(secret, "[REDACTED]") if secret else text
