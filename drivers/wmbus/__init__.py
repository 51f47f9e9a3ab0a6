"""Wireless M-Bus (EN 13757-4 / OMS): radio receivers, telegram decoding, radio meters."""
