"""Built-in param_groups plugins."""
