"""The new AI Tutor backend, written Convex-style: a small function runtime (``runtime/``) —
queries, mutations and actions with argument validators, one transaction per mutation, a TTL
query cache invalidated by writes, reactive subscriptions, a persisted scheduler with cron — and the
application as functions on it (``functions/``), exposed over HTTP by ``routes``."""
