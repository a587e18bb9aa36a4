"""API keys: admin keys and tenant keys, shown once, stored as a hash."""
