"""Fuzz harnesses for vlprep's untrusted-input paths (see docs/security.md)."""
