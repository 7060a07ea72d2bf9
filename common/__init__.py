"""Shared primitives every layer may use: located input errors, YAML with line numbers, atomic file
writes, environment expansion, config number types, secret scrubbing and the clock.

``common`` imports nothing else of ours.
"""
