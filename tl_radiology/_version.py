"""The toolkit's version, in a module of its own so that any part can import it without the root package."""

__version__ = "0.1.0"
