"""Celery tasks. Thin: each calls a service function."""
