"""The broker process: volatile fan-out, the durable journal, and the replay endpoint.

Volatile: publishers' PUB -> XSUB here -> XPUB here -> subscribers' SUB, with small high-water
marks, so a slow subscriber loses frames and nobody waits. Two lanes (hexbus/lanes.py), one for
ordinary frames and one, with a tiny high-water mark, for frames whose blob is large, each on a
thread of its own. Subscriptions travel upstream, so a family nobody subscribes to is never sent.
The broker does not decode volatile frames: every receiver decodes strictly and counts what it
rejects; with hosts admitted by key, the lanes read each frame's topic and origin only to drop
privileged requests from hosts that may not make them.

Durable: producers' DEALER -> ROUTER ``ingest`` here. Each event is validated (class, size, and
origin: schemas.PRIVILEGED topics only from ``bus.privileged_origins``), deduplicated by
(session, seq), stamped with the next global offset and its origin, appended to the journal,
acknowledged, then published on the XPUB (for observers such as ``hexbus tail``) and handed to
parked fetches on the ROUTER ``replay`` endpoint. Durable subscribers read only through fetches,
after their last applied offset, so nothing is ever skipped.

Run with ``python -m hexbus.broker`` (the supervisor does); one loop, plus the two volatile lane
threads, the journal's fsync thread and, with CURVE, ZeroMQ's authenticator.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog
import zmq

from hexbus import codec
from hexbus._sockets import server_socket
from hexbus.codec import (
    ACK,
    HOLD,
    NACK,
    PUBLISH,
    REFUSE,
    U64,
    RejectedFrame,
    U64x2,
)
from hexbus.config import BusConfig
from hexbus.consumers import Consumers, retain
from hexbus.endpoints import Endpoints
from hexbus.journal import FsyncPolicy, Journal, Record, only_out_of_space
from hexbus.keys import LOCAL, AllowList
from hexbus.lanes import VolatileLane
from hexbus.log import RateLimitedCounter, configure
from hexbus.origins import Origins, origin_of
from hexbus.replay import REPLY_HWM, Replay
from schemas import (
    BrokerHeartbeat,
    Delivery,
    Event,
    Heartbeat,
    Rejected,
    delivery_of,
)

log = structlog.get_logger("hexbus.broker")

DRAIN = 256  # messages taken from one socket before looking at the others


class BrokerProcessSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor hands the broker process (as JSON in HEXBUS_SPEC)."""

    endpoints: Endpoints
    bus: BusConfig
    data_dir: str


