"""The operations, one module per domain; `agent/commands/catalog.py` lists them."""
