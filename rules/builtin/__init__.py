"""The built-in rule types, registered in pyproject.toml under `batigate.rules`."""
