from services.escalation.app import wire
from shared.bootstrap import run_service

run_service("escalation", wire)
