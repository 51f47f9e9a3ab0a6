"""The driver and rule SDK: the only part of `agent` that drivers and rules import."""
