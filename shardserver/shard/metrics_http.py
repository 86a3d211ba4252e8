"""The Prometheus endpoint: ``GET /metrics`` (all shards) and ``GET /metrics?shard=<i>``.

Whichever shard accepts the scrape gathers every shard's snapshot over the
fabric (``METRICS`` verb) and renders the text exposition format, each
series labelled ``shard="<i>"``.  Aggregation is the scraper's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from urllib.parse import parse_qs

import orjson

from shardserver.protocol import compression
from shardserver.protocol.http import HttpError, RequestParser, build_response

log = logging.getLogger("shardserver.metrics")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
COMPRESSION_THRESHOLD = 4096


async def render_metrics(service, query: str) -> tuple[int, bytes]:
    from shardserver.shard import stats as stats_module
    from shardserver.shard.service import METRICS
    params = parse_qs(query)
    if "shard" in params:
        try:
            shard = int(params["shard"][0])
        except ValueError:
            return 400, b"shard must be a number\n"
        if not 0 <= shard < service.nshards:
            return 404, f"no shard {shard}: this server has shards 0..{service.nshards - 1}\n".encode()
        targets = [shard]
    else:
        targets = list(range(service.nshards))
    snapshots = []
    for shard in targets:
        try:
            snapshots.append(orjson.loads(await service.submit_to(shard, METRICS, b"")))
        except Exception as exc:      # a restarting shard must not break the scrape of the others
            log.debug("metrics of shard %d unavailable: %s", shard, exc)
    return 200, stats_module.render(snapshots).encode()


class MetricsProtocol(asyncio.Protocol):
    """One scrape connection.  Requests are answered one after the other, in
    arrival order: a gathered scrape awaits the other shards, and a quick
    404 pipelined behind it must not overtake it."""

    def __init__(self, service):
        self.service = service
        self.parser = RequestParser()
        self.transport = None
        self.queue: deque = deque()
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.queue.clear()

    def data_received(self, data: bytes):
        try:
            requests = self.parser.feed(data)
        except HttpError:
            self.transport.close()
            return
        self.queue.extend(requests)
        if self.queue and not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self):
        try:
            while self.queue and not self.transport.is_closing():
                request = self.queue.popleft()
                response = await self._answer(request)
                if self.transport.is_closing():
                    return
                self.transport.write(response)
                if not request.keep_alive:
                    self.transport.close()
                    return
        finally:
            self.busy = False

    async def _answer(self, request) -> bytes:
        path, _, query = request.path.decode("latin-1").partition("?")
        head = request.method == b"HEAD"
        encoding = None
        if request.method not in (b"GET", b"HEAD") or path != "/metrics":
            status, body, kind = 404, b"try GET /metrics\n", b"text/plain"
        else:
            status, body = await render_metrics(self.service, query)
            kind = CONTENT_TYPE if status == 200 else b"text/plain"
            accept = request.headers.get("accept-encoding")
            if status == 200 and accept:
                # Prometheus asks for gzip; a 2-shard scrape is tens of kB of text.
                body, encoding = compression.encode_response(body, accept, COMPRESSION_THRESHOLD)
        response = build_response(status, body, content_type=kind, crc32=False,
                                  keep_alive=request.keep_alive,
                                  content_encoding=encoding.encode() if encoding else None)
        return response[:len(response) - len(body)] if head else response
