"""Identifier keys of the collection API and the redaction applied before showing events.

Events hold visitor and customer IDs. Operations output (the ``durabletrack``
command, exports) passes every event and collector response through
:func:`redact_event` or :func:`redact_text` first, unless the operator asks for
the values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

# sessionStart params that identify a person, a device or an install
# (the visitor section of the Media Collection API's sessionStart params).
IDENTIFIER_KEYS = frozenset(
    {
        "visitor.marketingCloudUserId",
        "visitor.customerIDs",
        "analytics.visitorId",
        "analytics.aid",
        "appInstallationId",
    }
)

# Custom metadata keys are chosen by the app, so identifier-like names are
# matched by their last dotted part: "userId", "account_id", "deviceIDs", "email", ...
_IDENTIFIER_NAME = re.compile(
    r"(user|visitor|customer|device|install|installation|account|subscriber|member|profile|household"
    r"|advertising|person|login)_?ids?$"
    r"|^(ecid|mid|aid|idfa|idfv|gaid|email|e_mail|ip|ip_?address|msisdn|phone|phone_?number)$",
    re.IGNORECASE,
)


def is_identifier_key(key: str) -> bool:
    """Return True if the value under ``key`` identifies a person, device or install."""
    if key in IDENTIFIER_KEYS:
        return True

    last_part = key.rsplit(".", 1)[-1]

    return bool(_IDENTIFIER_NAME.search(last_part))


def redact_event(value: Any) -> Any:
    """Return a copy of a decoded event in which every identifier value is ``<redacted>``.

    Keys are matched at any depth, so params, custom metadata and nested
    objects are all covered. The whole value of a matching key is replaced,
    including objects such as ``visitor.customerIDs``.
    """
    if isinstance(value, dict):
        return {key: REDACTED if is_identifier_key(str(key)) else redact_event(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_event(item) for item in value]

    return value


def identifier_values(value: Any) -> set[str]:
    """Return every string found under an identifier key of a decoded event, at any depth."""
    found: set[str] = set()
    _collect_identifier_values(value, found, under_identifier=False)

    return found


def redact_text(text: str, known_values: Iterable[str] = ()) -> str:
    """Redact a text that may be JSON, such as an event body or a collector response.

    JSON text is decoded, passed through :func:`redact_event` and encoded
    again. Then every string of ``known_values`` (for example the identifier
    values of the event a response answers) is replaced wherever it occurs,
    because a collector may quote a rejected value in plain text.
    """
    redacted = text
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, (dict, list)):
        redacted = json.dumps(redact_event(decoded), ensure_ascii=False)

    # Replace long values first, so a value that contains another is replaced whole.
    for value in sorted(set(known_values), key=len, reverse=True):
        if value:
            redacted = redacted.replace(value, REDACTED)

    return redacted


def _collect_identifier_values(value: Any, found: set[str], under_identifier: bool) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _collect_identifier_values(item, found, under_identifier or is_identifier_key(str(key)))
    elif isinstance(value, list):
        for item in value:
            _collect_identifier_values(item, found, under_identifier)
    elif under_identifier and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        # Short numbers such as authState 1 would blank unrelated text.
        if len(text) >= 4:
            found.add(text)
