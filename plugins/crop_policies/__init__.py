"""Built-in crop_policies plugins."""
