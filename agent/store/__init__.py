"""Store-and-forward: the durable outbox and its salvage."""
