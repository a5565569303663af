"""Built-in heads plugins."""
