"""Command line: run, check, gencert, reload, demo, --version.

``edgeproxy run -c FILE`` runs from a config file; ``edgeproxy run --listen
ADDR --upstream HOST:PORT [--upstream ...] [--admin ADDR] [--cert FILE --key
FILE ...]`` runs without one, with the same defaults as the TOML. With
``--cert``/``--key`` every ``--listen`` is a TLS listener serving those
certificates: the n-th ``--key`` belongs to the n-th ``--cert``, the first
pair is the default certificate. With ``[server] pid_file`` set, ``run``
writes its PID there once the config has loaded and removes the file on exit
(only while it still holds that PID).

``edgeproxy check -c FILE`` validates and summarises (exit 0, or 2 with one
line naming the file, key, value and what was expected). It also dry-runs
every TLS listener: each certificate, key and client CA is loaded as the
proxy would load it (a file that cannot be used is that one line naming
``listeners[i].certificates[j]``), the summary lists each certificate's names
and expiry, and findings follow: ``error:`` (expired or not yet valid, chain
out of order, no serverAuth usage, a client CA that is not a CA) or
``warning:`` (expires within 14 days, a route host that no certificate of the
listener covers). Any error exits 2, after everything is printed.

``edgeproxy gencert DIR [--name NAME ...] [--force]`` writes a development
CA, a server certificate (for the NAMEs, default localhost and 127.0.0.1) and
client certificates into DIR (``gencert.generate_dev_set``); existing files
are kept unless ``--force``.

``edgeproxy reload -c FILE [--pid PID]`` checks FILE as ``check`` does
(certificates included; nothing is signalled when it finds an error), then
sends SIGHUP to the PID in its ``server.pid_file`` (or to PID). Under a
supervisor (``workers`` above 1) the whole configuration is reloaded: new
workers start with it and the old ones drain. A single process re-reads the
certificate files of its TLS listeners, at the paths it started with;
established connections keep their certificates, and any other change needs
a restart. A relative ``pid_file`` is
relative to the working directory, as for ``run``. ``--pid PID`` alone
signals without checking a config.

``edgeproxy demo`` starts a built-in upstream on every local server address
of the config and the proxy in front of it. When certificate files of its TLS
listeners are missing and all belong in one directory (other than the working
directory) holding none of the development set yet, it generates a
development set there first, and prints a curl line per listener.

Configuration errors never print a traceback; they exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import shlex
import signal
import sys

from . import __version__, codec, compiled
from .config import ConfigError, load_config, quick_config


def version_text() -> str:
    try:
        import uvloop

        loopv = f"uvloop {uvloop.__version__}"
    except ImportError:  # pragma: no cover
        loopv = "uvloop missing"
    py = ".".join(map(str, sys.version_info[:3]))
    return f"edgeproxy {__version__} (codec: {codec.NAME}; core: {compiled.core_kind()}; {loopv}; python {py})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeproxy", description="HTTP/1.1 edge reverse proxy")
    p.add_argument("--version", action="version", version=version_text())
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    run = sub.add_parser("run", help="run the proxy")
    run.add_argument("-c", "--config", help="TOML config file")
    run.add_argument("--listen", action="append", default=[], metavar="ADDR", help="listen address (no-config mode)")
    run.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT", help="upstream server (no-config mode)")
    run.add_argument("--admin", metavar="ADDR", help="admin address (no-config mode)")
    run.add_argument("--cert", action="append", default=[], metavar="FILE",
                     help="PEM certificate (chain) making every --listen a TLS listener (no-config mode; "
                          "repeatable, each with a --key; the first is the default)")
    run.add_argument("--key", action="append", default=[], metavar="FILE",
                     help="PEM private key of the --cert at the same position (no-config mode)")
    run.add_argument("--loop", choices=["uvloop", "asyncio"], help="event loop (overrides server.loop)")
    run.add_argument("--workers", type=_worker_count, metavar="N|auto",
                     help="worker processes (overrides server.workers; 1 = a single process)")

    chk = sub.add_parser("check", help="validate a config file, dry-run its certificates and print a summary")
    chk.add_argument("-c", "--config", required=True, help="TOML config file")

    gen = sub.add_parser("gencert", help="write a development CA, server and client certificates into DIR")
    gen.add_argument("dir", metavar="DIR", help="directory to write into (created if needed)")
    gen.add_argument("--name", action="append", default=[], metavar="NAME",
                     help="name of the server certificate: DNS name or IP (repeatable; default localhost, 127.0.0.1)")
    gen.add_argument("--force", action="store_true", help="overwrite files that exist")

    rld = sub.add_parser("reload", help="check the config, then make the running proxy re-read its certificates")
    rld.add_argument("-c", "--config", help="TOML config file of the running proxy (checked; gives server.pid_file)")
    rld.add_argument("--pid", type=int, metavar="PID", help="signal this process instead of the one in pid_file")

    demo = sub.add_parser("demo", help="run a built-in demo upstream with the proxy in front of it")
    demo.add_argument("-c", "--config", help="TOML config file (default: ./config.example.toml if present)")
    demo.add_argument("--loop", choices=["uvloop", "asyncio"], help="event loop")
    return p


def _fail(msg: str) -> int:
    print(f"edgeproxy: {msg}", file=sys.stderr)
    return 2


def _load_for_run(args):
    if args.config:
        if args.listen or args.upstream or args.admin or args.cert or args.key:
            raise ConfigError("<command line>", "--config", None,
                              "either -c FILE or --listen/--upstream/--cert/--key, not both")
        return load_config(args.config)
    if not args.listen or not args.upstream:
        raise ConfigError("<command line>", "--listen/--upstream", None, "-c FILE, or at least one --listen and one --upstream")
    if len(args.cert) != len(args.key):
        raise ConfigError("<command line>", "--cert/--key", None, "one --key for each --cert, in the same order",
                          reason=f"{len(args.cert)} --cert but {len(args.key)} --key")
    return quick_config(args.listen, args.upstream, args.admin, args.loop, certs=list(zip(args.cert, args.key)))


# --------------------------------------------------------------------------- pid file


def _write_pid_file(cfg) -> str | None:
    """Write our PID to ``server.pid_file`` (atomically); its path, or None when not configured."""
    path = cfg.server.pid_file
    if not path:
        return None
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(cfg.source, "server.pid_file", path, "a file path the proxy can write",
                          reason=f"cannot write it: {exc.strerror or exc}") from None
    return path


def _remove_pid_file(path: str | None) -> None:
    """Remove the pid file, but only while it still holds our PID (another proxy may have taken it over)."""
    if not path:
        return
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            held = fh.read().strip()
        if held == str(os.getpid()):
            os.unlink(path)
    except OSError:
        pass


def _read_pid_file(path: str, source: str) -> int:
    """The PID in a pid file; ValueError with one line saying what is wrong."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such pid file (server.pid_file of {source}); is edgeproxy running, "
                         "started with this config from this directory?") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the pid file: {exc.strerror or exc}") from None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{path}: does not hold a process id (it holds {text[:20]!r})")
    return int(text)


