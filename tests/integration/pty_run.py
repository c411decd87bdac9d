#!/usr/bin/env python3
"""pty_run.py ANSWERS_ENV PROGRAM ARGS...: runs PROGRAM on a pseudo-terminal,
answers each prompt that ends in ": " with the next line of the environment
variable named ANSWERS_ENV, copies everything the terminal shows to stdout,
and exits with PROGRAM's status (128+N for a signal)."""
import os
import pty
import select
import sys

answers = os.environ.get(sys.argv[1], "").split("\n")
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
shown = b""
given = 0
while True:
    ready, _, _ = select.select([fd], [], [], 60)
    if not ready:
        os.kill(pid, 9)
        break
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    shown += chunk
    while shown.count(b": ") > given and given < len(answers):
        os.write(fd, answers[given].encode() + b"\n")
        given += 1
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
