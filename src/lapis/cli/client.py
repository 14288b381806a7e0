"""The CLI's HTTP client: finds the server, sends ARM and admin requests.

The server writes LAPIS_HOME/server.json ({"url", "admin_token", "pid"}) once
it listens; the CLI reads it, so no flags are needed. LAPIS_URL (settings
`server_url`) overrides the URL; the admin credential always comes from the
file. Every failure, from a refused connection to an Azure error body, is
raised as `CliError`, which `main()` prints the way az does.

Errors:
    CliError        what the user sees: a message, and the ARM code when there is one
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from lapis.settings import Settings
from lapis.settings import load as load_settings

ARM_API = "2025-06-01"  # Microsoft.CognitiveServices
RESOURCES_API = "2021-04-01"  # Microsoft.Resources: providers and groups
SUBSCRIPTIONS_API = "2022-12-01"
TIMEOUT = (5, 60)  # connect, read (seconds)
START_HINT = "Start it with `lapis serve` (or `make run` in the Lapis repository)."


class CliError(Exception):
    """A failure to report: `code` is Azure's error code when the server sent one."""

    def __init__(self, message: str, code: str | None = None, target: str | None = None,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.target = target
        self.details = details or []

    def render(self) -> str:
        """az's form (azure-core's HttpResponseError): `(Code) message`, then Code and Message lines."""
        if not self.code:
            return f"ERROR: {self.message}"
        lines = [f"ERROR: ({self.code}) {self.message}", f"Code: {self.code}", f"Message: {self.message}"]
        if self.target:
            lines.append(f"Target: {self.target}")
        for detail in self.details:
            if isinstance(detail, dict):
                lines.append(f"Exception Details:\t({detail.get('code')}) {detail.get('message')}")
                lines.append(f"\tCode: {detail.get('code')}")
                lines.append(f"\tMessage: {detail.get('message')}")
                if detail.get("target"):
                    lines.append(f"\tTarget: {detail.get('target')}")
        return "\n".join(lines)


def path(*segments: str) -> str:
    """'/a/b/c' from raw segments, each percent-encoded (names may hold spaces)."""
    return "".join("/" + quote(str(s), safe="") for s in segments)


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    admin_token: str
    ca: str | None = None  # the local CA of a --tls server: what https calls verify against


def find_server(settings: Settings | None = None) -> Server:
    """The server to talk to: server.json in LAPIS_HOME, with LAPIS_URL winning for the URL."""
    settings = settings or load_settings()
    file = settings.server_file
    try:
        info = json.loads(file.read_text())
    except FileNotFoundError:
        where = f" (LAPIS_URL is {settings.server_url})" if settings.server_url else ""
        raise CliError(f"No Lapis server found: {file} does not exist{where}. Is the server running? "
                       f"{START_HINT} If it runs with another LAPIS_HOME, set LAPIS_HOME to that folder.") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read {file}: {exc}. {START_HINT}") from None
    if not isinstance(info, dict) or not info.get("admin_token"):
        raise CliError(f"{file} holds no admin credential. Restart the server to rewrite it. {START_HINT}")
    url = settings.server_url or str(info.get("url") or "")
    if not url:
        raise CliError(f"{file} holds no server URL; set LAPIS_URL or restart the server. {START_HINT}")
    return Server(url=url.rstrip("/"), admin_token=str(info["admin_token"]), ca=info.get("ca") or None)


def _error_from(response: requests.Response) -> CliError:
    """Azure's ErrorResponse ({"error": {"code", "message", "target", "details"}}) as a CliError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        code = str(error.get("code") or response.status_code)
        details = error.get("details") if isinstance(error.get("details"), list) else None
        return CliError(str(error.get("message") or response.reason), code, error.get("target"), details)
    text = response.text.strip() or response.reason or "no body"
    return CliError(f"Operation returned an invalid status '{response.status_code} {response.reason}': {text}",
                    str(response.status_code))


class Client:
    """One CLI invocation's connection to the management API."""

    def __init__(self, server: Server | None = None, session: requests.Session | None = None):
        self._server = server
        self.session = session or requests.Session()

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = find_server()
        return self._server

    def request(self, method: str, url_path: str, body: Any = None, api_version: str | None = ARM_API) -> Any:
        """Send one request; the parsed JSON body (None when empty). Non-2xx raises CliError."""
        server = self.server
        url = f"{server.url}{url_path}"
        headers = {"Authorization": f"Bearer {server.admin_token}", "Accept": "application/json",
                   "User-Agent": "lapis-cli", "x-ms-client-request-id": str(uuid.uuid4())}
        params = {"api-version": api_version} if api_version else None
        try:
            response = self.session.request(method, url, params=params, json=body, headers=headers,
                                            timeout=TIMEOUT, verify=server.ca or True)
        except requests.ConnectionError:
            raise CliError(f"Cannot reach the Lapis server at {server.url}: the connection was refused or "
                           f"dropped. Is it running? {START_HINT}") from None
        except requests.Timeout:
            raise CliError(f"The Lapis server at {server.url} did not answer in time.") from None
        except requests.RequestException as exc:
            raise CliError(f"Cannot call the Lapis server at {server.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"The server at {server.url} answered {method} {url_path} with a body that is not "
                           "JSON.") from None

    def get(self, url_path: str, api_version: str | None = ARM_API) -> Any:
        return self.request("GET", url_path, api_version=api_version)

    def value(self, url_path: str, api_version: str | None = ARM_API) -> list[Any]:
        """A list operation's `value`, unwrapped as az prints it."""
        body = self.get(url_path, api_version) or {}
        return list(body.get("value") or []) if isinstance(body, dict) else list(body)
