"""batigate agent core: config, models, supervisor, outbox, uplink, CLI."""

__version__ = "0.1.0"
