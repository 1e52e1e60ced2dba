"""The collaborative whiteboard engine both backends serve: y-websocket protocol over pycrdt.

``protocol`` encodes and decodes y-websocket frames, ``awareness`` relays presence, ``room`` holds
one live document and its connections, ``rooms`` makes sure there is exactly one loaded room per
name, ``store`` is the persistence interface a backend implements, ``snapshot`` turns documents into
JSON and restores saved versions, and ``socket`` is the aiohttp WebSocket handler.
"""
