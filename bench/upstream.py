"""The built-in demo upstream as a standalone server for benchmarks:
``python -m bench.upstream PORT`` (used when nginx is not installed)."""

import sys

import uvloop

from proxy.demo import start_demo_upstream


async def main(port: int) -> None:
    srv = await start_demo_upstream("127.0.0.1", port)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
