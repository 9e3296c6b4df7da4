"""What may leave the machine: the credentialed-data guard and credentials in URLs (`radtune.dataprep.deidentify`
scrubs identifiers from the text itself).

PhysioNet's guidance for MIMIC-CXR (and the CheXpert Plus research use agreement) forbids sending the
reports to a third-party service that retains them. Azure OpenAI and self-hosted OpenAI-compatible servers
are the sanctioned routes, so the guard is an allow-list: the text of credentialed data goes only to a host on
loopback or a private network (127.0.0.0/8, 10/8, 172.16/12, 192.168/16, ::1, fc00::/7, fe80::/10, `localhost`)
or to an Azure OpenAI resource (`*.openai.azure.com`), whatever `--provider` says, unless
`--allow-credentialed-upload`. The host is judged as the HTTP client will read it (case, trailing dot, IPv6 and
IPv4-mapped literals, the integer and octal/hex forms of IPv4), and the refusal comes before the first request.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from radtune.dataprep.sources import SOURCES

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"  # where provider "openai" sends requests without a base URL
AZURE_OPENAI_SUFFIX = ".openai.azure.com"
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
))  # fmt: skip
CREDENTIALED_SOURCES = frozenset(name for name, info in SOURCES.items() if info.credentialed)


def endpoint_url(provider: str, base_url: str | None) -> str | None:
    """The URL requests go to: `base_url`, else OpenAI's public API for provider `openai` (`None`: unknown)."""
    return base_url or (DEFAULT_OPENAI_URL if provider == "openai" else None)


def endpoint_host(url: str | None) -> str | None:
    """The host `url` connects to as the HTTP client parses it, normalised: lower case, no trailing dot, IPv6
    without brackets or zone. `None` when it cannot be told (no http(s) scheme, no host, odd characters)."""
    if not url or "\\" in url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        try:  # the parser of the HTTP client the openai package sends with
            from httpx2 import URL
        except ImportError:
            from httpx import URL
        parsed = URL(url)
    except Exception:  # noqa: BLE001 - whatever the client cannot parse, it cannot send to either
        return None
    if parsed.scheme not in ("http", "https"):
        return None
    host = parsed.host.lower().rstrip(".")
    if ":" in host:
        host = host.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0)
    return host if host and "%" not in host else None


def _ipv4_any_form(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address written as inet_aton reads it (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`), or `None`."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", part):
            values.append(int(part, 16))
        elif re.fullmatch(r"0[0-7]*", part):
            values.append(int(part, 8))
        elif re.fullmatch(r"[1-9][0-9]*", part):
            values.append(int(part))
        else:
            return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host literal stands for (IPv4-mapped IPv6 as its IPv4), or `None` for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = _ipv4_any_form(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address


def is_permitted_endpoint(provider: str, base_url: str | None) -> bool:
    """True when credentialed text may go to this endpoint: a host on loopback or a private network, or an Azure
    OpenAI resource (`*.openai.azure.com`). Judged on the host alone, whatever `provider` says."""
    host = endpoint_host(endpoint_url(provider, base_url))
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if host.endswith(AZURE_OPENAI_SUFFIX) and len(host) > len(AZURE_OPENAI_SUFFIX):
        return True
    address = host_address(host)
    return address is not None and any(address in network for network in _PRIVATE_NETWORKS
                                       if network.version == address.version)  # fmt: skip


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
    """Credentialed text would go to an endpoint outside the allow-list without `--allow-credentialed-upload`."""


def check_upload_allowed(found: set[str], provider: str, base_url: str | None, allow_credentialed: bool) -> None:
    """Refuse to send credentialed reports anywhere but loopback, a private network or Azure OpenAI (called before
    any request).

    Raises:
        `CredentialedUploadRefusedError`: `found` is not empty, the endpoint is not permitted
            (`is_permitted_endpoint`) and `allow_credentialed` is False.
    """
    if not found or allow_credentialed or is_permitted_endpoint(provider, base_url):
        return
    url = redact_url_credentials(endpoint_url(provider, base_url) or "(no URL)")
    raise CredentialedUploadRefusedError(
        f"the dataset is credentialed ({', '.join(sorted(found))}): its reports may go only to a server on this "
        f"machine or a private network, or to Azure OpenAI (*.openai.azure.com), not to {url}. Nothing was sent.\n"
        "Use --provider azure --base-url https://<resource>.openai.azure.com, a self-hosted server by its private "
        "address (--base-url http://10.0.0.5:8000/v1), or --allow-credentialed-upload if your agreement allows it."
    )


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def redact_url_credentials(text: str) -> str:
    """`text` with the user and password inside every URL (`http://user:PASS@host`) replaced by `[REDACTED]`."""
    return _URL_USERINFO.sub(r"\1[REDACTED]@", text)


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` (an API key) and any credentials inside URLs replaced, for error
    messages that are stored."""
    text = text.replace(secret, "[REDACTED]") if secret else text
    return redact_url_credentials(text)


def credentialed_marks(dataset: str | Path, sources: set[str], card_text: str | None = None) -> set[str]:
    """Why a dataset counts as credentialed: its credentialed `source` values, its card (`credentialed_sources`)
    and, for a local folder, the metadata files that carry the mark (`radtune.common.credentialed.folder_marks`)."""
    from radtune.common.credentialed import folder_marks

    found = credentialed_sources(sources, card_text)
    if Path(str(dataset)).is_dir():
        found |= {f"{name}: credentialed" for name in folder_marks(dataset)}
    return found
