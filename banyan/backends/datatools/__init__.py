"""Data tools: move and check records between the legacy and new stores.

Owns backfill, verify, backup and restore (banyan data ...).
"""
