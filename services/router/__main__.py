from services.router.app import wire
from shared.bootstrap import run_service

run_service("router", wire)
