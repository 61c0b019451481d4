"""AWS credentials found as the AWS SDK finds them: env, files, profiles, container, instance role.

The instance role is served by a local IMDSv2 stand-in on 127.0.0.1 (token PUT, role GET), never
by 169.254.169.254: every test points AWS_EC2_METADATA_SERVICE_ENDPOINT at loopback or disables
the metadata service.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flannelnode import awscreds

TOKEN = "imds-test-token"
ROLE = "flannelnode-builder"
CREDS = {
    "Code": "Success",
    "Type": "AWS-HMAC",
    "AccessKeyId": "ASIATESTTESTTESTTEST",
    "SecretAccessKey": "test-secret",
    "Token": "test-session-token",
    "Expiration": "2099-01-01T00:00:00Z",
    "LastUpdated": "2024-01-01T00:00:00Z",
}


pytestmark = pytest.mark.usefixtures("no_aws")


class _Imds(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]]  # method, path, token header
    hang: threading.Event | None = None

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self.seen.append(
            ("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"))
        )
        if self.hang is not None:
            self.hang.wait(10)  # longer than the SDK waits
            return
        if self.path == "/latest/api/token" and self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._reply(200, TOKEN)
        else:
            self._reply(400, "")

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token", "")
        self.seen.append(("GET", self.path, token))
        if token != TOKEN:
            self._reply(401, "")  # IMDSv2 only: no token, no answer
        elif self.path == "/latest/meta-data/iam/security-credentials/":
            self._reply(200, ROLE)
        elif self.path == f"/latest/meta-data/iam/security-credentials/{ROLE}":
            self._reply(200, json.dumps(CREDS))
        else:
            self._reply(404, "")


@pytest.fixture
def imds() -> Iterator[tuple[str, list, threading.Event]]:
    seen: list[tuple[str, str, str]] = []
    handler = type("Handler", (_Imds,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    release = threading.Event()
    yield f"http://127.0.0.1:{server.server_address[1]}/", seen, release
    release.set()
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_configured_is_none() -> None:
    assert awscreds.find() is None


def test_an_empty_credentials_file_is_not_credentials(no_aws: Path) -> None:
    (no_aws / ".aws").mkdir()
    (no_aws / ".aws" / "credentials").write_text("")
    assert awscreds.find() is None


def test_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert awscreds.find() == "env"


def test_a_partial_key_pair_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    with pytest.raises(awscreds.AwsCredentialsError, match="AWS_SECRET_ACCESS_KEY"):
        awscreds.find()


def test_a_missing_profile_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(awscreds.AwsCredentialsError, match="nosuch"):
        awscreds.find()


def test_shared_credentials_file_named_by_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "elsewhere"
    creds.write_text("[builder]\naws_access_key_id = AKIATEST\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "builder")
    assert awscreds.find() == "shared-credentials-file"


def test_keys_in_the_config_file(no_aws: Path) -> None:
    (no_aws / ".aws").mkdir()
    (no_aws / ".aws" / "config").write_text(
        "[default]\naws_access_key_id = AKIATEST\naws_secret_access_key = s\n"
    )
    assert awscreds.find() == "config-file"


def test_credential_process_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    helper = tmp_path / "creds-helper"
    helper.write_text(
        "#!/bin/sh\necho '"
        + json.dumps({"Version": 1, "AccessKeyId": "AKIATEST", "SecretAccessKey": "s"})
        + "'\n"
    )
    helper.chmod(0o755)
    config = tmp_path / "aws-config"
    config.write_text(f"[profile ci]\ncredential_process = {helper}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "ci")
    assert awscreds.find() == "custom-process"


def test_role_arn_and_sso_profiles_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile base]\naws_access_key_id = AKIATEST\naws_secret_access_key = s\n"
        "[profile builder]\nrole_arn = arn:aws:iam::123456789012:role/packer\n"
        "source_profile = base\n"
        "[profile sso]\nsso_start_url = https://example.awsapps.com/start\n"
        "sso_region = eu-west-1\nsso_account_id = 123456789012\nsso_role_name = packer\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "builder")
    assert awscreds.find() == "assume-role"
    monkeypatch.setenv("AWS_PROFILE", "sso")
    assert awscreds.find() == "sso"


def test_web_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a.b.c")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/packer")
    assert awscreds.find() == "assume-role-with-web-identity"


def test_container_credentials_full_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    class Creds(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({k: CREDS[k] for k in CREDS if k != "Code"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Creds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/creds"
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
        assert awscreds.find() == "container-role"
    finally:
        server.shutdown()
        server.server_close()


def test_instance_role_over_imdsv2(monkeypatch: pytest.MonkeyPatch, imds) -> None:
    url, seen, _ = imds
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    assert awscreds.find() == "iam-role"
    assert seen[0][:2] == ("PUT", "/latest/api/token") and seen[0][2]
    gets = [s for s in seen if s[0] == "GET"]
    assert gets and all(token == TOKEN for _, _, token in gets)
    assert gets[-1][1] == f"/latest/meta-data/iam/security-credentials/{ROLE}"


def test_metadata_disabled_is_not_asked(monkeypatch: pytest.MonkeyPatch, imds) -> None:
    url, seen, _ = imds
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    assert awscreds.find() is None
    assert seen == []


def test_a_hung_metadata_service_is_bounded(monkeypatch: pytest.MonkeyPatch, imds) -> None:
    url, seen, release = imds
    _Imds.hang = release
    try:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
        started = time.monotonic()
        assert awscreds.find() is None
        assert time.monotonic() - started < 5
        assert seen  # it was asked, and given up on
    finally:
        _Imds.hang = None
        release.set()


def test_no_metadata_service_is_none_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{_closed_port()}/")
    started = time.monotonic()
    assert awscreds.find() is None
    assert time.monotonic() - started < 5
