"""A Key Vault stand-in for local runs when Lowkey Vault's jar cannot be had.

It serves the part of the Azure Key Vault REST API that the secret backend uses (set, get and
list secrets, API 7.x, bearer challenge) over HTTPS, and an App Service-style managed identity
token endpoint, so the real azure-identity and azure-keyvault-secrets clients run unchanged
against it. Tokens are issued only to callers presenting the identity header; the vault accepts
only issued tokens. State lives in memory. Standard library only.

Usage: keyvault_standin.py VAULT_PORT TOKEN_PORT CERT_PEM KEY_PEM IDENTITY_HEADER_FILE
"""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SECRET_VALUES: dict[str, tuple[str, str]] = {}  # name -> (version, value)
TOKENS: dict[str, float] = {}  # token -> expiry
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no request lines: values never logged
        pass

    def reply(self, code: int, body: object | None = None, headers: dict[str, str] | None = None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class VaultHandler(Handler):
    def base(self) -> str:
        return f"https://{self.headers.get('Host')}"

    def authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        with LOCK:
            return auth.startswith("Bearer ") and TOKENS.get(token, 0) > time.time()

    def route(self, method: str) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/")
        if path == "/ping":
            return self.reply(200, {"status": "ok"})
        if not self.authorised():
            challenge = (
                f'Bearer authorization="{self.base()}", resource="{self.base()}", '
                f'scope="{self.base()}/.default"'
            )
            return self.reply(
                401,
                {
                    "error": {
                        "code": "Unauthorized",
                        "message": "AKV10000: Request is missing a valid bearer token.",
                    }
                },
                {"WWW-Authenticate": challenge},
            )
        parts = path.split("/")
        if path == "/secrets" and method == "GET":
            with LOCK:
                items = [
                    {"id": f"{self.base()}/secrets/{name}", "attributes": {"enabled": True}}
                    for name in sorted(SECRET_VALUES)
                ]
            return self.reply(200, {"value": items, "nextLink": None})
        if len(parts) in (3, 4) and parts[1] == "secrets":
            name = parts[2]
            if method == "PUT" and len(parts) == 3:
                length = int(self.headers.get("Content-Length", "0"))
                value = json.loads(self.rfile.read(length))["value"]
                with LOCK:
                    SECRET_VALUES[name] = (uuid.uuid4().hex, value)
                return self.reply(200, self.bundle(name))
            if method == "GET":
                with LOCK:
                    found = name in SECRET_VALUES
                if not found:
                    return self.reply(
                        404,
                        {
                            "error": {
                                "code": "SecretNotFound",
                                "message": f"A secret named {name} was not found.",
                            }
                        },
                    )
                return self.reply(200, self.bundle(name))
        return self.reply(404, {"error": {"code": "NotFound", "message": "no such operation"}})

    def bundle(self, name: str) -> dict[str, object]:
        with LOCK:
            version, value = SECRET_VALUES[name]
        now = int(time.time())
        return {
            "id": f"{self.base()}/secrets/{name}/{version}",
            "value": value,
            "attributes": {"enabled": True, "created": now, "updated": now},
        }

    def do_GET(self) -> None:
        self.route("GET")

    def do_PUT(self) -> None:
        self.route("PUT")


def token_handler(identity_header: str) -> type[Handler]:
    class TokenHandler(Handler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/metadata/identity/oauth2/token":
                return self.reply(404, {"error": "not_found"})
            if self.headers.get("X-IDENTITY-HEADER") != identity_header:
                return self.reply(
                    401,
                    {
                        "error": "invalid_identity",
                        "error_description": "X-IDENTITY-HEADER is missing or wrong",
                    },
                )
            token = secrets.token_urlsafe(24)
            expires = int(time.time()) + 3600
            with LOCK:
                TOKENS[token] = expires
            resource = parse_qs(url.query).get("resource", [""])[0]
            return self.reply(
                200,
                {
                    "access_token": token,
                    "expires_on": str(expires),
                    "resource": resource,
                    "token_type": "Bearer",
                },
            )

    return TokenHandler


def main(argv: list[str]) -> None:
    vault_port, token_port, cert, key, header_file = argv
    with open(header_file, encoding="utf-8") as f:
        identity_header = f.read().strip()
    vault = ThreadingHTTPServer(("127.0.0.1", int(vault_port)), VaultHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    vault.socket = context.wrap_socket(vault.socket, server_side=True)
    tokens = ThreadingHTTPServer(("127.0.0.1", int(token_port)), token_handler(identity_header))
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    print(
        f"key vault stand-in: https://localhost:{vault_port}, tokens on 127.0.0.1:{token_port}",
        flush=True,
    )
    vault.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
