"""Benchmark commands: each measures something and writes JSON (and a markdown table) under experiments/<name>/.

Modules here may import heavy dependencies; nothing imports this package at `import recsys` time.
"""
