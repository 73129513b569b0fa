"""Rules of this domain (package data)."""
