"""Optional bearer tokens: which gRPC methods need which token, decided once for every front.

Two groups, each guarded by its own token file (`--auth-token-file`, `--admin-token-file`):

- repository control (RepositoryModelLoad, RepositoryModelUnload, RepositoryIndex) needs
  `authorization: Bearer <admin token>`; with no admin token set it falls back to the inference
  token, so that a server given one token never leaves its control API open;
- every other method (inference.*, dnnzoo.v1.*, and any method added later: the default is guarded)
  needs `Bearer <inference token>`; the admin token is accepted there too.

Always open, so that probes and tools work without a secret: grpc.health.v1, server reflection,
and the Open Inference Protocol's ServerLive and ServerReady (Triton's health group). A group whose
token is not set is open, as Triton is by default.

Status codes follow gRPC's status-code guide rather than Triton's restricted protocols (which answer
UNAVAILABLE, a code clients are told to retry): a call whose caller cannot be identified (no
token, or a token that is none of ours) gets UNAUTHENTICATED; a known token used where it is not
enough (the inference token on repository control) gets PERMISSION_DENIED. Messages are short and
never echo what the client sent. Tokens are compared with `hmac.compare_digest` so that the time
taken does not tell how much of a guess was right.

`Guard` knows nothing of any transport: the grpc.aio interceptor here and the native front
(`serving.native_front`) both ask `Guard.refusal(method, metadata)`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import grpc

from dnnzoo.errors import UserError

_OIP = "/inference.GRPCInferenceService/"
CONTROL_METHODS = frozenset(_OIP + m for m in ("RepositoryModelLoad", "RepositoryModelUnload", "RepositoryIndex"))
OPEN_METHODS = frozenset((_OIP + "ServerLive", _OIP + "ServerReady"))
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Refusal = tuple[grpc.StatusCode, str]
MISSING = (grpc.StatusCode.UNAUTHENTICATED, "this method needs `authorization: Bearer <token>` metadata")
UNKNOWN = (grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid for this server")
NOT_ADMIN = (grpc.StatusCode.PERMISSION_DENIED, "repository control needs the admin token")


def read_token(path: Path, flag: str) -> bytes:
    """The token in a file, without its surrounding whitespace (the trailing newline of `echo`)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag}: cannot read the token file {path}: {exc}") from None
    if not text:
        raise UserError(f"{flag}: the token file {path} is empty")
    if not all(0x21 <= ord(c) <= 0x7E for c in text):  # it travels as an HTTP/2 header value
        raise UserError(f"{flag}: the token in {path} must be printable ASCII without spaces")
    return text.encode("ascii")


def _bearer(metadata) -> list[bytes]:
    """The credentials of every `authorization: Bearer ...` entry (the scheme is case-insensitive)."""
    found = []
    for key, value in metadata or ():
        if key != "authorization":
            continue
        if isinstance(value, str):
            value = value.encode("latin-1", "replace")
        scheme, _, credentials = value.strip().partition(b" ")
        if scheme.lower() == b"bearer":
            found.append(credentials.strip())
    return found


@dataclass(frozen=True)
class Guard:
    inference: bytes | None = None
    admin: bytes | None = None

    @classmethod
    def from_config(cls, config) -> Guard | None:
        """The guard of a ServeConfig, or None when no token file is set (everything open)."""
        inference = None if config.auth_token_file is None else read_token(config.auth_token_file, "--auth-token-file")
        admin = None if config.admin_token_file is None else read_token(config.admin_token_file, "--admin-token-file")
        if inference is None and admin is None:
            return None
        return cls(inference, admin)

    def accepted(self, method: str) -> tuple[bytes, ...] | None:
        """The tokens that open `method` (the path /package.Service/Method); None when it is open."""
        if method in OPEN_METHODS or method.startswith(OPEN_PREFIXES):
            return None
        if method in CONTROL_METHODS:
            token = self.admin if self.admin is not None else self.inference
            return None if token is None else (token,)
        if self.inference is None:
            return None
        return (self.inference,) if self.admin is None else (self.inference, self.admin)

    def refusal(self, method: str, metadata) -> Refusal | None:
        """None when the call may go on, else the (code, message) to fail it with."""
        accepted = self.accepted(method)
        return None if accepted is None else self.check(accepted, metadata)

    def check(self, accepted: tuple[bytes, ...], metadata) -> Refusal | None:
        """Like `refusal`, with the method's `accepted` tokens looked up before (the native front
        does once per method)."""
        offered = _bearer(metadata)
        if not offered:
            return MISSING
        known = False
        for credentials in offered:
            for token in accepted:
                if hmac.compare_digest(credentials, token):
                    return None
            known = known or any(hmac.compare_digest(credentials, t) for t in (self.inference, self.admin) if t is not None)
        return NOT_ADMIN if known else UNKNOWN


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a grpc.aio call that lacks the token its method needs, before the method runs.

    It goes first among the interceptors. The refusing handler has the refused method's kind
    (unary or streaming either way), reads the request as raw bytes without decoding it, and fails
    the call with the guard's status.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_service(self, continuation, handler_call_details):
        refusal = self.guard.refusal(handler_call_details.method, handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        if refusal is None or handler is None:
            return handler
        return _refusing(handler, *refusal)


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(_request, context):
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
