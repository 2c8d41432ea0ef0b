"""The four Switchboard services: intake, router, sla, escalation."""
