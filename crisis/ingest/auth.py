"""Center tokens: each dispatch center authenticates with its own bearer token, stored only as a hash.

Tokens are 256-bit random strings (``crisis ingest-token``), so a plain SHA-256 is enough at rest:
nobody can guess one by trying (a slow, salted hash protects low-entropy passwords, which these
are not, and would cost every request). A center may have several tokens (rotation).

Configuration, both may be used together:

- ``CRISIS_INGEST_TOKENS_FILE``: a TOML file ``[centers]`` ``"<center_id>" = "sha256:<hex>"`` (or a
  list of such hashes);
- ``CRISIS_INGEST_TOKENS``: ``<center_id>=sha256:<hex>,<center_id>=sha256:<hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HASH_PREFIX = "sha256:"
TOKEN_PREFIX = "cri_"
_CENTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class TokenConfigError(ValueError):
    """Token configuration that cannot be used; the message names the source and the entry."""


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for ``token``: ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenStore:
    """Token hashes by center; ``center_for`` answers which center a presented token belongs to."""

    hashes: Mapping[str, tuple[str, ...]]

    @property
    def centers(self) -> tuple[str, ...]:
        """The centers that have a token, sorted (the bounded metric labels)."""
        return tuple(sorted(self.hashes))

    def center_for(self, token: str) -> str | None:
        """The center whose token this is, or ``None``. Every stored hash is compared, in constant time
        each, so the answer's timing does not depend on which entry (if any) matched."""
        presented = hash_token(token).encode()
        found = None
        for center_id, hashes in self.hashes.items():
            for stored in hashes:
                if hmac.compare_digest(presented, stored.encode()):
                    found = center_id
        return found


def _add(entries: dict[str, list[str]], center_id: str, value: object, source: str) -> None:
    if not _CENTER_ID.match(center_id):
        raise TokenConfigError(f"{source}: center id {center_id!r} must be 1-64 letters, digits, '.', '_' or '-' "
                               "(no ':', which separates it from the incident number in call ids)")
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, str) or not _HASH.match(item):
            raise TokenConfigError(f"{source}: center {center_id!r}: expected 'sha256:<64 hex digits>' "
                                   "(the hash `crisis ingest-token` prints, never the token itself)")
        entries.setdefault(center_id, []).append(item)


def load_tokens(file: str | None, env_value: str | None) -> TokenStore:
    """Token hashes from the TOML file and/or the environment variable's value."""
    entries: dict[str, list[str]] = {}
    if file:
        path = Path(file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise TokenConfigError(f"token file not found: {path}") from exc
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TokenConfigError(f"token file {path} cannot be read as TOML: {exc}") from exc
        centers = data.get("centers")
        if not isinstance(centers, dict) or set(data) - {"centers"}:
            raise TokenConfigError(f"token file {path}: expected only a [centers] table of center_id = hash")
        for center_id, value in centers.items():
            _add(entries, center_id, value, f"token file {path}")
    for item in (env_value or "").split(","):
        if not item.strip():
            continue
        center_id, sep, value = item.strip().partition("=")
        if not sep:
            raise TokenConfigError(f"CRISIS_INGEST_TOKENS: {item.strip()!r} is not <center_id>=sha256:<hex>")
        _add(entries, center_id.strip(), value.strip(), "CRISIS_INGEST_TOKENS")
    return TokenStore({center_id: tuple(hashes) for center_id, hashes in entries.items()})
