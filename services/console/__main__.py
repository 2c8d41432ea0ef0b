"""`python -m services.console`: serve the console; `... user add|list`: manage its users.

    python -m services.console                                  # serve (CONSOLE_HOST, CONSOLE_PORT)
    python -m services.console user add sup-ada --role supervisor   # asks for the password
    python -m services.console user add sup-ada --role supervisor --password-stdin < secret
    python -m services.console user list
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import socket
import sys

import uvicorn

from services.console.settings import get_console_settings
from services.console.users import ROLES, UsersError, add_user, parse_users

READY_LINE = "Switchboard console ready on"


class _Server(uvicorn.Server):
    """Says when it listens (the demo and the tests wait for that line)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


def serve() -> int:
    settings = get_console_settings()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s console %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    from services.console.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=3, lifespan="on")
    server = _Server(config)

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait([serving, ready], return_when=asyncio.FIRST_COMPLETED)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"{READY_LINE} http://{settings.host}:{port}", flush=True)
        ready.cancel()
        await serving

    asyncio.run(run())
    return 0 if server.started else 1


def users_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.console user")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user, or set a user's role and password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    sub.add_parser("list", help="the users and their roles")
    args = parser.parse_args(argv)
    path = get_console_settings().users_path()
    try:
        if args.command == "list":
            users = parse_users(path.read_text("utf-8"), str(path)) if path.exists() else {}
            for user in users.values():
                print(f"{user.name}\t{user.role}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                print("error: the passwords differ", file=sys.stderr)
                return 1
        add_user(path, args.name, args.role, password)
    except (UsersError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} ({args.role}) written to {path}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["user"]:
        return users_command(argv[1:])
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
