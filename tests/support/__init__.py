"""What tests share: a real Hex in a subprocess, bus clients, test speech, and per-area helpers.

Test modules import helpers from here only, never from one another.
"""
