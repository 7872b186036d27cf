"""Placeholder: filled in by the _normalization work."""

__all__: list[str] = []
