"""Escalation: breaches become escalations with warm-transfer packets for supervisors."""
