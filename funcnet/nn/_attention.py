"""Placeholder: filled in by the _attention work."""

__all__: list[str] = []
