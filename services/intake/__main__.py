from services.intake.app import wire
from shared.bootstrap import run_service

run_service("intake", wire)
