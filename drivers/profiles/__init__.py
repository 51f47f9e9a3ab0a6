"""Device profiles as data files (`NAME.yaml`), read by `agent.profiles` with importlib.resources."""
