"""The HTTP listener: aiohttp's run_app life cycle, plus bounds on slow and piled-up clients.

- A request's headers must be complete within the header timeout of the connection opening
  (or of the previous response). aiohttp's keep-alive timer closes a handler still waiting for
  a request, which an incomplete request is; it is not extended by bytes trickling in.
- A request body must arrive within the body timeout (`body_timeout_middleware`).
- One client address holds at most `per_address` connections that have not become a WebSocket;
  further ones are closed at once. Trusted proxies are exempt (the proxy limits its clients).

Before, 1,500 half-open requests were all held for 75 s (run_app's keep-alive timeout; aiohttp's
own default is an hour).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from server.fhir_outcome import FHIR_JSON, is_fhir, issue_code, outcome_body

logger = logging.getLogger(__name__)


class ConnectionLimiter:
    """Open, not-yet-upgraded connections per client address, capped."""

    def __init__(self, per_address: int, exempt: Collection[str] = ()) -> None:
        self._per_address = per_address
        self._exempt = frozenset(exempt)
        self._open: dict[str, int] = {}
        self._counted: dict[RequestHandler, str] = {}
        self.refused = 0

    def install(self, server: web.Server) -> None:
        """Count the connections `server` makes and loses (call before any site starts)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._admit(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None) -> None:
            self.release(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign, assignment]

    def _admit(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if address is None or address in self._exempt:
            return
        count = self._open.get(address, 0)
        if count >= self._per_address:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                # No address: it may be personal data, and the access log has it anyway.
                logger.warning(
                    "refused %d connections from addresses over the limit of %d",
                    self.refused,
                    self._per_address,
                )
            transport.close()
            return
        self._open[address] = count + 1
        self._counted[handler] = address

    def release(self, handler: RequestHandler) -> None:
        """No longer count `handler`: it closed, or it became a WebSocket."""
        address = self._counted.pop(handler, None)
        if address is None:
            return
        count = self._open[address] - 1
        if count:
            self._open[address] = count
        else:
            del self._open[address]

    async def release_upgraded(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: a connection that becomes a WebSocket no longer counts (its
        session has its own join timeout)."""
        if isinstance(response, web.WebSocketResponse) and request.protocol is not None:
            self.release(request.protocol)

    def open_connections(self, address: str) -> int:
        return self._open.get(address, 0)


def body_timeout_middleware(timeout: float) -> Any:
    """Read the whole body (at most client_max_size) within `timeout`, before any handler."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                return await _refuse_slow_body(request)
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


async def _refuse_slow_body(request: web.Request) -> web.StreamResponse:
    """408, sent at once, then the connection closed: aiohttp would otherwise linger (10 s)
    reading the rest of a body that is not coming."""
    message = "the request body did not arrive in time"
    response: web.Response
    if request.path.startswith("/api/"):
        body = {"error": {"code": "http-408", "message": message}}
        response = web.json_response(body, status=408)
    elif is_fhir(request):
        body = outcome_body(issue_code(408), message)
        response = web.json_response(body, status=408, content_type=FHIR_JSON)
    else:
        response = web.Response(status=408, text=message)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.protocol is not None:
        request.protocol.force_close()
    return response


def _cancel(tasks: Collection[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
    # A task that already ended has raised to its caller (a bad trust file, say): not again here.
    tasks = [task for task in tasks if not task.done()]
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "error while stopping", "exception": task.exception(), "task": task}
            )


class BadRequestsInOneLine(logging.Filter):
    """aiohttp logs a request its parser refuses (a NUL byte in a header, ...) with a traceback,
    though the client got its 400: one line without the request's content says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed HTTP request refused (%s)", (type(exc).__name__,)
        return True


def run(
    app: web.Application,
    *,
    host: str,
    port: int,
    limiter: ConnectionLimiter,
    header_timeout: float,
    announce: Callable[[], None],
    reuse_port: bool | None,
    access_log_format: str,
    shutdown_timeout: float,
    drain: Callable[[], Coroutine[Any, Any, None]],
    drain_timeout: float,
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
) -> None:
    """Serve until SIGTERM or SIGINT, with the limiter on the server; then `drain` while every
    socket is still read (aiohttp's own shutdown stops reading them), and only then stop. A
    second signal stops at once."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    logging.getLogger("aiohttp.server").addFilter(BadRequestsInOneLine())

    async def serve() -> None:
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log_format=access_log_format,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=header_timeout,
        )
        await runner.setup()
        assert runner.server is not None
        limiter.install(runner.server)
        try:
            # Before "listening" is announced: a SIGTERM from then on drains, never kills.
            stop = asyncio.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
            announce()
            await stop.wait()
            logger.info("stopping: draining first (up to %.0f s)", drain_timeout)
            draining = asyncio.create_task(drain())
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, draining.cancel)
            await asyncio.wait({draining})
            if not draining.cancelled() and draining.exception() is not None:
                logger.error("the drain failed; stopping", exc_info=draining.exception())
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except KeyboardInterrupt:
        pass
    finally:
        _cancel({main}, loop)
        _cancel(asyncio.all_tasks(loop), loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
