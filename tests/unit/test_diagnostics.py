"""/debug/tasks grouping, with real asyncio tasks."""

import asyncio

from proxy import diagnostics


def test_identical_stacks_group_into_one_line():
    async def parked(ev):
        await ev.wait()

    async def other(ev):
        await asyncio.wait_for(ev.wait(), 10)

    async def main():
        ev = asyncio.Event()
        many = [asyncio.create_task(parked(ev)) for _ in range(500)]
        few = [asyncio.create_task(other(ev)) for _ in range(3)]
        await asyncio.sleep(0)  # let them all reach their await
        report = diagnostics.tasks()
        ev.set()
        await asyncio.gather(*many, *few)
        return report

    report = asyncio.run(main())
    groups = report["groups"]
    assert report["total"] >= 504  # the 503, main(), and wait_for's inner tasks
    assert groups[0]["count"] == 500 and any("parked" in f for f in groups[0]["stack"])
    assert any(g["count"] == 3 and any("other" in f for f in g["stack"]) for g in groups)


def test_config_redacts_tls_key_paths_but_not_certificates():
    from proxy.diagnostics import _redact

    out = _redact({"listeners": [{"certificates": [{"cert": "a.pem", "key": "a.key"}], "client_ca": "ca.pem"}]})
    assert out == {"listeners": [{"certificates": [{"cert": "a.pem", "key": "<redacted>"}], "client_ca": "ca.pem"}]}
