"""``mqtts://`` against a real Mosquitto TLS listener that the test starts on 127.0.0.1 with a
throwaway CA, server and client certificates (made with ``cryptography``): one listener
checks only the server, the other also asks for a client certificate."""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loopml.data import ingest_stream, load_table
from loopml.data.sources import source_for
from loopml.data.streams import MqttSource
from loopml.errors import InvalidInputError, StoreError
from loopml.workspace import Workspace
from tests.conftest import service_unavailable

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Broker:
    server_port: int  # TLS, server certificate only
    mutual_port: int  # TLS, a client certificate required
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save_key(key: Any, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def save_cert(cert: Any, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def issue(ca_key: Any, ca_cert: Any, cn: str, usage: Any, san: list[Any]) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = make_ca("loopml test CA")
    server_key, server_cert = issue(
        ca_key,
        ca_cert,
        HOST,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")],
    )
    client_key, client_cert = issue(
        ca_key, ca_cert, "loopml-client", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    _, other_cert = make_ca("another CA")
    return {
        "ca": save_cert(ca_cert, folder / "ca.pem"),
        "server_cert": save_cert(server_cert, folder / "server.pem"),
        "server_key": save_key(server_key, folder / "server.key"),
        "cert": save_cert(client_cert, folder / "client.pem"),
        "key": save_key(client_key, folder / "client.key"),
        "other_ca": save_cert(other_cert, folder / "other-ca.pem"),
    }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        service_unavailable("the mosquitto binary is not installed (apt-get install mosquitto)")
    try:
        import cryptography  # noqa: F401
        import paho.mqtt.client  # noqa: F401
    except ImportError as exc:
        service_unavailable(f"{exc.name} is not installed: pip install -e '.[dev]'")
    folder = tmp_path_factory.mktemp("mqtts")
    pki = _pki(folder)
    server_port, mutual_port = _free_port(), _free_port()
    tls = (
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "allow_anonymous true\n"
    )
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"per_listener_settings true\npersistence false\nuser {getpass.getuser()}\n"
        f"listener {server_port} {HOST}\n{tls}"
        f"listener {mutual_port} {HOST}\n{tls}require_certificate true\n"
    )
    log = folder / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                service_unavailable(f"mosquitto exited ({proc.returncode}): {log.read_text()}")
            try:
                for port in (server_port, mutual_port):
                    socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    service_unavailable(f"mosquitto did not listen: {log.read_text()}")
                time.sleep(0.1)
        yield Broker(server_port, mutual_port, pki["ca"], pki["cert"], pki["key"], pki["other_ca"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def publish(broker: Broker, port: int, topic: str, payloads: list[str]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.tls_set(ca_certs=str(broker.ca), certfile=str(broker.cert), keyfile=str(broker.key))
    client.connect(HOST, port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def topic() -> str:
    return f"loopml/tls/{uuid.uuid4().hex[:12]}"


def test_mqtts_with_a_client_certificate_ingests_every_message(
    broker: Broker, workspace: Workspace
) -> None:
    name = topic()
    uri = f"mqtts://{HOST}:{broker.mutual_port}/{name}?client_id=c-{uuid.uuid4().hex[:8]}"
    source = source_for(
        uri, ca_file=str(broker.ca), cert_file=str(broker.cert), key_file=str(broker.key)
    )
    assert isinstance(source, MqttSource)
    assert source.describe() == f"mqtts://{HOST}:{broker.mutual_port}/{name}"
    assert source.poll(1, 0.5) is None  # connected and subscribed
    publish(broker, broker.mutual_port, name, [f'{{"i": {i}}}' for i in range(6)])
    results = ingest_stream(workspace, source, "events", max_records=6, idle_timeout=15)
    assert sum(r.dataset.num_rows for r in results if r.created) == 6
    assert sorted(load_table(workspace, "events").column("i").to_pylist()) == list(range(6))
    assert results[-1].dataset.source.startswith("mqtts://")


def test_mqtts_options_in_the_url_and_the_command_line(
    broker: Broker, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from loopml.cli.main import main

    name, client_id = topic(), f"c-{uuid.uuid4().hex[:8]}"
    uri = f"mqtts://{HOST}:{broker.server_port}/{name}?client_id={client_id}&ca_file={broker.ca}"
    first = source_for(uri)  # the persistent session exists before anything is published
    assert first.poll(1, 0.5) is None
    first.close()
    publish(broker, broker.server_port, name, ['{"i": 1}', '{"i": 2}'])
    bare = f"mqtts://{HOST}:{broker.server_port}/{name}?client_id={client_id}"
    code = main(
        [
            "data",
            "ingest",
            bare,
            "--name",
            "tls_events",
            "--ca-file",
            str(broker.ca),
            "--max-records",
            "2",
            "--idle-timeout",
            "15",
            "-w",
            str(workspace.root),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert sorted(load_table(workspace, "tls_events").column("i").to_pylist()) == [1, 2]


def test_a_wrong_ca_or_a_missing_client_certificate_is_a_one_line_error(broker: Broker) -> None:
    wrong = MqttSource(
        f"mqtts://{HOST}:{broker.server_port}/{topic()}", ca_file=str(broker.other_ca)
    )
    with pytest.raises(StoreError) as info:
        wrong.poll(1, 0.5)
    assert "TLS handshake failed" in info.value.message
    assert f"mqtts://{HOST}:{broker.server_port}/" in info.value.message
    assert "--ca-file" in (info.value.hint or "")
    no_cert = MqttSource(f"mqtts://{HOST}:{broker.mutual_port}/{topic()}", ca_file=broker.ca)
    with pytest.raises(StoreError) as info:
        no_cert.poll(1, 2.0)
    assert info.value.where["source"].startswith(f"mqtts://{HOST}:{broker.mutual_port}/")
    no_cert.close()


def test_tls_options_are_checked_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="ca_file is for TLS connections"):
        MqttSource(f"mqtt://{HOST}:1883/t", ca_file=str(tmp_path))
    with pytest.raises(InvalidInputError) as info:
        MqttSource(f"mqtts://{HOST}/t", ca_file=str(tmp_path / "nope.pem"))
    assert info.value.where["field"] == "ca_file"
    assert "--ca-file" in (info.value.hint or "")
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(InvalidInputError, match="key file without its certificate"):
        MqttSource(f"mqtts://{HOST}/t", key_file=str(key))
    assert MqttSource(f"mqtts://{HOST}/t").port == 8883
