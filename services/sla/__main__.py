from services.sla.app import wire
from shared.bootstrap import run_service

run_service("sla", wire)
