"""Simulated field devices for `batigate sim`, the demo and the integration tests."""
