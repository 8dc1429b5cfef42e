"""Checkpoints of a running job (private).

store.py         checkpoint files: atomic, authenticated, checked on load, the last few kept
secure.py        private folders and files, the job's key, HMACs
coordinator.py   barriers, acknowledgements, commit; talks to the job through the
JobView and StageView protocols it declares, so it imports nothing
of the dataflow runtime
"""
