"""A stand-in identity provider for tests: real RSA and EC key pairs, tokens signed with them,
and their JWKS served over real HTTP (`http.server` on port 0, in a thread), with a count of
fetches so tests can see caching and rotation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.test/"
AUDIENCE = "ferry-api"


@dataclass
class SigningKey:
    kid: str
    algorithm: str  # RS256 or ES256
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.algorithm == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def token(
        self,
        sub: str,
        *,
        issuer: str | None = ISSUER,
        audience: str | None = AUDIENCE,
        ttl: timedelta = timedelta(minutes=5),
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {"sub": sub, "exp": datetime.now(UTC) + ttl, **claims}
        if issuer is not None:
            body["iss"] = issuer
        if audience is not None:
            body["aud"] = audience
        return jwt.encode(body, self.private, self.algorithm, headers={"kid": self.kid})


@dataclass
class JwksServer:
    """The published key set; tests change `keys` to rotate. `fetches` counts GETs."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> bytes:
        with self.lock:
            self.fetches += 1
            return json.dumps({"keys": [key.public_jwk() for key in self.keys]}).encode()


@contextmanager
def serve_jwks(*keys: SigningKey) -> Iterator[JwksServer]:
    published = JwksServer(keys=list(keys))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            body = published.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    published.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield published
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
