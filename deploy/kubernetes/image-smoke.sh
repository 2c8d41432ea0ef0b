#!/usr/bin/env bash
# Smoke test of a built image without a container runtime that can start it: the image's root
# file system is mounted (podman image mount) and its own Python runs in it as UID 10001, against
# the local Kafka and PostgreSQL of $SWITCHBOARD_STATE_DIR (started here, stopped at the end):
# `switchboard db migrate` and `topics create` from the image, then the intake service from the
# image takes a chat and opens a case. Used where `podman run` cannot set up a container (no
# cgroup or rlimit control in the sandbox); where it can, `podman run --network host` is the same.
#   deploy/kubernetes/image-smoke.sh [IMAGE]      (default localhost/switchboard:dev; as root)
set -euo pipefail
IMAGE=${1:-localhost/switchboard:dev}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export SWITCHBOARD_STATE_DIR=${SWITCHBOARD_STATE_DIR:-$ROOT/.switchboard/image-smoke}
SB=$ROOT/.venv/bin/switchboard
mnt=$(podman image mount "$IMAGE")
cleanup() {
  [[ -n ${svc:-} ]] && kill "$svc" 2>/dev/null && wait "$svc" 2>/dev/null || true
  umount "$mnt/proc" "$mnt/dev" 2>/dev/null || true
  podman image unmount "$IMAGE" >/dev/null || true
  "$SB" infra down --purge >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$SB" infra up --fast >/dev/null
set -a; . "$SWITCHBOARD_STATE_DIR/infra.env"; set +a
export SWITCHBOARD_INFRA=external SERVICE_INSTANCE_ID=smoke-intake INTAKE_PARSE_WORKERS=0
mount --bind /proc "$mnt/proc"; mount --bind /dev "$mnt/dev"
in_image() { chroot --userspec=10001:10001 "$mnt" env HOME=/nonexistent PATH=/opt/switchboard/bin:/usr/bin:/bin "$@"; }
in_image sh -c 'test "$(id -u)" = 10001 && ! touch /opt/switchboard/x 2>/dev/null' \
  && echo "runs as 10001, cannot write its own code"
in_image switchboard db migrate | tail -1
in_image switchboard topics create | tail -1
log=$SWITCHBOARD_STATE_DIR/logs/intake-image.log
mkdir -p "$(dirname "$log")"
in_image python -m services.intake >"$log" 2>&1 &
svc=$!
session="smoke-$RANDOM"
cd "$ROOT"
"$ROOT/.venv/bin/python" - "$session" <<'PY'
import asyncio, json, os, sys, time
import asyncpg
sys.path.insert(0, os.getcwd())
from tests.support import contacts
from tests.support.kafka import cloudevent_headers, publish

async def main(session: str) -> None:
    await publish(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "helpdesk.inbound.chat",
                  contacts.chat_message(session, "My order never came"),
                  cloudevent_headers("chat.message"), key=session)
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        case = await conn.fetchval("SELECT case_id FROM intake_thread WHERE thread_key = $1",
                                   f"chat:{session}")
        if case:
            print(f"the image's intake opened case {case} for chat {session}")
            return
        await asyncio.sleep(0.5)
    sys.exit("no case opened within 120 s")

asyncio.run(main(sys.argv[1]))
PY
