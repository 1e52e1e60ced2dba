"""The function runtime: registry, contexts, store, cache, scheduler and HTTP router."""
