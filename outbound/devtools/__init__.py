"""Tools for development machines only; nothing here runs in production."""
