"""``hexbus voice``: the voice console's command, registered as an entry point (hexbus.commands)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from hexbus.cli import EXIT_USAGE, endpoints_of, fail, run_dir_of


def add_voice(p: argparse.ArgumentParser) -> None:
    """talk to Hex by voice: a WAV recording or the microphone in, Hex's voice out"""
    p.add_argument("--input-wav", default="", help="a recording to stream as if spoken now")
    p.add_argument(
        "--output-wav",
        default="",
        help="where Hex's replies go: a .wav file, or a folder (numbered)",
    )
    p.add_argument(
        "--fast", action="store_true", help="stream the recording ten times faster than real time"
    )
    p.add_argument(
        "--mic", action="store_true", help="capture the microphone and play replies (sounddevice)"
    )
    p.add_argument(
        "--echo-guard-ms",
        type=int,
        default=300,
        help="the mic stays gated this long after Hex speaks",
    )
    p.add_argument("--person", default="local", help="your person id")
    p.add_argument("--name", default="", help="your display name")
    p.add_argument("--channel", default="voice-local")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the last reply"
    )
    p.set_defaults(fn=voice)


def voice(args: argparse.Namespace) -> None:
    from actors.stt.console import VoiceError, check_mic, read_wav, run_file, run_mic

    if bool(args.input_wav) == bool(args.mic):
        fail("give either --input-wav FILE or --mic", EXIT_USAGE)
    try:  # the file or the devices first: their problem is the one to report
        check_mic() if args.mic else read_wav(Path(args.input_wav))
    except VoiceError as exc:
        fail(str(exc))
    endpoints = endpoints_of(run_dir_of(args))
    common = dict(person_id=args.person, name=args.name or args.person, channel=args.channel)
    try:
        if args.mic:
            asyncio.run(run_mic(endpoints, echo_guard_ms=args.echo_guard_ms, **common))
        else:
            output = Path(args.output_wav) if args.output_wav else None
            asyncio.run(
                run_file(
                    endpoints,
                    Path(args.input_wav),
                    output=output,
                    fast=args.fast,
                    timeout=args.timeout,
                    **common,
                )
            )
    except VoiceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
