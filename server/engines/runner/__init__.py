"""Supervised runner processes: each loaded llama.cpp model in a child process of its own.

A native crash in llama.cpp (AMX kernels on some Xeons, new architectures, broken files) then
ends one model's process, not the server: that model's requests get a clear error, the next
request starts a new runner, and everything else keeps serving. `supervisor.py` is the
server's side, `child.py` the runner's, `protocol.py` the messages between them.
"""
