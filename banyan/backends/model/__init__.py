"""The local OpenAI-compatible model server: deterministic answers, streaming, faults on demand.

``create_app`` (in :mod:`banyan.backends.model.server`) is the aiohttp factory; ``banyan model``
runs it.
"""
