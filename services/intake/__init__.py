"""Intake: turns raw email, chat and voice events into cases and contacts."""
