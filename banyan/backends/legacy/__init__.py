"""The legacy AI Tutor backend: a classic aiohttp service with SQLAlchemy 2 async models.

Layered the old way: ``db`` (engine and ORM models), ``migrations`` (additive schema versions),
``auth`` (tokens and the current user), one handler module per resource (``folders``,
``sessions``), ``live`` (``/ws/live``), ``gc`` (the expiry collector), ``app`` (the factory) and
``cli`` (``banyan legacy``).
"""
