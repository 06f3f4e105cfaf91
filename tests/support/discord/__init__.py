"""Helpers for the Discord actor's tests: discord.py on a thread, a scripted brain, an in-memory
Discord for the actor's parts."""
