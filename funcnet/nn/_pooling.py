"""Placeholder: filled in by the _pooling work."""

__all__: list[str] = []
