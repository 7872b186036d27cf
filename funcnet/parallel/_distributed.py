"""(written in a later commit)"""

__all__: list[str] = []
