"""`trainmon serve`: the attach view of a run in a browser, through textual-serve.

Each browser tab runs `trainmon attach RUN` as this user (so it reaches the run only through the
owner-only control socket) and is one more viewer: closing the tab leaves the run going. The page
and its websocket need a secret token (printed in the URL, like Jupyter's) and a same-origin
request: any local user can reach a loopback port, and any web page in your browser can try to.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import shlex
import socket
import sys
from typing import Any, Optional

import click

from .common import fail, resolve_or_fail


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback one (127.0.0.0/8, ::1).

    Exits 2 with one line when `host` does not resolve."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        fail(f"cannot serve on host {host!r}: {exc.strerror}")
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_port_free(host: str, port: int) -> None:
    """Exit 2 with one line when `host:port` cannot be listened on (in use, not this machine's address)."""
    try:
        probe = socket.create_server((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is in use (another trainmon serve? try --port {port + 1})")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    probe.close()


def attach_command(run_id: str, read_only: bool) -> str:
    """The shell command textual-serve runs for each tab: this Python's `trainmon attach`."""
    # not `-m trainmon.cli.main`: run as __main__, that module would be imported twice (a cycle)
    argv = [sys.executable, "-c", "from trainmon.cli.main import main; main()", "attach", run_id]
    if read_only:
        argv.append("--read-only")
    return shlex.join(argv)


def make_server(command: str, host: str, port: int, token: str, title: str) -> Any:
    """A textual-serve `Server` whose page and websocket want `token` and a same-origin request.

    The page takes the token from `?token=` and leaves it in an HttpOnly, SameSite=Strict cookie for
    the websocket; the page's URLs are built from the address the browser used (an SSH tunnel's
    `localhost:8000`), not from the bind address."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    cookie = f"trainmon_serve_{port}"

    class TokenServer(Server):
        async def on_startup(self, app: web.Application) -> None:
            """No banner: ours names the URL with its token; textual-serve's would repeat it without."""

        def initialize_logging(self) -> None:
            super().initialize_logging()
            import logging

            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # its lines carry ?token=…

        def _token_ok(self, given: Optional[str]) -> bool:
            return given is not None and hmac.compare_digest(given.encode(), token.encode())

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            from_query = request.query.get("token")
            if not (self._token_ok(from_query) or self._token_ok(request.cookies.get(cookie))):
                raise web.HTTPForbidden(text="trainmon serve: open the URL with ?token=… that `trainmon serve` printed\n")
            base = f"{request.host}"
            context = {
                "font_size": 16,
                "app_websocket_url": f"{'wss' if request.secure else 'ws'}://{base}/ws",
                "config": {"static": {"url": f"{request.scheme}://{base}/static/"}},
                "application": {"name": self.title},
            }
            response = aiohttp_jinja2.render_template("app_index.html", request, context)
            response.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/")
            response.headers["Cache-Control"] = "no-store"
            response.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of other sites' logs
            return response

        async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            # a page on another site can open a websocket to localhost: its Origin gives it away
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                raise web.HTTPForbidden(text="cross-origin request refused\n")
            if not self._token_ok(request.cookies.get(cookie)):
                raise web.HTTPForbidden(text="no valid token\n")
            return await super().handle_websocket(request)

    return TokenServer(command, host=host, port=port, title=title)


@click.command()
@click.argument("run", required=False)
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback is read-only unless --allow-control.")
@click.option("--allow-control", is_flag=True, help="Accept keys that steer the run even on a non-loopback address.")
@click.option("--read-only", is_flag=True, help="Accept no commands, even on loopback (a view to share).")
@click.option("--lesson", is_flag=True, help="Serve `trainmon lesson RUN` instead: RUN is a lesson file (none: the "
                                             "default lesson); each tab gives the lesson on a run of its own.")
def serve(run: Optional[str], port: int, host: str, allow_control: bool, read_only: bool, lesson: bool) -> None:
    """Serve a run's monitor in the browser: each tab is one more viewer with the same panes and keys.

    RUN is an id, a unique prefix of one, its last part, or a path; without it, your newest live run. Listens on
    loopback only by default: from your laptop, `ssh -L 8000:localhost:8000 gpu-box` and open the
    URL printed here (it holds a secret token). Closing a tab, or this server, leaves the run going.
    """
    if read_only and allow_control:
        fail("choose --read-only or --allow-control, not both")
    if not 1 <= port <= 65535:
        fail(f"port must be between 1 and 65535, got {port}")
    loopback = is_loopback(host)
    check_port_free(host, port)
    if lesson:
        from .lesson import serve_lesson

        serve_lesson(run, host, port, read_only or (not loopback and not allow_control), make_server)
        return
    info = resolve_or_fail(run, live_only=run is None)
    if not loopback:
        control = "keys steer the run (--allow-control)" if allow_control and not read_only else \
            "read-only: no commands accepted (--allow-control to steer)"
        click.echo(f"trainmon: warning: serving run {info.id} on {host}, reachable from other machines; "
                   f"anyone with the URL sees it; {control}", err=True)
    read_only = read_only or (not loopback and not allow_control)

    token = secrets.token_urlsafe(24)
    server = make_server(attach_command(info.id, read_only), host, port, token, title=f"trainmon {info.id}")
    shown_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown_host = socket.gethostname()
    click.echo(f"serving run {info.id}{' (read-only)' if read_only else ''} on "
               f"http://{shown_host}:{port}/?token={token}", err=True)
    try:
        server.serve()
    except OSError as exc:  # lost the race for the port, or the address went away
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
