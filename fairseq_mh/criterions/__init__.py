"""Criteria that old checkpoints name in their saved arguments."""
