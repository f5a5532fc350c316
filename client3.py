"""The seed's `python client3.py`: `vclock client --id C` (extra options pass through)."""
from _launcher import run

run(['client', '--id', 'C'])
