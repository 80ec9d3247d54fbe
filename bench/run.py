"""Replaced by the bench package: `python -m bench ROW...` (see `python -m bench --help`)."""

import sys

print("bench/run.py is now `python -m bench [ROW ...] [options]`", file=sys.stderr)
sys.exit(2)
