"""Pieces of the AI Tutor contract that both backends must implement identically.

The contract fixes these bit for bit (token format, id derivation, timestamps, error bodies, input
rules), so they live in one place; each backend still owns its storage, handlers and runtime.
"""
