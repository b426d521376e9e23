"""`certfed web serve --config node.toml [--listen HOST:PORT]`: the office's web desk.

Reads the node's node.toml (node_id, desk_listen, ca_certificate, the [web] table) and its policy
file (the evidence limits), opens one channel to the node's DeskService, and serves the desk
under uvicorn: plain HTTP ("tls = off": on loopback or behind the office's reverse proxy) or
HTTPS with the node's own certificate and key ("tls = node"). Prints one line when it is ready:
`web desk of <node_id> listening on http(s)://HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import uvicorn

from adapters.web_desk.app import create_app
from adapters.web_desk.security import load_or_create_secret
from adapters.web_desk.settings import WebDeskSettings
from federation.desk_client import DeskChannel
from federation.metrics import parse_host_port
from federation_node.config import NodeConfig, load_node_config
from federation_node.keystore import KeyPaths
from federation_node.rules.policy import load_policy

log = logging.getLogger("certfed.web_desk")


class _Server(uvicorn.Server):
    """uvicorn's server, saying on stdout when it is ready (tests and launchers wait for it)."""

    ready_line = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self.ready_line, flush=True)


def add_web_commands(commands: Any) -> None:
    web = commands.add_parser("web", help="the office's web desk (docs/web-desk.md)")
    actions = web.add_subparsers(dest="web_action", required=True)
    serve = actions.add_parser("serve", help="serve the web desk of the node node.toml describes")
    serve.add_argument("--config", required=True, help="the node's node.toml")
    serve.add_argument("--listen", help="HOST:PORT (default: [web] listen; port 0 picks one)")
    serve.set_defaults(handler=serve_command)


def settings_for(config: NodeConfig) -> WebDeskSettings:
    policy = load_policy(config.policy_file)
    return WebDeskSettings(
        node_id=config.node_id,
        secret=load_or_create_secret(config.web.secret_file),
        evidence_max_bytes=policy.evidence_max_bytes,
        evidence_media_types=frozenset(policy.evidence_media_types),
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """The desk's listening socket, bound (port 0 picks one).

    Its protocol is named: asyncio switches Nagle's algorithm off (TCP_NODELAY) only on
    connections accepted from a socket that says it is TCP. While it was on, the end of every answer
    after the first on a kept-alive connection waited for the browser's delayed acknowledgement
    of its start: 40 ms a page on Linux, up to 200 ms on Windows."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    return listener


def serve_command(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    listen = args.listen or config.web.listen
    host, port = parse_host_port(listen, "--listen")
    settings = settings_for(config)
    channel = DeskChannel(
        config.web.desk_endpoint or config.desk_listen,
        config.node_id,
        config.ca_certificate.read_bytes(),
        config.limits,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    access = logging.getLogger("certfed.web_desk.access")
    app = create_app(settings, channel, access.info)
    tls: dict[str, Any] = {}
    if config.web.tls == "node":
        paths = KeyPaths(config.data_dir)
        tls = {"ssl_certfile": str(paths.tls_certificate), "ssl_keyfile": str(paths.tls_key)}
    listener = listening_socket(host, port)
    bound_port = listener.getsockname()[1]
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
            **tls,
        )
    )
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    server.ready_line = (
        f"web desk of {config.node_id} listening on {scheme}://{shown_host}:{bound_port}"
    )
    try:
        asyncio.run(server.serve(sockets=[listener]))
    finally:
        channel.close()
    return 0 if server.started else 1
