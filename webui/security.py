"""HTTP security headers on every response of the app (an ASGI middleware on Gradio's FastAPI app).

The Content-Security-Policy is what Gradio's page works under: Gradio puts its configuration in
inline scripts and runs event ``js`` snippets (``KEYBOARD_JS``, the localStorage mirrors) as
functions built from strings, so scripts need ``'unsafe-inline'`` and ``'unsafe-eval'``; everything
else is held to this origin (plus ``data:``/``blob:`` images, media and workers), no plugins, no
``<base>`` rewriting and no framing by other sites. The page still loads no third-party resource
(Gradio's web fonts fall back to local ones), and nothing it fetches can go to another host.
"""

from __future__ import annotations

from typing import Any

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Added to every HTTP response that does not set the header itself."""


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response (streamed ones too)."""

    def __init__(self, app: Any, headers: dict[str, str] | None = None) -> None:
        self.app = app
        raw = (headers if headers is not None else SECURITY_HEADERS).items()
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
