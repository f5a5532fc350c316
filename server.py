"""The seed's `python server.py`: `vclock server` (extra options pass through)."""
from _launcher import run

run(['server'])
