"""The seed's `python client.py`: `vclock client --id A` (extra options pass through)."""
from _launcher import run

run(['client', '--id', 'A'])
