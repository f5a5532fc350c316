"""The seed's `python client2.py`: `vclock client --id B` (extra options pass through)."""
from _launcher import run

run(['client', '--id', 'B'])
