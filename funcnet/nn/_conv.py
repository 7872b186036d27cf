"""Placeholder: filled in by the _conv work."""

__all__: list[str] = []
