"""Scenario files for the simulated building (`batigate sim --scenario NAME`)."""
