"""Recorded player event sequences (JSON Lines) bundled as sample data.

Each file starts with a header line ``{"trace", "source", "description"}``;
every later line is one event: ``t`` (seconds since sessionStart),
``eventType``, ``playhead`` and optional ``params``, ``customMetadata`` and
``qoeData``. The three bundled files are Adobe's published Media Collection
API timelines, with placeholder account values replaced by fake ones.
"""
