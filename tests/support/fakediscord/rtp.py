"""Media for the fake voice server: RTP sealed with ``aead_xchacha20_poly1305_rtpsize`` (PyNaCl)
around opus, and the throwaway TLS certificate of its voice gateway.
"""

from __future__ import annotations

import os
import struct
import subprocess
from typing import NamedTuple

# What Discord's voice servers offer since the November 2024 cut, preferred first. discord.py
# 2.7 implements only the second; AES-GCM is offered so that its choosing is real, not forced.
VOICE_MODES = ("aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize")
XCHACHA = "aead_xchacha20_poly1305_rtpsize"
OPUS_SILENCE = b"\xf8\xff\xfe"
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_BYTES = FRAME_SAMPLES * 4  # stereo s16le
SILENCE_TAIL = 5  # frames of opus silence a Discord client sends when it stops talking
# One RFC 8285 one-byte extension element (id 1, audio level, RFC 6464) in one 32-bit word, as
# Discord's packets to clients carry; under rtpsize its 4-byte header is authenticated, not
# encrypted, and its body is encrypted with the opus payload.
_RTP_EXT_HEADER = b"\xbe\xde\x00\x01"
_RTP_EXT_BODY = b"\x10\xa0\x00\x00"


class RtpRecord(NamedTuple):
    """One RTP packet the bot sent, decrypted; ``t`` is its arrival on the monotonic clock."""

    t: float
    ssrc: int
    sequence: int
    timestamp: int
    opus: bytes


def point_discord_py_voice(ca_file: str) -> None:
    """Make this process's discord.py trust a FakeDiscord's voice gateway certificate.

    discord.py dials ``wss://{endpoint}/?v=8`` with no way to ask for ``ws://``, through its
    aiohttp session; a connector that was not given an SSL context verifies with aiohttp's one
    shared default context, ``aiohttp.connector._SSL_CONTEXT_VERIFIED``, made when aiohttp is
    imported. This adds ``ca_file`` (``FakeDiscord.voice_ca_file``, a self-signed certificate
    for IP 127.0.0.1 only) to that context's trust store; nothing in discord.py changes. Call it
    before the bot connects to voice; repeated calls add more certificates.
    """
    import aiohttp.connector

    aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(cafile=ca_file)


def make_certificate(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "voice-cert.pem"), os.path.join(directory, "voice-key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def seal_rtp(
    ssrc: int, sequence: int, timestamp: int, opus: bytes, key: bytes, counter: int
) -> bytes:
    """An ``aead_xchacha20_poly1305_rtpsize`` packet: header and extension header as AAD."""
    import nacl.secret

    header = struct.pack(">BBHII", 0x90, 0x78, sequence, timestamp, ssrc) + _RTP_EXT_HEADER
    nonce = counter.to_bytes(4, "big")
    box = nacl.secret.Aead(key)
    sealed = box.encrypt(_RTP_EXT_BODY + opus, header, nonce + bytes(20)).ciphertext
    return header + sealed + nonce


def open_rtp(packet: bytes, key: bytes) -> bytes:
    """The opus payload of an ``aead_xchacha20_poly1305_rtpsize`` packet."""
    import nacl.secret

    head = 12 + 4 * (packet[0] & 0x0F)
    ext_words = 0
    if packet[0] & 0x10:
        (ext_words,) = struct.unpack_from(">H", packet, head + 2)
        head += 4
    if len(packet) < head + 4 + 16:
        raise ValueError("RTP packet too short")
    nonce = packet[-4:] + bytes(20)
    plain = nacl.secret.Aead(key).decrypt(packet[head:-4], packet[:head], nonce)
    return plain[4 * ext_words :]
