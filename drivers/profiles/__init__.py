"""Device profiles as data files (`NAME.yaml`), read by `agent.config.profiles` with importlib.resources."""
