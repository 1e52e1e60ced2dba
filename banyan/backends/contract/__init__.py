"""The API contract suite: one set of tests that proves docs/api.md against any base URL.

``targets`` starts what is tested (each backend in-process, each behind the proxy, each on
PostgreSQL, or an external URL), ``client`` has the small helpers the tests share, and the
``test_*`` modules hold the contract itself. See README.md for how to run it.
"""
