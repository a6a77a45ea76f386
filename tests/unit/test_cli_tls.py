"""The TLS side of the command line, in process: check's certificate dry run, gencert, quick mode's
--cert/--key, reload's checks before it signals, the pid file, demo's development certificates."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import cli
from proxy.certs import load_certificate
from proxy.gencert import CLIENT_AUTH, DEV_SET_FILES, SERVER_AUTH, issue, make_ca

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca():
    return make_ca("CLI test CA", not_before=NOW - 100 * DAY, not_after=NOW + 1000 * DAY)


def write_pair(folder: Path, stem: str, issued, key_of=None) -> tuple[str, str]:
    cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert.write_bytes(issued.chain_pem())
    key.write_bytes((key_of or issued).key_pem())
    return str(cert), str(key)


def server_cert(ca, names=("www.example.test",), *, start=NOW - DAY, end=NOW + 90 * DAY, **kw):
    return issue(common_name=names[0], dns_names=list(names), issuer=ca, not_before=start, not_after=end,
                 extended_key_usage=[SERVER_AUTH], **kw)


def tls_config(pairs, *, plain_first=True, routes=("",), extra_listener="", pid_file="") -> str:
    """A config with a plain listener (optionally) and a TLS one serving ``pairs``."""
    out = []
    if pid_file:
        out.append(f'[server]\npid_file = "{pid_file}"\n')
    if plain_first:
        out.append('[[listeners]]\nname = "plain"\naddress = "127.0.0.1:0"\n')
    out.append('[[listeners]]\nname = "secure"\naddress = "127.0.0.1:0"\ntls = true\n' + extra_listener)
    for cert, key in pairs:
        out.append(f'[[listeners.certificates]]\ncert = "{cert}"\nkey = "{key}"\n')
    out.append('[upstreams.app]\nservers = ["127.0.0.1:9"]\n')
    for i, host in enumerate(routes):
        out.append(f'[[routes]]\nname = "r{i}"\nhost = "{host}"\nupstream = "app"\n')
    return "\n".join(out)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cfg_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "edge.toml"
        path.write_text(text)
        return str(path)

    return write


# --------------------------------------------------------------------------- check


def test_check_good_tls_config_lists_certificates(tmp_path, ca, capsys, cfg_file):
    first = write_pair(tmp_path, "www", server_cert(ca, ("www.example.test", "example.test")))
    second = write_pair(tmp_path, "api", server_cert(ca, ("api.example.test",)))
    path = cfg_file(tls_config([first, second], routes=("www.example.test", "api.example.test")))
    code, out, err = run_cli(capsys, "check", "-c", path)
    assert (code, err) == (0, "")
    assert "tls listeners:" in out and "secure  127.0.0.1:0  TLS 1.2+, client_auth none" in out
    expiry = (NOW + 90 * DAY).strftime("%Y-%m-%d")
    assert f"certificates[0]  {first[0]}  www.example.test, example.test  not_after {expiry}" in out
    assert f"certificates[1]  {second[0]}  api.example.test  not_after {expiry}" in out
    assert "error:" not in out and "warning:" not in out
    assert out.rstrip().endswith("config OK")


def test_check_expired_certificate_is_an_error(tmp_path, ca, capsys, cfg_file):
    pair = write_pair(tmp_path, "old", server_cert(ca, start=NOW - 400 * DAY, end=NOW - 3 * DAY))
    code, out, err = run_cli(capsys, "check", "-c", cfg_file(tls_config([pair])))
    assert code == 2
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: listeners[1].certificates[0]: {pair[0]}: certificate expired on")
    assert "config OK" not in out
    assert "certificates[0]" in out  # the summary is printed all the same
    assert err.strip().splitlines() == [f"edgeproxy: {tmp_path / 'edge.toml'}: 1 certificate error (see above)"]


def test_check_key_not_matching_is_one_line(tmp_path, ca, capsys, cfg_file):
    good = write_pair(tmp_path, "good", server_cert(ca))
    wrong = write_pair(tmp_path, "wrong", server_cert(ca), key_of=server_cert(ca))
    code, out, err = run_cli(capsys, "check", "-c", cfg_file(tls_config([good, wrong])))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f'edgeproxy: {tmp_path / "edge.toml"}: listeners[1].certificates[1] = "')
    assert f"{wrong[1]}: the private key does not match the certificate in {wrong[0]}" in lines[0]


def test_check_certificate_expiring_soon_is_a_warning(tmp_path, ca, capsys, cfg_file):
    pair = write_pair(tmp_path, "soon", server_cert(ca, end=NOW + 5 * DAY + datetime.timedelta(hours=1)))
    code, out, err = run_cli(capsys, "check", "-c", cfg_file(tls_config([pair])))
    assert (code, err) == (0, "")
    assert f"warning: listeners[1].certificates[0]: {pair[0]}: certificate expires in 5 days" in out
    assert out.rstrip().endswith("config OK")


def test_check_route_host_no_certificate_covers_is_one_warning(tmp_path, ca, capsys, cfg_file):
    first = write_pair(tmp_path, "www", server_cert(ca, ("www.example.test",)))
    second = write_pair(tmp_path, "api", server_cert(ca, ("*.api.example.test",)))
    path = cfg_file(tls_config([first, second], routes=("www.example.test", "v1.api.example.test", "other.test")))
    code, out, _ = run_cli(capsys, "check", "-c", path)
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    # only the host no certificate covers, reported on the default certificate (the one it gets)
    assert code == 0 and len(warnings) == 1
    assert warnings[0].startswith("warning: listeners[1].certificates[0]: ") and "'other.test' is not covered" in warnings[0]


def test_check_client_ca_findings(tmp_path, ca, capsys, cfg_file):
    pair = write_pair(tmp_path, "www", server_cert(ca))
    not_a_ca = tmp_path / "client-ca.pem"
    not_a_ca.write_bytes(issue(common_name="leaf", issuer=ca, extended_key_usage=[CLIENT_AUTH]).cert_pem())
    extra = f'client_auth = "optional"\nclient_ca = "{not_a_ca}"\n'
    code, out, _ = run_cli(capsys, "check", "-c", cfg_file(tls_config([pair], extra_listener=extra)))
    assert code == 2
    assert f"error: listeners[1].client_ca: {not_a_ca}: certificate #1 (CN=leaf) is not a CA" in out
    assert "client_auth optional (client_ca " in out


def test_check_plain_config_has_no_tls_section(tmp_path, capsys, cfg_file):
    path = cfg_file('[upstreams.app]\nservers = ["127.0.0.1:9"]\n[[routes]]\nupstream = "app"\n')
    code, out, _ = run_cli(capsys, "check", "-c", path)
    assert code == 0 and "tls listeners:" not in out and "config OK" in out


# --------------------------------------------------------------------------- gencert


def test_gencert_writes_the_set_and_refuses_to_overwrite(tmp_path, capsys):
    folder = tmp_path / "dev"
    code, out, err = run_cli(capsys, "gencert", str(folder), "--name", "app.test", "--name", "10.1.2.3")
    assert (code, err) == (0, "")
    assert [line for line in out.splitlines() if line.startswith("wrote ")] == [
        f"wrote {folder / name}" for name in DEV_SET_FILES]
    assert f"curl --cacert {folder / 'ca.pem'} --cert {folder / 'client.pem'} --key {folder / 'client.key'} " \
           "https://app.test:8443/" in out
    served = load_certificate(folder / "server.pem", folder / "server.key")
    assert served.names == ("app.test", "10.1.2.3")
    before = (folder / "ca.pem").read_bytes()

    code, out, err = run_cli(capsys, "gencert", str(folder))
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"edgeproxy: {folder / 'ca.pem'}: already exists (choose another directory or overwrite); --force overwrites"]
    assert (folder / "ca.pem").read_bytes() == before

    code, out, _ = run_cli(capsys, "gencert", str(folder), "--force")
    assert code == 0 and (folder / "ca.pem").read_bytes() != before
    assert load_certificate(folder / "server.pem", folder / "server.key").names == ("localhost", "127.0.0.1")
    assert "https://localhost:8443/" in out


@pytest.mark.parametrize("name", ["a b", "é.example", ""])
def test_gencert_bad_name_is_one_line(tmp_path, capsys, name):
    code, out, err = run_cli(capsys, "gencert", str(tmp_path / "x"), "--name", name)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"edgeproxy: --name {name!r}: ") and not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- run: quick mode and the pid file


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cert", "a.pem", "--key", "a.key", "--cert", "b.pem"],
         "edgeproxy: <command line>: --cert/--key: 2 --cert but 1 --key; expected one --key for each --cert"),
        (["--key", "a.key"], "edgeproxy: <command line>: --cert/--key: 0 --cert but 1 --key"),
    ],
)
def test_run_unequal_cert_and_key_counts(capsys, argv, message):
    code, out, err = run_cli(capsys, "run", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message)


def test_run_cert_with_a_config_file(capsys):
    code, _, err = run_cli(capsys, "run", "-c", "x.toml", "--cert", "a.pem", "--key", "a.key")
    assert code == 2 and "either -c FILE or --listen/--upstream/--cert/--key, not both" in err


def test_pid_file_written_and_removed_only_while_ours(tmp_path):
    path = tmp_path / "edge.pid"
    from proxy.config import parse_config

    config = parse_config({"server": {"pid_file": str(path)}, "upstreams": {"a": {"servers": ["a:1"]}},
                           "routes": [{"upstream": "a"}]}, "t.toml")
    assert cli._write_pid_file(config) == str(path)
    assert path.read_text() == f"{os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["edge.pid"]  # no temporary file left
    cli._remove_pid_file(str(path))
    assert not path.exists()
    path.write_text("1\n")  # another proxy took it over
    cli._remove_pid_file(str(path))
    assert path.read_text() == "1\n"


def test_pid_file_not_writable_is_a_config_error(tmp_path):
    from proxy.config import ConfigError, parse_config

    config = parse_config({"server": {"pid_file": str(tmp_path / "no" / "such" / "edge.pid")},
                           "upstreams": {"a": {"servers": ["a:1"]}}, "routes": [{"upstream": "a"}]}, "t.toml")
    with pytest.raises(ConfigError) as info:
        cli._write_pid_file(config)
    assert str(info.value).startswith('t.toml: server.pid_file = "') and "cannot write it" in str(info.value)


# --------------------------------------------------------------------------- reload: everything before the signal


@pytest.fixture
def kills(monkeypatch):
    """os.kill recorded instead of sent: these tests must never signal anything."""
    sent = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


def test_reload_bad_config_signals_nothing(tmp_path, ca, capsys, cfg_file, kills):
    pid_file = tmp_path / "edge.pid"
    pid_file.write_text("12345\n")
    wrong = write_pair(tmp_path, "wrong", server_cert(ca), key_of=server_cert(ca))
    code, out, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([wrong], pid_file=pid_file)))
    assert code == 2 and out == "" and kills == []
    assert len(err.strip().splitlines()) == 1
    assert "listeners[1].certificates[0]" in err and err.rstrip().endswith("(nothing signalled)")

    cfg_file("[server]\npid_file = 3\n")
    code, _, err = run_cli(capsys, "reload", "-c", str(tmp_path / "edge.toml"))
    assert code == 2 and kills == [] and "server.pid_file = 3" in err


def test_reload_expired_certificate_signals_nothing(tmp_path, ca, capsys, cfg_file, kills):
    pid_file = tmp_path / "edge.pid"
    pid_file.write_text("12345\n")
    old = write_pair(tmp_path, "old", server_cert(ca, start=NOW - 400 * DAY, end=NOW - DAY))
    code, _, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([old], pid_file=pid_file)))
    assert code == 2 and kills == []
    assert "edgeproxy: error: listeners[1].certificates[0]: " in err and "nothing signalled" in err


def test_reload_needs_a_pid(tmp_path, ca, capsys, cfg_file, kills):
    pair = write_pair(tmp_path, "www", server_cert(ca))
    code, _, err = run_cli(capsys, "reload")
    assert code == 2 and "reload needs -c FILE" in err
    code, _, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([pair])))
    assert code == 2 and "server.pid_file is not set" in err and len(err.strip().splitlines()) == 1
    missing = tmp_path / "gone.pid"
    code, _, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([pair], pid_file=missing)))
    assert code == 2 and f"{missing}: no such pid file" in err and len(err.strip().splitlines()) == 1
    missing.write_text("garbage\n")
    code, _, err = run_cli(capsys, "reload", "-c", str(tmp_path / "edge.toml"))
    assert code == 2 and "does not hold a process id" in err
    code, _, err = run_cli(capsys, "reload", "--pid", "0")
    assert code == 2 and "--pid 0: expected a process id" in err
    assert kills == []


def test_reload_refuses_a_stale_pid_file_naming_another_program(tmp_path, ca, capsys, cfg_file, kills):
    if not os.path.exists(f"/proc/{os.getpid()}/cmdline"):
        pytest.skip("needs /proc")
    pair = write_pair(tmp_path, "www", server_cert(ca))
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        pid_file = tmp_path / "edge.pid"
        pid_file.write_text(f"{other.pid}\n")
        code, _, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([pair], pid_file=pid_file)))
        assert code == 2 and f"process {other.pid} (from {pid_file}) is not edgeproxy" in err
        assert kills == []
    finally:
        other.stdin.close()
        other.wait(5)


def test_reload_sends_sighup_to_the_pid(tmp_path, ca, capsys, cfg_file, kills, monkeypatch):
    monkeypatch.setattr(cli, "_not_edgeproxy", lambda pid: None)
    pair = write_pair(tmp_path, "www", server_cert(ca))
    pid_file = tmp_path / "edge.pid"
    pid_file.write_text("4242\n")
    code, out, _ = run_cli(capsys, "reload", "-c", cfg_file(tls_config([pair], pid_file=pid_file)))
    assert code == 0 and kills == [(4242, signal.SIGHUP)]
    assert "sent SIGHUP to process 4242: with workers it reloads the whole configuration" in out
    code, _, _ = run_cli(capsys, "reload", "--pid", "777")
    assert code == 0 and kills[-1] == (777, signal.SIGHUP)


def test_reload_no_such_process(tmp_path, ca, capsys, cfg_file, monkeypatch):
    def gone(pid, sig):
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(cli.os, "kill", gone)
    monkeypatch.setattr(cli, "_not_edgeproxy", lambda pid: None)
    pair = write_pair(tmp_path, "www", server_cert(ca))
    pid_file = tmp_path / "edge.pid"
    pid_file.write_text("4242\n")
    code, _, err = run_cli(capsys, "reload", "-c", cfg_file(tls_config([pair], pid_file=pid_file)))
    assert code == 2 and err.strip().splitlines() == [
        f"edgeproxy: no process 4242 (from {pid_file}): edgeproxy is not running, or the pid file is stale"]


# --------------------------------------------------------------------------- demo: development certificates


def _demo_cfg(tmp_path, monkeypatch, pairs):
    from proxy.config import parse_config

    monkeypatch.chdir(tmp_path)
    listener = {"address": "127.0.0.1:0", "tls": True, "certificates": [{"cert": c, "key": k} for c, k in pairs]}
    return parse_config({"listeners": [listener], "upstreams": {"a": {"servers": ["a:1"]}},
                         "routes": [{"upstream": "a"}]}, "t.toml")


def test_demo_generates_missing_certificates_in_their_directory(tmp_path, monkeypatch):
    cfg = _demo_cfg(tmp_path, monkeypatch, [("demo-certs/server.pem", "demo-certs/server.key")])
    assert cli._demo_certificates(cfg) == "demo-certs"
    assert sorted(os.listdir("demo-certs")) == sorted(DEV_SET_FILES)
    assert load_certificate("demo-certs/server.pem", "demo-certs/server.key").names == ("localhost", "127.0.0.1")
    assert cli._demo_certificates(cfg) is None  # nothing missing any more


@pytest.mark.parametrize(
    ("pairs", "present"),
    [
        ([("a/server.pem", "b/server.key")], ()),  # two directories
        ([("certs/mine.pem", "certs/mine.key")], ()),  # not files of the development set
        ([("server.pem", "server.key")], ()),  # the working directory itself
        ([("certs/server.pem", "certs/server.key")], ("certs/ca.pem",)),  # part of a set is there: never overwrite
    ],
)
def test_demo_generates_nothing_otherwise(tmp_path, monkeypatch, pairs, present):
    cfg = _demo_cfg(tmp_path, monkeypatch, pairs)
    for name in present:
        Path(name).parent.mkdir(exist_ok=True)
        Path(name).write_text("mine")
    assert cli._demo_certificates(cfg) is None
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(Path(n).name for n in present)
