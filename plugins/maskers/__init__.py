"""Built-in maskers plugins."""