class Broker:
    def __init__(self, spec: BrokerProcessSpec) -> None:
        self.spec = spec
        self.bus = spec.bus
        jc = spec.bus.journal
        self.journal = Journal(
            Path(spec.data_dir) / "journal",
            segment_bytes=jc.segment_mb << 20,
            fsync=FsyncPolicy(
                mode=jc.fsync, every=jc.fsync_every, interval_ms=jc.fsync_interval_ms
            ),
            retention_bytes=jc.retention_mb << 20,
            retention_age_s=jc.retention_hours * 3600,
            cache_bytes=jc.cache_mb << 20,
            blob_file_bytes=(jc.blob_file_kb << 10) or None,
            blob_retention_bytes=jc.blob_retention_mb << 20,
        )
        self.incarnation = f"{codec.new_session():016x}"
        self.consumers = Consumers(Path(spec.data_dir) / "consumers.json")
        self.disk_full = ""  # why durable events are being held, while they are
        self.own_session = codec.new_session()  # the broker's own durable events (retention cuts)
        self.own_seq = 0
        self.last_seq: dict[int, int] = self.journal.sessions()
        self.ids = codec.IdSource(codec.new_session())
        self.rejected = RateLimitedCounter(log)
        self.max_blob = spec.bus.max_blob_mb << 20
        self.origins = Origins(spec.bus.privileged_origins, spec.bus.origin_grants)
        self.running = True
        self.accepted = 0
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.auth: Any = None
        self.hosts: AllowList | None = None  # host keys admitted (tcp with CURVE)
        self._open_sockets()

    def _socket(
        self, kind: int, address: str, *, sndhwm: int = 1000, rcvhwm: int = 1000
    ) -> zmq.Socket[bytes]:
        # Room for twice the blob limit: a frame somewhat over it is decoded and refused by name;
        # only a far larger one is cut off by libzmq (which drops the connection).
        most = 2 * (self.bus.max_blob_mb << 20) + codec.MAX_ENVELOPE_BYTES + 4096
        return server_socket(
            self.ctx, kind, address, self.spec.endpoints.curve_dir, sndhwm, rcvhwm, most
        )

    def _open_sockets(self) -> None:
        ep = self.spec.endpoints
        if ep.curve_dir and ep.volatile_in.startswith("tcp://"):
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.hosts = AllowList(ep.curve_dir, self.auth)
        hwm = self.bus.volatile_hwm
        vin = self._socket(zmq.XSUB, ep.volatile_in, rcvhwm=hwm)
        vout = self._socket(zmq.XPUB, ep.volatile_out, sndhwm=hwm)
        big_in = self._socket(zmq.XSUB, ep.volatile_big_in, rcvhwm=self.bus.blob_hwm)
        big_out = self._socket(zmq.XPUB, ep.volatile_big, sndhwm=self.bus.blob_hwm)
        # With hosts admitted by key, their frames are read here so that privileged requests
        # from the others are dropped; on the 0700 ipc run directory every peer is this host.
        checked = self.origins if self.hosts is not None else None
        self.lanes = (
            VolatileLane(self.ctx, "small", vin, vout, checked),
            VolatileLane(self.ctx, "big", big_in, big_out, checked),
        )
        self.big = self.bus.blob_lane_bytes
        # The broker's own volatile publishing (heartbeats, durable events for observers) joins the lanes.
        self.vout: zmq.Socket[bytes] = self.ctx.socket(zmq.PUB)
        self.vout.sndhwm = hwm
        self.vout.linger = 0
        self.vout.connect(self.lanes[0].inproc)
        self.vbig: zmq.Socket[bytes] = self.ctx.socket(zmq.PUB)
        self.vbig.sndhwm = self.bus.blob_hwm
        self.vbig.linger = 0
        self.vbig.connect(self.lanes[1].inproc)
        for lane in self.lanes:
            lane.start()
        self.ingest = self._socket(zmq.ROUTER, ep.ingest)
        self.ingest.router_mandatory = False
        # A few replies per peer: a feed has one request out at a time, so only a peer that
        # never reads fills its pipe, and what it is sent then is dropped, not held here.
        self.replay = self._socket(zmq.ROUTER, ep.replay, sndhwm=REPLY_HWM)
        self.replays = Replay(
            self.journal,
            self.replay,
            self.consumers,
            self.rejected,
            self.incarnation,
            curve=self.hosts is not None,
        )
        self.hb: zmq.Socket[bytes] = self.ctx.socket(zmq.PUSH)
        self.hb.linger = 0
        self.hb.sndhwm = 10
        self.hb.immediate = True
        self.hb.connect(ep.heartbeat)

    # -- volatile -----------------------------------------------------------

    def publish_volatile(self, event: Any, key: str = "") -> None:
        envelope = codec.make_envelope(event, event_id=self.ids.next(), source="broker", key=key)
        try:
            self.vout.send_multipart(codec.message_frames(envelope), zmq.NOBLOCK)
        except zmq.Again:
            pass

    # -- durable ------------------------------------------------------------

    def on_ingest(self) -> None:
        acks: dict[bytes, tuple[int, int]] = {}
        fresh: list[Record] = []
        for _ in range(DRAIN):
            try:
                raw = self.ingest.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            origin = origin_of(raw[0], curve=self.hosts is not None)
            frames = [frame.bytes for frame in raw]
            identity = frames[0]
            if len(frames) < 5 or frames[1] != PUBLISH or len(frames[2]) != 8:
                self.rejected.add("frames", f"ingest message of {len(frames)} frames")
                continue
            floor = U64.unpack(frames[2])[0]
            try:
                envelope, blob = self._durable(frames[3:], origin)
            except RejectedFrame as exc:
                self.rejected.add(exc.kind, exc.detail)
                head = codec.peek(frames[4])
                if head is not None and head.session and head.seq:
                    self._refuse(identity, head, floor, exc, acks, origin)
                continue
            session, seq = envelope.session, envelope.seq
            expected = max(self.last_seq.get(session, 0) + 1, floor)
            if seq < expected:  # a retransmission: ack again, store nothing
                acks[identity] = (session, expected - 1)
                continue
            if seq > expected:
                self._send(self.ingest, [identity, NACK, U64x2.pack(session, expected)])
                continue
            offset = self.journal.next_offset
            stamped = codec.encode(msgspec.structs.replace(envelope, offset=offset, origin=origin))
            topic = frames[3]
            blob_bytes = bytes(blob) if blob is not None else None
            try:
                self.journal.append(session, seq, topic, stamped, blob_bytes)
            except OSError as exc:
                if not only_out_of_space(exc):
                    raise  # the journal cannot be trusted: a restart recovers it
                self._hold(identity, session, seq, exc, acks)
                continue
            if self.disk_full:
                log.warning("journal.disk_space_back", head=self.journal.head)
                self.disk_full = ""
            fresh.append(Record(offset, session, seq, topic, stamped, blob_bytes))
            self.last_seq[session] = seq
            acks[identity] = (session, seq)
        if not acks and not fresh:
            return
        if fresh and self.bus.journal.fsync == "always":
            self.journal.sync()
        for identity, (session, seq) in acks.items():
            self._send(self.ingest, [identity, ACK, U64x2.pack(session, seq)])
        for record in fresh:
            if record.blob is None:
                self._send(self.vout, [record.topic, record.envelope])
            else:
                lane = self.vbig if len(record.blob) >= self.big else self.vout
                self._send(lane, [record.topic, record.envelope, record.blob])
        self.accepted += len(fresh)
        if fresh:
            self.replays.journaled(time.monotonic())

    def _durable(
        self, frames: list[bytes], origin: str
    ) -> tuple[codec.Envelope, bytes | memoryview | None]:
        envelope, blob = codec.decode_message(frames, self.max_blob)
        if delivery_of(envelope.topic) is not Delivery.DURABLE:  # a decoded tag has a class
            raise RejectedFrame(
                "class", f"{envelope.topic} is volatile: publish it on the volatile path"
            )
        self.origins.check(origin, envelope)
        if envelope.session == 0 or envelope.seq == 0:
            raise RejectedFrame("malformed", "durable event without session and seq")
        return envelope, blob

    def _refuse(
        self,
        identity: bytes,
        head: codec.Head,
        floor: int,
        exc: RejectedFrame,
        acks: dict[bytes, tuple[int, int]],
        origin: str,
    ) -> None:
        """Answer an event that cannot be stored with a refusal and its reason, in its place in
        the producer's sequence, so the producer drops it and goes on (unanswered, it was resent
        forever). A retransmission is refused again; the seq counts as used in memory only
        (after a restart the producer's floor says so)."""
        session, seq = head.session, head.seq
        expected = max(self.last_seq.get(session, 0) + 1, floor)
        if seq > expected:
            self._send(self.ingest, [identity, NACK, U64x2.pack(session, expected)])
            return
        reason = f"{exc.kind}: {exc.detail}"
        if seq == expected and self.origins.owns(origin, session):
            self.last_seq[session] = seq  # (a frame in another's session never uses its seqs)
            log.warning("broker.refused", event_id=head.id, topic=head.topic[:80], reason=reason)
        self._answer(identity, REFUSE, session, seq, reason, acks)

    def _hold(
        self,
        identity: bytes,
        session: int,
        seq: int,
        exc: OSError,
        acks: dict[bytes, tuple[int, int]],
    ) -> None:
        """The journal cannot grow (a full disk): tell the producer to keep the event and try
        again later. Replays and volatile traffic go on; the first append that fits ends it."""
        reason = f"disk full: the journal cannot store durable events ({exc.strerror})"
        if not self.disk_full:
            log.error(
                "journal.disk_full",
                error=str(exc),
                hint="free space on the data disk; durable events wait in their producers' "
                "outboxes and are stored when there is room",
            )
        self.disk_full = reason
        self._answer(identity, HOLD, session, seq, reason, acks)

    def _answer(
        self,
        identity: bytes,
        kind: bytes,
        session: int,
        seq: int,
        reason: str,
        acks: dict[bytes, tuple[int, int]],
    ) -> None:
        """A refusal or a hold with its reason, after the acks before it (they go first, in order)."""
        pending = acks.pop(identity, None)
        if pending is not None:
            self._send(self.ingest, [identity, ACK, U64x2.pack(*pending)])
        encoded = reason.encode()[: codec.MAX_REASON_BYTES]
        self._send(self.ingest, [identity, kind, U64x2.pack(session, seq), encoded])

    def _send(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass  # a vanished peer or a full pipe: producers retransmit, fetchers ask again

    # -- housekeeping -------------------------------------------------------

    def heartbeat(self) -> None:
        if self.hosts is not None and self.hosts.revoked():
            self.running = False  # the supervisor starts a broker that drops their connections
        for lane in self.lanes:
            now = lane.dropped  # read once: the lane's thread counts on
            if now > lane.reported:
                self.rejected.count("origin", now - lane.reported)  # logged by the lane
                lane.reported = now
        self.publish_volatile(
            BrokerHeartbeat(
                incarnation=self.incarnation,
                head_offset=self.journal.head,
                first_offset=self.journal.first,
                sessions=len(self.last_seq),
                rejected=self.rejected.total,
                journal_bytes=self.journal.size_bytes,
            ),
        )
        beat = Heartbeat(
            actor="broker",
            pid=os.getpid(),
            events_in=self.accepted,
            events_out=self.accepted,
            rejected=self.rejected.total,
            applied_offset=self.journal.head,
            lagging=self.consumers.lagging(),
            detail=self.disk_full,
        )
        envelope = codec.make_envelope(
            beat, event_id=self.ids.next(), source="broker", key="broker"
        )
        try:
            self.hb.send_multipart(codec.message_frames(envelope), zmq.NOBLOCK)
        except zmq.Again:
            pass
        if self.rejected.changed:
            self.rejected.changed = False
            self.publish_volatile(
                Rejected(
                    process="broker", counts=dict(self.rejected.counts), total=self.rejected.total
                ),
                key="broker",
            )

    def retain(self) -> None:
        """Retention (:func:`hexbus.consumers.retain`); each cut is journaled for its actor."""
        for cut in retain(self.journal, self.consumers, self.bus.journal):
            self.append_own(cut, key=cut.consumer)

    def append_own(self, event: Event, key: str) -> None:
        """Journal an event of the broker's own, as a producer's would be: stamped, fanned out,
        served to parked fetches."""
        self.own_seq += 1
        envelope = codec.make_envelope(
            event,
            event_id=self.ids.next(),
            source="broker",
            session=self.own_session,
            seq=self.own_seq,
            key=key,
        )
        offset = self.journal.next_offset
        stamped = codec.encode(msgspec.structs.replace(envelope, offset=offset, origin=LOCAL))
        topic = envelope.topic.encode()
        try:
            self.journal.append(self.own_session, self.own_seq, topic, stamped, None)
        except OSError as exc:
            if not only_out_of_space(exc):
                raise
            self.own_seq -= 1
            log.error("broker.event_unstored", topic=envelope.topic, error=str(exc))
            return
        self.last_seq[self.own_session] = self.own_seq
        self._send(self.vout, [topic, stamped])
        self.accepted += 1
        self.replays.journaled(time.monotonic())

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self.ingest, self.replay):
            poller.register(sock, zmq.POLLIN)
        interval = self.bus.heartbeat_interval_s
        next_beat = time.monotonic()
        next_retention = time.monotonic() + self.bus.journal.retention_check_s
        log.info(
            "broker.ready",
            head=self.journal.head,
            first=self.journal.first,
            sessions=len(self.last_seq),
            incarnation=self.incarnation,
        )
        while self.running:
            now = time.monotonic()
            if now >= next_beat:
                self.heartbeat()
                next_beat = now + interval
            self.replays.expire(now)
            if now >= next_retention:
                self.retain()
                next_retention = now + self.bus.journal.retention_check_s
            wake = next_beat
            wake = min(wake, self.replays.next_deadline())
            timeout_ms = max(0, int((wake - time.monotonic()) * 1000) + 1)
            try:
                ready = dict(poller.poll(timeout_ms))
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if self.ingest in ready:
                self.on_ingest()
            if self.replay in ready:
                self.replays.on_fetch()
        self.close()

    def close(self) -> None:
        log.info("broker.stopping", head=self.journal.head)
        self.consumers.save()
        self.journal.close()
        for lane in self.lanes:
            lane.stop()
        for sock in (self.vout, self.vbig, self.ingest, self.replay, self.hb):
            sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()


def main() -> None:
    raw = os.environ.get("HEXBUS_SPEC")
    if not raw:
        print(
            "hexbus.broker: HEXBUS_SPEC is not set; the supervisor starts the broker (hexbus run)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    spec = msgspec.json.decode(raw, type=BrokerProcessSpec)
    configure("broker", os.environ.get("HEXBUS_LOG_LEVEL", "info"))
    from hexbus._process import die_with_parent

    die_with_parent()
    broker = Broker(spec)

    def stop(signum: int, frame: object) -> None:
        broker.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    broker.run()


if __name__ == "__main__":
    main()
