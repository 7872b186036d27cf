"""Placeholder: filled in by the _recurrent work."""

__all__: list[str] = []