def _not_edgeproxy(pid: int) -> str | None:
    """Why process ``pid`` is not an edgeproxy (a stale pid file naming a reused PID), or None.

    Best effort, Linux only: ours run as ``edgeproxy ...`` or ``python -m proxy ...``.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return None
    if not args or any("edgeproxy" in os.path.basename(a) or a == "proxy" or a.startswith("proxy.") for a in args):
        return None
    return f"its command line is {' '.join(args)[:80]!r}"


# --------------------------------------------------------------------------- run


def _worker_count(text: str):
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError('expected "auto" or a number of worker processes from 1 to 256')
    return n


def cmd_run(args) -> int:
    import dataclasses

    from .server import run

    try:
        cfg = _load_for_run(args)
    except ConfigError as exc:
        return _fail(str(exc))
    for w in cfg.warnings():
        print(f"edgeproxy: warning: {w}", file=sys.stderr)
    # SIGHUP means "reload certificates" once the proxy runs; until its handler is in place, an early
    # reload (the pid file is already written) must not terminate the process
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pid_file = _write_pid_file(cfg)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.workers is not None:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, workers=args.workers))
    workers = cfg.server.worker_count()
    try:
        if workers > 1:
            from .supervisor import run_supervisor
            from .tls import load_listener_tls

            load_listener_tls(cfg)  # certificate problems stop the start, before any worker runs
            return run_supervisor(cfg, args.config, args.loop, workers)
        return run(cfg, args.loop)
    except ConfigError as exc:  # a certificate the listener cannot use
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot start: {exc}")
    finally:
        _remove_pid_file(pid_file)


# --------------------------------------------------------------------------- check


def _fmt_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _route_names(cfg) -> list[str]:
    """The hosts the routes name (exact and wildcard), as a certificate would name them."""
    names = []
    for route in cfg.routes:
        host = route.host
        if host:
            names.append(host[1:-1] if host.startswith("[") else host)
    return list(dict.fromkeys(names))


def _tls_report(cfg, contexts: dict, now: datetime.datetime) -> tuple[list[str], list[tuple[str, str]]]:
    """Summary lines and (level, text) findings for the TLS listeners of ``cfg``, given their loaded contexts."""
    from .certs import check_certificate, check_client_ca, matches_name

    lines: list[str] = []
    findings: list[tuple[str, str]] = []
    hosts = _route_names(cfg)
    for i, lc in enumerate(cfg.listeners):
        if not lc.tls:
            continue
        certificates = contexts[lc.name].certificates
        if not lines:
            lines.append("tls listeners:")
        client = f"client_auth {lc.client_auth}" + (f" (client_ca {lc.client_ca})" if lc.client_auth != "none" else "")
        lines.append(f"  {lc.name}  {lc.address}  TLS {lc.min_tls_version}+, {client}")
        # a host no certificate covers gets the default certificate: it is that one's finding
        uncovered = [h for h in hosts if not any(matches_name(p, h) for c in certificates for p in c.names)]
        for j, cert in enumerate(certificates):
            default = "  (default)" if j == 0 else ""
            lines.append(f"    certificates[{j}]  {cert.cert_file}  {', '.join(cert.names) or '(no names)'}  "
                         f"not_after {_fmt_time(cert.not_after)}{default}")
            where = f"listeners[{i}].certificates[{j}]"
            for level, text in check_certificate(cert, now, uncovered if j == 0 else ()):
                findings.append((level, f"{where}: {text}"))
        if lc.client_auth != "none":
            for level, text in check_client_ca(lc.client_ca, now):
                findings.append((level, f"listeners[{i}].client_ca: {text}"))
    return lines, findings


def _load_checked(path: str):
    """(config, TLS contexts) of a config file; ConfigError when it or a certificate file is unusable."""
    from .tls import load_listener_tls

    cfg = load_config(path)
    return cfg, load_listener_tls(cfg)


def cmd_check(args) -> int:
    try:
        cfg, contexts = _load_checked(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    lines, findings = _tls_report(cfg, contexts, datetime.datetime.now(datetime.timezone.utc))
    print(cfg.summary())
    for line in lines:
        print(line)
    from .sysinfo import system_warnings

    for w in cfg.warnings() + system_warnings(cfg):
        print(f"warning: {w}")
    for level, text in findings:
        print(f"{level}: {text}")
    errors = sum(1 for level, _ in findings if level == "error")
    if errors:
        return _fail(f"{cfg.source}: {errors} certificate error{'s' if errors > 1 else ''} (see above)")
    print("config OK")
    return 0


# --------------------------------------------------------------------------- gencert


def _check_dev_name(name: str) -> None:
    from .units import parse_host

    text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    parse_host(name[2:] if name.startswith("*.") else name)


def _url_host(names) -> str:
    from .gencert import DEFAULT_DEV_NAMES, split_names

    dns, ips = split_names(names or DEFAULT_DEV_NAMES)
    if dns and not dns[0].startswith("*."):
        return dns[0]
    return f"[{ips[0]}]" if ips and ":" in ips[0] else (ips[0] if ips else "localhost")


def cmd_gencert(args) -> int:
    from .gencert import generate_dev_set

    for name in args.name:
        try:
            _check_dev_name(name)
        except ValueError as exc:
            return _fail(f"--name {name!r}: {exc or 'invalid host name'}; expected a DNS name or an IP address")
    try:
        paths = generate_dev_set(args.dir, args.name or None, overwrite=args.force)
    except FileExistsError as exc:
        return _fail(f"{exc}; --force overwrites")
    except ValueError as exc:
        return _fail(f"--name: {exc}")
    except OSError as exc:
        return _fail(f"{args.dir}: cannot write the certificates: {exc.strerror or exc}")
    for path in paths.values():
        print(f"wrote {path}")
    q = {name: shlex.quote(str(path)) for name, path in paths.items()}
    toml = {name: json.dumps(str(path)) for name, path in paths.items()}
    print(f'try mTLS: serve {q["server.pem"]} and {q["server.key"]} on a TLS listener with client_auth = "required" '
          f'and client_ca = {toml["ca.pem"]}, then: curl --cacert {q["ca.pem"]} --cert {q["client.pem"]} '
          f'--key {q["client.key"]} https://{_url_host(args.name)}:8443/')
    return 0


# --------------------------------------------------------------------------- reload


def cmd_reload(args) -> int:
    cfg = None
    if args.config:
        try:
            cfg, contexts = _load_checked(args.config)
        except ConfigError as exc:
            return _fail(f"{exc} (nothing signalled)")
        _, findings = _tls_report(cfg, contexts, datetime.datetime.now(datetime.timezone.utc))
        for level, text in findings:
            print(f"edgeproxy: {level}: {text}", file=sys.stderr)
        if any(level == "error" for level, _ in findings):
            return _fail(f"{cfg.source}: certificate errors (see above); nothing signalled")
    elif args.pid is None:
        return _fail("reload needs -c FILE (its server.pid_file names the process) or --pid PID")

    if args.pid is not None:
        if args.pid <= 0:
            return _fail(f"--pid {args.pid}: expected a process id (a positive integer)")
        pid, origin = args.pid, "--pid"
    else:
        path = cfg.server.pid_file
        if not path:
            return _fail(f"{cfg.source}: server.pid_file is not set, so the running proxy's PID is unknown; "
                         "set it (and restart the proxy) or pass --pid PID")
        try:
            pid = _read_pid_file(path, cfg.source)
        except ValueError as exc:
            return _fail(str(exc))
        origin = path
        why = _not_edgeproxy(pid)
        if why is not None:
            return _fail(f"process {pid} (from {path}) is not edgeproxy: {why}; the pid file is stale, "
                         "nothing signalled")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return _fail(f"no process {pid} (from {origin}): edgeproxy is not running, or the pid file is stale")
    except PermissionError:
        return _fail(f"not permitted to signal process {pid} (from {origin}); run as the proxy's user")
    print(f"edgeproxy: sent SIGHUP to process {pid}: with workers it reloads the whole configuration "
          "(new workers, old ones drained); a single process re-reads its TLS certificates")
    return 0


# --------------------------------------------------------------------------- demo


def _tls_files(cfg) -> list[str]:
    files: list[str] = []
    for lc in cfg.listeners:
        if lc.tls:
            for c in lc.certificates:
                files += [c.cert, c.key]
            if lc.client_auth != "none":
                files.append(lc.client_ca)
    return list(dict.fromkeys(files))


_WILDCARD_HOSTS = ("0.0.0.0", "::")


def _demo_certificates(cfg) -> str | None:
    """Generate a development set where the TLS listeners' missing files belong; the directory, or None.

    Only when every missing file is in one directory (not the working directory), is named like a file of
    the set, and no file of the set is there yet (nothing is overwritten). Otherwise the proxy's own
    error names the missing file.
    """
    from .gencert import DEFAULT_DEV_NAMES, DEV_SET_FILES, generate_dev_set

    missing = [f for f in _tls_files(cfg) if not os.path.exists(f)]
    if not missing:
        return None
    folders = {os.path.normpath(os.path.dirname(f) or ".") for f in missing}
    if len(folders) != 1:
        return None
    folder = folders.pop()
    if folder == "." or any(os.path.basename(f) not in DEV_SET_FILES for f in missing):
        return None
    if any(os.path.exists(os.path.join(folder, name)) for name in DEV_SET_FILES):
        return None
    names = list(DEFAULT_DEV_NAMES)
    for lc in cfg.listeners:
        if lc.tls and lc.address.host not in _WILDCARD_HOSTS and lc.address.host not in names:
            names.append(lc.address.host)
    generate_dev_set(folder, names)
    return folder


def cmd_demo(args) -> int:
    from .server import new_event_loop

    path = args.config
    if path is None and os.path.exists("config.example.toml"):
        path = "config.example.toml"
    try:
        cfg = load_config(path) if path else quick_config(["127.0.0.1:8080"], ["127.0.0.1:8081"], None)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        folder = _demo_certificates(cfg)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot generate development certificates: {exc}")
    if folder is not None:
        print(f"edgeproxy demo: generated development certificates in {folder}/ "
              f"(clients trust them with {os.path.join(folder, 'ca.pem')})", file=sys.stderr)
    kind = args.loop or cfg.server.loop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as in run: until the proxy's handler is in place
    try:
        pid_file = _write_pid_file(cfg)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
            try:
                return runner.run(_demo(cfg))
            except ConfigError as exc:
                return _fail(str(exc))
            except OSError as exc:
                return _fail(f"cannot start: {exc}")
    finally:
        _remove_pid_file(pid_file)


_LOCAL = ("127.0.0.1", "localhost", "::1")


def _tls_curl(lst) -> str:
    """A curl command line for a TLS listener, trusting the CA next to its default certificate."""
    host, _, port = lst.address.rpartition(":")
    host = host.strip("[]")
    names = lst.tls.certificates[0].names if lst.tls.certificates else ()
    if (host in _LOCAL or host in _WILDCARD_HOSTS) and "localhost" in names:
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    folder = os.path.dirname(lst.cfg.certificates[0].cert)
    ca = os.path.join(folder, "ca.pem")
    parts = ["curl"] + (["--cacert", ca] if os.path.exists(ca) else ["-k"])
    client, client_key = os.path.join(folder, "client.pem"), os.path.join(folder, "client.key")
    if lst.cfg.client_auth != "none" and os.path.exists(client) and os.path.exists(client_key):
        parts += ["--cert", client, "--key", client_key]
    return " ".join(shlex.quote(p) for p in parts) + f" https://{host}:{port}/"


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
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a stop during startup is a stop too
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload_certificates)
    await proxy.start()
    print("edgeproxy demo is running. Try:", file=sys.stderr)
    for lst in proxy.listeners:
        if lst.tls is None:
            print(f"  curl -i http://{lst.address}/", file=sys.stderr)
        else:
            print(f"  {_tls_curl(lst)}", file=sys.stderr)
    first = proxy.listeners[0]
    if first.tls is None:
        print(f"  curl -s http://{first.address}/bytes/1048576 | wc -c", file=sys.stderr)
    if proxy.admin is not None:
        print(f"  curl -s http://{proxy.admin.address}/metrics | grep http_server_requests_total", file=sys.stderr)
        print(f"  curl -s http://{proxy.admin.address}/readyz", file=sys.stderr)
    print("Access log lines appear below; Ctrl-C stops.", file=sys.stderr)
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
    if args.cmd == "gencert":
        return cmd_gencert(args)
    if args.cmd == "reload":
        return cmd_reload(args)
    if args.cmd == "demo":
        return cmd_demo(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
