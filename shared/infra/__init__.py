"""Local infrastructure without Docker: Apache Kafka 4.1.1 (KRaft, one JVM) and PostgreSQL.

`up(state_dir, fast=True)` starts what is not running (idempotent, reusing ports and data) and
returns the `Endpoints`; `down(state_dir)` stops both and keeps the data.
"""

from shared.infra.local import Endpoints, down, endpoints_from_env, status, up, write_env_file
from shared.infra.proc import InfraError

__all__ = [
    "Endpoints",
    "InfraError",
    "down",
    "endpoints_from_env",
    "status",
    "up",
    "write_env_file",
]
