"""Committed JSON Schemas (package data)."""
