"""Dry contacts on the gateway's GPIO lines (libgpiod v2 through the `gpiod` wheel)."""
