"""Checkpoints of a running job (private).

store.py         checkpoint files: atomic, checked on load, the last few kept
coordinator.py   barriers, acknowledgements, commit; talks to the job through the
JobView and StageView protocols it declares, so it imports nothing
of the dataflow runtime
"""
