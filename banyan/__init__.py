"""Cross-cutting pieces shared by every Banyan server: serving, logging and test helpers."""

__version__ = "0.1.0"
