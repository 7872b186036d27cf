"""funcnet's version, in a module of its own so that subpackages can read it while the
top-level package is still importing."""

__version__ = "0.1.0.dev0"
