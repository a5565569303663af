"""sslkit's built-in plugins, registered through the ``sslkit`` entry-point group exactly as a
third-party distribution registers its own (see ``pyproject.toml``)."""
