"""Transport failures over real loopback connections, on both kinds and both exchanges.

A whole attempt is bounded by ``timeout_s`` (a server trickling bytes cannot hold a call), and a call
that got no response says what happened: refused, unknown host, TLS refused, closed by the server.
Also: the request id falls back to a gateway's header, then to the body's ``id``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import closed_port_url, provider_config

from providers.config import ProviderConfig
from providers.factory import open_provider
from providers.result import CallResult
from simulator import FaultRule, RunningSimulator

PROMPT = [{"role": "user", "content": "Name three primary colours."}]
KINDS = ["openai", "anthropic"]
EXCHANGES = ["default", "aiohttp"]
MARGIN_S = 5.0  # a loaded 2-core machine: generous, the old clients took ~120 s
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=EXCHANGES)
def http_client(request: pytest.FixtureRequest) -> str:
    """The provider's HTTP exchange under test."""
    return request.param


@pytest.fixture(autouse=True)
def _environment(fake_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake keys, and no proxy: every call goes straight to its server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _config(base_url: str, kind: str, http_client: str, **extra: Any) -> ProviderConfig:
    """A provider on ``base_url`` (the host root; ``/v1`` is added for OpenAI), no retries unless given."""
    values: dict[str, Any] = {"max_retries": 0, "backoff_initial_s": 0.01, "timeout_s": 10} | extra
    url = base_url + ("/v1" if kind == "openai" else "")
    return ProviderConfig(source_id="src", kind=kind, model="m", base_url=url, http_client=http_client, **values)


async def _acall(config: ProviderConfig) -> CallResult:
    provider = await open_provider(config)
    try:
        return await provider.call(PROMPT, None)
    finally:
        await provider.aclose()


def _call(config: ProviderConfig) -> CallResult:
    return asyncio.run(_acall(config))


@asynccontextmanager
async def _server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A raw TCP (or TLS) server on 127.0.0.1 in the running loop; yields its root URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    await reader.readexactly(length)


def _trickler(part: str) -> Handler:
    """A server that sends one byte every 0.5 s: of the status line and headers, or of a 10 kB body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            if part == "body":
                writer.write(head)
            for byte in head if part == "headers" else b" " * 10000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_server_times_out_within_timeout_s(kind: str, http_client: str, part: str) -> None:
    timeout_s = 1.5

    async def go() -> tuple[CallResult, float]:
        async with _server(_trickler(part)) as url:
            started = time.monotonic()
            result = await _acall(_config(url, kind, http_client, timeout_s=timeout_s))
            return result, time.monotonic() - started

    result, elapsed = asyncio.run(go())
    assert not result.ok and result.error_type == "timeout", result.error
    assert result.error == f"timed out after {timeout_s:g} s" and result.attempts == 1
    # Every read got a byte within 0.5 s: only a limit on the whole attempt ends it.
    assert 0.9 * timeout_s <= elapsed < timeout_s + MARGIN_S


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_connection_says_so(kind: str, http_client: str) -> None:
    url = closed_port_url()
    result = _call(_config(url, kind, http_client, max_retries=1))
    assert not result.ok and result.error_type == "connection" and result.attempts == 2  # retried
    assert result.error == f"connection refused ({url.removeprefix('http://')})"


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_host_says_so(kind: str, http_client: str) -> None:
    started = time.monotonic()
    result = _call(_config("http://nonexistent.invalid", kind, http_client, max_retries=1))
    assert not result.ok and result.error_type == "connection" and result.attempts == 2  # retried
    assert result.error == "cannot resolve host 'nonexistent.invalid'"
    assert time.monotonic() - started < 10 + MARGIN_S  # .invalid fails locally (RFC 2606), here in ms


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 and localhost."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(names, critical=False)
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.mark.parametrize("kind", KINDS)
def test_an_untrusted_certificate_is_a_tls_error_and_not_retried(
    kind: str, http_client: str, self_signed: ssl.SSLContext
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # the client refuses the handshake before any request

    async def go() -> tuple[CallResult, str]:
        async with _server(handle, self_signed) as url:
            return await _acall(_config(url, kind, http_client, max_retries=2)), url

    result, url = asyncio.run(go())
    assert not result.ok and result.error_type == "tls" and result.attempts == 1  # a bad certificate stays bad
    address = url.removeprefix("https://")
    assert result.error == f"TLS error: certificate verify failed: self-signed certificate ({address})"


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_connection_says_the_server_closed_it(sim: RunningSimulator, kind: str, http_client: str) -> None:
    sim.configure(faults=[FaultRule(kind="drop")])
    result = _call(provider_config(sim, kind, http_client=http_client, max_retries=0))
    assert not result.ok and result.error_type == "connection"
    assert result.error == "connection lost: closed by the server"


@pytest.fixture
def request_id_sim(sim: RunningSimulator) -> Iterator[RunningSimulator]:
    """The simulator; its request id header is back to the provider's own after the test."""
    yield sim
    sim.configure(request_id_header="provider")


# What the request id looks like for each ``request_id_header`` of the simulator (None: the body's id).
REQUEST_IDS = {
    "provider": r"req_[0-9a-f]{24}",  # x-request-id / request-id
    "gateway": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",  # x-litellm-call-id
    "none": None,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", list(REQUEST_IDS))
def test_the_request_id_falls_back_to_a_gateways_then_to_the_body_id(
    request_id_sim: RunningSimulator, kind: str, http_client: str, header: str
) -> None:
    request_id_sim.configure(request_id_header=header)
    result = _call(provider_config(request_id_sim, kind, http_client=http_client))
    assert result.ok, result.error
    body_id = r"chatcmpl-[0-9a-f]{24}" if kind == "openai" else r"msg_01[0-9a-f]{24}"
    assert re.fullmatch(REQUEST_IDS[header] or body_id, result.request_id or ""), result.request_id
