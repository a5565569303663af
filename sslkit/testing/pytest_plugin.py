"""pytest plugin for plugin authors (fixtures: see sslkit.testing)."""
