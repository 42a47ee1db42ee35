"""Test configuration shared by every layer."""
