"""Development tools of adamw-ref (not installed): the import-linter contract types."""
