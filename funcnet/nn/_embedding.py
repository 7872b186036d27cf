"""Placeholder: filled in by the _embedding work."""

__all__: list[str] = []
