"""Event types of the Media Collection API and the shape of their fields.

This table is the one place that lists what each ``eventType`` requires. The
client checks events against it at ``track()`` time, and the emulator uses it
to reject schema violations with 400, so both agree on every rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Type tags for parameter values. ``bool`` is never accepted where a number is
# expected, although Python treats it as an ``int``.
STRING = "string"
NUMBER = "number"
INTEGER = "integer"
BOOLEAN = "boolean"
OBJECT = "object"
ARRAY = "array"

SESSION_START = "sessionStart"
PING = "ping"
SESSION_END = "sessionEnd"
SESSION_COMPLETE = "sessionComplete"

# Top-level keys the collection API schemas allow on every event object.
TOP_LEVEL_KEYS = frozenset({"playerTime", "eventType", "params", "qoeData", "customMetadata"})

# Custom metadata keys must match this pattern and carry string values.
CUSTOM_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_.]+$")

# The four QoE keys of the published schema; all are integers.
QOE_TYPES: Mapping[str, str] = {
    "media.qoe.bitrate": INTEGER,
    "media.qoe.droppedFrames": INTEGER,
    "media.qoe.framesPerSecond": INTEGER,
    "media.qoe.timeToStart": INTEGER,
    # Sent by Adobe's SDKs on error events; the live schema may differ.
    "media.qoe.errorID": STRING,
    "media.qoe.errorSource": STRING,
}


@dataclass(frozen=True)
class EventSpec:
    """Rules for one ``eventType``.

    Attributes:
        name: The ``eventType`` value.
        required: Parameter keys that must be present, with their type tags.
        optional: Known optional parameter keys with their type tags. Keys not
            listed here are allowed when their value is a JSON scalar.
        allows_params: False for event types that must not carry ``params``.
    """

    name: str
    required: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    allows_params: bool = True

    def param_type(self, key: str) -> str | None:
        """Return the type tag of a known parameter key, or None if unknown."""
        return self.required.get(key) or self.optional.get(key)


SESSION_START_REQUIRED: Mapping[str, str] = {
    "analytics.trackingServer": STRING,
    "analytics.reportSuite": STRING,
    "visitor.marketingCloudOrgId": STRING,
    "media.id": STRING,
    "media.length": NUMBER,
    "media.contentType": STRING,
    "media.playerName": STRING,
    "media.channel": STRING,
}

_STANDARD_CONTENT_METADATA = (
    "media.streamFormat media.show media.season media.episode media.assetId media.genre "
    "media.firstAirDate media.firstDigitalDate media.rating media.originator media.network "
    "media.showType media.adLoad media.pass.mvpd media.pass.auth media.dayPart media.feed "
    "media.artist media.album media.label media.author media.station media.publisher"
).split()

SESSION_START_OPTIONAL: Mapping[str, str] = {
    "media.name": STRING,
    "media.streamType": STRING,
    "media.resume": BOOLEAN,
    "media.downloaded": BOOLEAN,
    "media.sdkVersion": STRING,
    "media.libraryVersion": STRING,
    "analytics.enableSSL": BOOLEAN,
    "analytics.visitorId": STRING,
    "analytics.aid": STRING,
    "visitor.marketingCloudUserId": STRING,
    "visitor.aamLocationHint": INTEGER,
    "visitor.customerIDs": OBJECT,
    "appInstallationId": STRING,
    "analytics.optOutServerSideForwarding": BOOLEAN,
    "analytics.optOutShare": BOOLEAN,
    **{key: STRING for key in _STANDARD_CONTENT_METADATA},
}

_AD_STANDARD_METADATA = {
    key: STRING
    for key in (
        "media.ad.name",
        "media.ad.advertiser",
        "media.ad.campaignId",
        "media.ad.creativeId",
        "media.ad.siteId",
        "media.ad.creativeURL",
        "media.ad.placementId",
        "media.ad.podFriendlyName",
    )
}


def _specs(*specs: EventSpec) -> dict[str, EventSpec]:
    return {spec.name: spec for spec in specs}


EVENT_SPECS: Mapping[str, EventSpec] = _specs(
    EventSpec(SESSION_START, SESSION_START_REQUIRED, SESSION_START_OPTIONAL),
    EventSpec("play"),
    EventSpec(PING, allows_params=False),
    EventSpec("pauseStart"),
    EventSpec("bufferStart"),
    EventSpec("bitrateChange"),
    EventSpec("error", optional={"media.errorId": STRING, "media.errorSource": STRING}),
    EventSpec(
        "adBreakStart",
        {"media.ad.podIndex": INTEGER, "media.ad.podSecond": NUMBER},
        {"media.ad.podFriendlyName": STRING},
    ),
    EventSpec(
        "adStart",
        {
            "media.ad.id": STRING,
            "media.ad.length": NUMBER,
            "media.ad.podPosition": INTEGER,
            "media.ad.playerName": STRING,
        },
        _AD_STANDARD_METADATA,
    ),
    EventSpec("adComplete"),
    EventSpec("adSkip"),
    EventSpec("adBreakComplete"),
    EventSpec(
        "chapterStart",
        {
            "media.chapter.index": INTEGER,
            "media.chapter.offset": NUMBER,
            "media.chapter.length": NUMBER,
        },
        {"media.chapter.friendlyName": STRING},
    ),
    EventSpec("chapterComplete"),
    EventSpec("chapterSkip"),
    EventSpec("stateStart", {"media.state.name": STRING}),
    EventSpec("stateEnd", {"media.state.name": STRING}),
    EventSpec("statesUpdate", optional={"statesStart": ARRAY, "statesEnd": ARRAY}),
    EventSpec(SESSION_COMPLETE),
    EventSpec(SESSION_END),
)

EVENT_TYPES = frozenset(EVENT_SPECS)

# Event types that end a session on the client side: nothing may follow them.
SESSION_CLOSING_TYPES = frozenset({SESSION_END, SESSION_COMPLETE})
