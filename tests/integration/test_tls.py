"""`lapis serve --tls`: a local CA and server certificate that the real
clients accept, and the service-principal flow that needs it (azure-identity
refuses an http:// authority): ClientSecretCredential with
disable_instance_discovery=True, then the openai client with the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION, start_server

TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"

SERVICE_PRINCIPAL = r"""
import json, os
from azure.identity import ClientSecretCredential, get_bearer_token_provider
from openai import AzureOpenAI
credential = ClientSecretCredential(os.environ["TENANT"], os.environ["APP_ID"], os.environ["SECRET"],
                                    authority=os.environ["AUTHORITY"], disable_instance_discovery=True)
provider = get_bearer_token_provider(credential, "https://cognitiveservices.azure.com/.default")
client = AzureOpenAI(azure_endpoint=os.environ["ENDPOINT"], api_version="2024-10-21", azure_ad_token_provider=provider,
                     max_retries=0)
chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                             stream=True))
print(json.dumps({"text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)}))
"""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("tls"), demo=True, tls=True)
    yield server
    server.stop()


def test_certificates_are_what_clients_need(tls_server):
    ca = x509.load_pem_x509_certificate((tls_server.home / "tls" / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificates((tls_server.home / "tls" / "server.pem").read_bytes())[0]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (tls_server.home / "tls" / "server-key.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the CA
        requests.get(f"{tls_server.url}/healthz", timeout=10)


def test_endpoint_is_https_and_the_cli_follows(tls_server, tmp_path):
    env = tls_server.demo_env()
    assert env["AZURE_OPENAI_ENDPOINT"].startswith("https://127.0.0.1:")
    accounts = Cli(tls_server.home, tmp_path / "cli").json("cognitiveservices", "account", "list")
    assert [a["name"] for a in accounts] == ["lapis-demo"]


def test_service_principal_over_https_with_openai(tls_server, tmp_path):
    admin = {"Authorization": f"Bearer {tls_server.admin_token}"}
    sp = requests.post(f"{tls_server.url}/lapis/admin/servicePrincipals", json={"displayName": "tls-app"},
                       headers=admin, timeout=10, verify=tls_server.verify).json()
    token = requests.post(f"{tls_server.url}/{TENANT}/oauth2/v2.0/token", verify=tls_server.verify, timeout=10, data={
        "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
        "scope": "https://cognitiveservices.azure.com/.default"}).json()["access_token"]
    import jwt

    oid = jwt.decode(token, options={"verify_signature": False})["oid"]
    scope = tls_server.account_path("lapis-demo", "lapis-demo")
    assert tls_server.arm("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}", {
        "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                                           f"roleDefinitions/{OPENAI_USER}", "principalId": oid,
                       "principalType": "ServicePrincipal"}}, api_version="2022-04-01").status_code == 201
    ca = str(tls_server.home / "tls" / "ca.pem")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "LAPIS_", "OPENAI_"))}
    env.update(REQUESTS_CA_BUNDLE=ca, SSL_CERT_FILE=ca, TENANT=TENANT, APP_ID=sp["appId"], SECRET=sp["password"],
               AUTHORITY=tls_server.url, ENDPOINT=tls_server.demo_env()["AZURE_OPENAI_ENDPOINT"])
    done = subprocess.run([sys.executable, "-c", SERVICE_PRINCIPAL], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["text"]


def test_cloud_metadata_for_az_cloud_register(tls_server):
    meta = requests.get(f"{tls_server.url}/metadata/endpoints", params={"api-version": "2022-09-01"},
                        verify=tls_server.verify, timeout=10).json()
    assert meta["name"] and isinstance(meta["suffixes"], dict)
    assert meta["authentication"]["loginEndpoint"] == tls_server.url
    assert meta["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert meta["resourceManager"] == f"{tls_server.url}/"
