"""``hexbus tail``: one decoded line per event, blobs shown by size."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from hexbus import codec
from hexbus.codec import Envelope, RejectedFrame
from hexbus.endpoints import Endpoints, connect_address, secure_client


def render(envelope: Envelope, blob: Any, as_json: bool) -> str:
    body = msgspec.to_builtins(envelope.body)
    if as_json:
        record = msgspec.to_builtins(envelope)
        record["blob_bytes"] = len(blob) if blob is not None else None
        return json.dumps(record, separators=(",", ":"), default=str)
    stamp = datetime.datetime.fromtimestamp(envelope.wall).strftime("%H:%M:%S.%f")[:-3]
    body.pop("type", None)
    where = f" @{envelope.offset}" if envelope.offset else ""
    size = f" blob={len(blob)}B" if blob is not None else ""
    fields = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{stamp} {envelope.topic} <{envelope.source}>{where}{size} {fields}"


async def tail(endpoints: Endpoints, prefixes: list[str], *, as_json: bool, count: int = 0) -> None:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 10_000
    if endpoints.curve_dir and endpoints.volatile_out.startswith("tcp://"):
        secure_client(sock, endpoints.curve_dir)
    for prefix in prefixes:
        sock.subscribe(prefix.encode("ascii"))
    sock.connect(connect_address(endpoints.volatile_out))
    sock.connect(connect_address(endpoints.volatile_big))
    seen = 0
    try:
        while True:
            frames = await sock.recv_multipart()
            try:
                envelope, blob = codec.decode_message(frames, endpoints.max_blob_mb << 20)
            except RejectedFrame as exc:
                print(f"# rejected frame: {exc}", file=sys.stderr)
                continue
            print(render(envelope, blob, as_json), flush=True)
            seen += 1
            if count and seen >= count:
                return
    finally:
        sock.close(linger=0)
