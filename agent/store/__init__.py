"""Store-and-forward: the durable outbox (outbox.py is its queue core; each module beside it
has one of its jobs), its salvage of a damaged file, and its conduct on a full or failing disk."""
