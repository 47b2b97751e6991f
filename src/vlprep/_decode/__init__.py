"""Decoders: encoded bytes in, pixels out. They never see a URL or a path."""
