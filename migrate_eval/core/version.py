"""The version of migrate-eval (one place; ``migrate_eval.__version__`` re-exports it)."""

__version__ = "0.1.0"
