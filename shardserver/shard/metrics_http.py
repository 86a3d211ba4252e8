"""The Prometheus endpoint: ``GET /metrics`` (all shards) and ``GET /metrics?shard=<i>``.

Whichever shard accepts the scrape gathers every shard's snapshot over the
fabric (``METRICS`` verb) and renders the text exposition format, each
series labelled ``shard="<i>"``.  Aggregation is the scraper's job.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

import orjson

from shardserver.protocol.http import HttpError, RequestParser, build_response

log = logging.getLogger("shardserver.metrics")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


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
    def __init__(self, service):
        self.service = service
        self.parser = RequestParser()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        try:
            requests = self.parser.feed(data)
        except HttpError:
            self.transport.close()
            return
        for request in requests:
            asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, request):
        path, _, query = request.path.decode("latin-1").partition("?")
        if request.method != b"GET" or path != "/metrics":
            status, body, kind = 404, b"try GET /metrics\n", b"text/plain"
        else:
            status, body = await render_metrics(self.service, query)
            kind = CONTENT_TYPE
        if not self.transport.is_closing():
            self.transport.write(build_response(status, body, content_type=kind, crc32=False,
                                                keep_alive=request.keep_alive))
            if not request.keep_alive:
                self.transport.close()
