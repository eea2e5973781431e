"""The network guard on the address actually dialled: PostgreSQL hosts libpq would expand,
DNS rebinding of HTTP sources, and IPv6 spellings of private addresses."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from hookstream_ui.models import SourceConnection, db
from hookstream_ui.sources import REGISTRY, secrets
from hookstream_ui.sources.base import Connection, ReadContext, SourceError
from tests.fixture_servers import PG_PASSWORD, PG_USER, REST_TOKEN
from tests.helpers import make_user


@pytest.fixture
def private_off(app, monkeypatch):
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORKS", False)


def api(client, method, path, key, **kw):
    return client.open(f"/api/v1{path}", method=method, headers={"X-API-Key": key}, **kw)


def pg_create(client, key, creds):
    return api(
        client,
        "POST",
        "/source-connections",
        key,
        json={
            "sourceShortName": "postgresql",
            "name": "db",
            "credentials": creds,
            "config": {"table": "customers"},
        },
    )


def socket_creds(pg_source, host):
    # The fixture server trusts every local (socket) connection: no password is needed there.
    return {
        "host": host,
        "port": pg_source.port,
        "database": "postgres",
        "username": PG_USER,
        "password": "anything",
        "sslmode": "disable",
    }


@pytest.mark.parametrize("host", ["socket", "socket,127.0.0.1", "/nonexistent,127.0.0.1"])
def test_postgresql_hosts_libpq_would_expand_are_refused(client, key, pg_source, private_off, host):
    host = host.replace("socket", str(pg_source.root))
    r = pg_create(client, key, socket_creds(pg_source, host))
    assert r.status_code == 400 and set(r.json["errors"]) == {"host"}, r.json
    assert db.session.query(SourceConnection).count() == 0


@pytest.mark.parametrize("host", ["socket", "socket,127.0.0.1"])
def test_a_stored_socket_host_is_refused_when_connecting(client, key, pg_source, private_off, host):
    """A host stored before the check (or written around it) is refused by connect() itself."""
    host = host.replace("socket", str(pg_source.root))
    sid = api(
        client,
        "POST",
        "/source-connections",
        key,
        json={"sourceShortName": "webhook", "name": "placeholder", "credentials": {}, "config": {}},
    ).json["sourceConnection"]["id"]
    source = db.session.get(SourceConnection, sid)
    source.short_name = "postgresql"
    source.credentials_encrypted = secrets.encrypt(socket_creds(pg_source, host))
    source.config = {"table": "customers"}
    db.session.commit()
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is False and "The host" in t["message"], t
    with pytest.raises(SourceError):
        conn = Connection(sid, socket_creds(pg_source, host), {"table": "customers"})
        list(REGISTRY["postgresql"].read(conn, None, None, {}, True, ReadContext()))


def test_socket_paths_work_where_private_networks_are_allowed(client, key, pg_source):
    sid = pg_create(client, key, socket_creds(pg_source, str(pg_source.root))).json["sourceConnection"]["id"]
    assert api(client, "POST", f"/source-connections/{sid}/test", key).json["success"] is True


def test_connection_settings_in_other_fields_are_not_expanded(client, key, pg_source):
    creds = {**pg_source.credentials(), "port": 1, "database": f"host=127.0.0.1 port={pg_source.port}"}
    sid = pg_create(client, key, creds).json["sourceConnection"]["id"]
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is False and "nothing is listening on 127.0.0.1:1" in t["message"], t


def test_hookstream_s_own_database_is_never_a_source(app, client, key, pg_source, monkeypatch):
    monkeypatch.setitem(
        app.config,
        "SQLALCHEMY_DATABASE_URI",
        f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{pg_source.port}/postgres",
    )
    for host in ("127.0.0.1", "localhost", str(pg_source.root)):
        sid = pg_create(client, key, {**pg_source.credentials(), "host": host}).json["sourceConnection"]["id"]
        t = api(client, "POST", f"/source-connections/{sid}/test", key).json
        assert t == {
            "success": False,
            "status": "failed",
            "message": "Refusing to connect to hookstream's own database",
        }, (host, t)
    # Another database of the same server is another matter: no table is read across databases.
    sid = pg_create(client, key, {**pg_source.credentials(), "database": "template1"}).json[
        "sourceConnection"
    ]["id"]
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert "own database" not in t["message"] and "customers does not exist" in t["message"], t


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::a9fe:a9fe",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
    ],
)
def test_every_spelling_of_a_private_address_is_blocked(address):
    from hookstream_ui.sources.netguard import blocked

    assert blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address):
    from hookstream_ui.sources.netguard import blocked

    assert not blocked(ipaddress.ip_address(address))


class Rebinding:
    """An attacker's DNS: `rebind.test` answers `first` to the first lookup and `then` to
    every later one. Other names resolve as usual."""

    def __init__(self, monkeypatch, first: str, then: str):
        self.answers, self.real = [first, then], socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, *args, **kwargs):
        if host != "rebind.test":
            return self.real(host, port, *args, **kwargs)
        address = self.answers[0]
        if len(self.answers) > 1:
            self.answers.pop(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]


def test_http_sources_connect_to_the_address_that_was_checked(ctx, http_fixture, monkeypatch):
    """The first answer is what the guard checked; a second lookup (httpx's own) answers the
    fixture server's address. Nothing listens on the checked one, so reaching the server
    would mean the connection went to an address nobody checked."""
    from hookstream_ui.sources import http

    Rebinding(monkeypatch, first="127.0.0.2", then="127.0.0.1")
    port = http_fixture.server.server_port
    with pytest.raises(SourceError, match="Connection refused"):
        http.request("GET", f"http://rebind.test:{port}/echo-auth", headers={"Authorization": "Bearer x"})


def test_every_redirect_hop_is_checked_where_it_is_dialled(ctx, http_fixture, monkeypatch, app):
    from hookstream_ui.sources import http

    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORKS", False)
    Rebinding(monkeypatch, first="127.0.0.1", then="127.0.0.1")
    with pytest.raises(SourceError, match=r"Refusing to connect to rebind.test \(127.0.0.1\)"):
        http.request("GET", f"http://rebind.test:{http_fixture.server.server_port}/orders")


def test_rest_source_reads_through_the_guarded_connection(client, key, http_fixture, monkeypatch):
    Rebinding(monkeypatch, first="127.0.0.1", then="127.0.0.2")
    base = f"http://rebind.test:{http_fixture.server.server_port}"
    sid = api(
        client,
        "POST",
        "/source-connections",
        key,
        json={
            "sourceShortName": "rest_api",
            "name": "api",
            "config": {"path": "/orders", "records_path": "$.data"},
            "credentials": {"base_url": base, "auth_type": "bearer", "token": REST_TOKEN},
        },
    ).json["sourceConnection"]["id"]
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is True, t  # dialled the checked 127.0.0.1 (and TLS/Host kept the name)


def test_proxies_and_netrc_from_the_environment_are_not_used(ctx, http_fixture, monkeypatch, tmp_path):
    from hookstream_ui.sources import http

    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password n3trc-secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:1")
    answer = http.request("GET", f"{http_fixture.base}/echo-auth").json()
    assert answer == {"authorization": "", "x_api_key": None}


def test_the_connect_form_says_when_private_hosts_are_refused(app, ctx, monkeypatch):
    from tests.helpers import login

    make_user("admin@example.com")
    client = app.test_client()
    login(client, "admin@example.com")
    assert "private-networks" not in client.get("/sources/new/postgresql").get_data(as_text=True)
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORKS", False)
    for short, shown in (
        ("postgresql", True),
        ("rest_api", True),
        ("stripe", True),
        ("webhook", False),
        ("file", False),
    ):
        page = client.get(f"/sources/new/{short}").get_data(as_text=True)
        assert ('id="private-networks"' in page) is shown, short


def test_the_server_itself_says_whether_a_connection_reached_hookstream_s_database(app, ctx, pg_source):
    """Names and addresses can be spelled many ways (a LAN address, 0.0.0.0, another name):
    after connecting, the server's start time and database decide."""
    import psycopg

    from hookstream_ui.sources.postgresql import _is_own

    creds = pg_source.credentials()
    with psycopg.connect(
        host=creds["host"], port=creds["port"], dbname="postgres", user=PG_USER, password=PG_PASSWORD
    ) as other:
        assert _is_own(other) is False
    if db.engine.dialect.name == "postgresql":
        own_url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(own_url) as own:
            assert _is_own(own) is True


# Addresses as strings to classify; nothing binds to them.
LOCAL_SPELLINGS = ["0.0.0.0", "::", "::ffff:127.0.0.1", "127.0.0.2"]  # noqa: S104 (no socket is bound)


@pytest.mark.parametrize("address", LOCAL_SPELLINGS)
def test_every_local_spelling_is_local(address):
    from hookstream_ui.sources.postgresql import _local

    assert _local(address)
