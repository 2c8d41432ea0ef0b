"""Escalation: turns breaches into escalations with warm-transfer packets and notifies supervisors."""
