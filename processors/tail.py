"""`pipepulse tail`: read a stream and print each entry as one JSON line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator

import redis

from schemas import RejectedEntry, decode_batch
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, unpack_tick


def event_lines(stream_id: str, fields: dict[bytes, bytes]) -> Iterator[dict[str, Any]]:
    """One dict per event of a batch entry; one per entry for other streams, or for a rejected batch."""
    if TICK_FIELD in fields:
        try:
            yield {"id": stream_id, "tick_s": unpack_tick(fields[TICK_FIELD])}
        except RejectedEntry as exc:
            yield {"id": stream_id, "rejected": exc.reason, "detail": exc.detail}
        return
    if PAYLOAD_FIELD not in fields:
        line: dict[str, Any] = {"id": stream_id, **{k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}}
        if "json" in line:  # a derived snapshot: print it as the document it is
            line["json"] = json.loads(line["json"])
        yield line
        return
    try:
        decoded = decode_batch(fields[PAYLOAD_FIELD])
    except RejectedEntry as exc:
        yield {"id": stream_id, "rejected": exc.reason, "detail": exc.detail}
        return
    batch = decoded.batch
    head = {"id": stream_id, "producer_id": batch.producer_id, "seq": batch.seq}
    for event in batch.events:
        yield {**head, "type": type(event).__name__, **dataclasses.asdict(event)}
    for rejected in decoded.rejected:
        yield {**head, "rejected": rejected.reason, "detail": rejected.detail, "index": rejected.index}


def tail(client: redis.Redis, stream: str, *, from_start: bool, count: int | None, block_ms: int) -> Iterator[str]:
    """JSON lines for entries of `stream`, following it; stops after `count` entries when given."""
    last_id = "0-0" if from_start else (_last_id(client, stream) or "0-0")
    seen = 0
    while count is None or seen < count:
        reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = client.xread(  # type: ignore[assignment]
            {stream: last_id}, count=100 if count is None else min(100, count - seen), block=block_ms
        )
        for _, entries in reply or []:
            for raw_id, fields in entries:
                last_id = raw_id.decode()
                seen += 1
                for line in event_lines(last_id, fields):
                    yield json.dumps(line, sort_keys=True)


def _last_id(client: redis.Redis, stream: str) -> str | None:
    newest: list[tuple[bytes, dict[bytes, bytes]]] = client.xrevrange(stream, count=1)  # type: ignore[assignment]
    return newest[0][0].decode() if newest else None
