"""An HTTP client for long-lived upstream streams that can be closed from outside.

Tornado's shared `AsyncHTTPClient` allows 10 connections at a time: a few
progress streams would starve every ordinary request. Streams therefore go
through their own client with a large `max_clients`, and each stream's
connection can be closed when the caller goes away (`close_upstream`), which
tornado offers no public way to do.
"""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from ..private_apis import ClosableHTTPClient, close_request


class StreamingHTTPClient(ClosableHTTPClient):
    """A separate client instance for streams, with its own connection limit."""

    @classmethod
    def create(cls, max_clients: int = 1000) -> StreamingHTTPClient:
        """A new (not shared) instance; bodies of any size are fine with a streaming_callback."""
        return cls(  # type: ignore[return-value]
            force_instance=True, max_clients=max_clients, max_body_size=1 << 40
        )


def close_upstream(request: HTTPRequest) -> None:
    """Close the upstream connection of a running streamed request, if it has one."""
    close_request(request)


async def fetch_quietly(client: AsyncHTTPClient, request: HTTPRequest) -> HTTPResponse:
    """Fetch without raising: connection failures come back as a 599 response with `error`.

    (Since tornado 6, ``raise_error=False`` still raises for connection errors.)
    """
    try:
        return await client.fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as e:
        return HTTPResponse(request, 599, error=e)
