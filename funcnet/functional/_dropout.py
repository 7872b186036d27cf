"""Placeholder: filled in by the _dropout work."""

__all__: list[str] = []
