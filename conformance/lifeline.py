"""Child processes die with the process that started them.

The runner starts each worker in its own session (so a Ctrl-C at the terminal reaches only the
runner, which then stops the workers in order) and puts its pid in ``ADAMW_PARENT_PID``.
:func:`watch_parent` starts a daemon thread that ends the child as soon as that process is gone,
whatever killed it (even SIGKILL, which leaves the runner no chance to clean up): the child is
re-parented, so ``os.getppid()`` changes.
"""

from __future__ import annotations

import os
import threading
import time

ENV = "ADAMW_PARENT_PID"
#: Exit status of a child whose parent disappeared.
ORPHANED = 3


def watch_parent(poll: float = 0.5) -> bool:
    """Exit (status :data:`ORPHANED`) when the parent named in ``ADAMW_PARENT_PID`` is gone.
    Returns whether a watch was started (the variable is set and names this process's parent)."""
    try:
        parent = int(os.environ.get(ENV, ""))
    except ValueError:
        return False
    if os.getppid() != parent:
        os._exit(ORPHANED)  # already orphaned before the watch could start

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os._exit(ORPHANED)

    threading.Thread(target=watch, name="adamw-lifeline", daemon=True).start()
    return True
