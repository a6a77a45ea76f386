"""A worker process under the supervisor: one event loop, the proxy, no policy of its own.

Theory of operation
-------------------
The supervisor starts ``python -m proxy.worker`` with the listening sockets
and one end of a control socketpair inherited (``pass_fds``), and writes a
bootstrap to its stdin: the ``Config`` (pickled: the supervisor validated it,
the worker never re-reads a file), its worker number and generation,
``{listener name: fd}``, and the generation's TLS session-ticket key block
(every worker of a generation seals tickets with it, so any of them resumes
a session another issued; it exists only in memory and this pipe). The
worker builds a ``ProxyServer`` on those sockets (it binds none itself),
with its admin endpoint on a private loopback port and without active
health checks: the supervisor probes once for all workers and sends every
result over the control channel.

Control channel, JSON lines both ways:

* worker -> supervisor: ``{"t": "ready", "admin": "127.0.0.1:PORT"}`` once
  serving;
* supervisor -> worker: ``{"t": "health", "c": cluster, "s": server,
  "healthy": bool, "failing": bool}``;
* supervisor -> worker ``{"t": "ping"}``, answered ``{"t": "pong"}``: the
  watchdog (``[server] worker_watchdog``).

Signals: SIGTERM or SIGINT drain (listeners stop accepting: their sockets
stay open in the supervisor, so nothing queued is lost; in-flight requests
finish up to ``drain_timeout``), SIGQUIT exits at once. SIGHUP is ignored:
reloads are the supervisor's. When the supervisor dies (the control
channel closes), the worker drains and exits too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import socket
import sys

import orjson

from . import log


@dataclasses.dataclass
class Bootstrap:
    config: object
    worker: int
    generation: int
    fds: dict  # listener name -> inherited listening socket fd
    control_fd: int
    # the generation's TLS session-ticket key block (tls.set_ticket_keys): in memory only, never shown
    ticket_keys: bytes | None = dataclasses.field(default=None, repr=False)


async def _serve(boot: Bootstrap) -> int:
    from .server import ProxyServer, settle_heap

    loop = asyncio.get_running_loop()
    cfg = boot.config
    # the worker's admin endpoint is private: loopback, any port, same token
    admin = dataclasses.replace(cfg.admin, enabled=True, address=cfg.admin.address._replace(host="127.0.0.1", port=0))
    cfg = dataclasses.replace(cfg, admin=admin)
    sockets = {name: socket.socket(fileno=fd) for name, fd in boot.fds.items()}
    server = ProxyServer(cfg, loop, sockets=sockets, probe_health=False, worker=boot.worker,
                         ticket_keys=boot.ticket_keys)
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=boot.control_fd))
    await server.start()
    settle_heap()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGQUIT, lambda: os._exit(0))
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    writer.write(orjson.dumps({"t": "ready", "admin": server.admin.address if server.admin else None,
                               "pid": os.getpid()}) + b"\n")

    async def control() -> None:
        while True:
            line = await reader.readline()
            if not line:
                log.warn("supervisor_gone")
                stop.set()
                return
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            t = msg.get("t")
            if t == "health":
                server.apply_health(msg["c"], msg["s"], msg["healthy"], msg["failing"])
            elif t == "ping":  # answered by this loop: a blocked loop leaves it unanswered
                writer.write(b'{"t":"pong"}\n')

    task = asyncio.ensure_future(control())
    await stop.wait()
    task.cancel()
    await server.shutdown()
    return 0


def main() -> int:
    boot: Bootstrap = pickle.load(sys.stdin.buffer)
    log.CONTEXT["worker"] = boot.worker
    log.CONTEXT["generation"] = boot.generation
    # inherited stdin was the bootstrap pipe; a worker reads nothing else from it
    from .server import new_event_loop

    kind = boot.config.server.loop
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(_serve(boot))


if __name__ == "__main__":
    sys.exit(main())
