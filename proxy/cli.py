"""Command line: run, check, demo, --version.

``edgeproxy run -c FILE`` runs from a config file; ``edgeproxy run --listen
ADDR --upstream HOST:PORT [--upstream ...] [--admin ADDR]`` runs without
one, with the same defaults as the TOML. ``edgeproxy check -c FILE``
validates and summarises (exit 0, or 2 with one line naming the file, key,
value and what was expected). ``edgeproxy demo`` starts a built-in upstream
on every local server address of the config and the proxy in front of it.
Configuration errors never print a traceback; they exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from . import __version__, codec
from .config import ConfigError, load_config, quick_config


def version_text() -> str:
    try:
        import uvloop

        loopv = f"uvloop {uvloop.__version__}"
    except ImportError:  # pragma: no cover
        loopv = "uvloop missing"
    py = ".".join(map(str, sys.version_info[:3]))
    return f"edgeproxy {__version__} (codec: {codec.NAME}; {loopv}; python {py})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeproxy", description="HTTP/1.1 edge reverse proxy")
    p.add_argument("--version", action="version", version=version_text())
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    run = sub.add_parser("run", help="run the proxy")
    run.add_argument("-c", "--config", help="TOML config file")
    run.add_argument("--listen", action="append", default=[], metavar="ADDR", help="listen address (no-config mode)")
    run.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT", help="upstream server (no-config mode)")
    run.add_argument("--admin", metavar="ADDR", help="admin address (no-config mode)")
    run.add_argument("--loop", choices=["uvloop", "asyncio"], help="event loop (overrides server.loop)")

    chk = sub.add_parser("check", help="validate a config file and print a summary")
    chk.add_argument("-c", "--config", required=True, help="TOML config file")

    demo = sub.add_parser("demo", help="run a built-in demo upstream with the proxy in front of it")
    demo.add_argument("-c", "--config", help="TOML config file (default: ./config.example.toml if present)")
    demo.add_argument("--loop", choices=["uvloop", "asyncio"], help="event loop")
    return p


def _fail(msg: str) -> int:
    print(f"edgeproxy: {msg}", file=sys.stderr)
    return 2


def _load_for_run(args):
    if args.config:
        if args.listen or args.upstream or args.admin:
            raise ConfigError("<command line>", "--config", None, "either -c FILE or --listen/--upstream, not both")
        return load_config(args.config)
    if not args.listen or not args.upstream:
        raise ConfigError("<command line>", "--listen/--upstream", None, "-c FILE, or at least one --listen and one --upstream")
    return quick_config(args.listen, args.upstream, args.admin, args.loop)


def cmd_run(args) -> int:
    from .server import run

    try:
        cfg = _load_for_run(args)
    except ConfigError as exc:
        return _fail(str(exc))
    for w in cfg.warnings():
        print(f"edgeproxy: warning: {w}", file=sys.stderr)
    try:
        return run(cfg, args.loop)
    except ConfigError as exc:  # a certificate the listener cannot use
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot start: {exc}")


def cmd_check(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    print(cfg.summary())
    from .sysinfo import system_warnings

    for w in cfg.warnings() + system_warnings(cfg):
        print(f"warning: {w}")
    print("config OK")
    return 0


def cmd_demo(args) -> int:
    from .server import new_event_loop

    path = args.config
    if path is None and os.path.exists("config.example.toml"):
        path = "config.example.toml"
    try:
        cfg = load_config(path) if path else quick_config(["127.0.0.1:8080"], ["127.0.0.1:8081"], None)
    except ConfigError as exc:
        return _fail(str(exc))
    kind = args.loop or cfg.server.loop
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        try:
            return runner.run(_demo(cfg))
        except ConfigError as exc:
            return _fail(str(exc))
        except OSError as exc:
            return _fail(f"cannot start: {exc}")


_LOCAL = ("127.0.0.1", "localhost", "::1")


async def _demo(cfg) -> int:
    from .demo import start_demo_upstream
    from .server import ProxyServer

    servers = []
    for up in cfg.upstreams.values():
        for s in up.servers:
            if s.address.host in _LOCAL:
                servers.append(await start_demo_upstream(s.address.host, s.address.port))
    loop = asyncio.get_running_loop()
    proxy = ProxyServer(cfg, loop)
    await proxy.start()
    lst = proxy.listeners[0].address
    print("edgeproxy demo is running. Try:", file=sys.stderr)
    print(f"  curl -i http://{lst}/", file=sys.stderr)
    print(f"  curl -s http://{lst}/bytes/1048576 | wc -c", file=sys.stderr)
    if proxy.admin is not None:
        print(f"  curl -s http://{proxy.admin.address}/metrics | grep http_server_requests_total", file=sys.stderr)
        print(f"  curl -s http://{proxy.admin.address}/readyz", file=sys.stderr)
    print("Access log lines appear below; Ctrl-C stops.", file=sys.stderr)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.shutdown()
    for s in servers:
        s.close()
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "run":
        return cmd_run(args)
    if args.cmd == "check":
        return cmd_check(args)
    if args.cmd == "demo":
        return cmd_demo(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
