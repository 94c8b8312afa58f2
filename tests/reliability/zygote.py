"""A fork server for the crash test: import torch and vaeforge once, then fork one CLI process per request.

Importing torch (and ``torch._dynamo``, which the first optimizer pulls in)
takes several seconds on a busy machine; the crash test starts two dozen
processes. Each request is a JSON line ``{"argv": [...], "log": path}``; the
server forks a child that runs ``vaeforge.cli.main(argv)``, exactly what
``python -m vaeforge`` runs, with its output in ``log``, and answers
``{"pid": N}`` at once and ``{"pid": N, "exit": code}`` when the child ends
(``-9`` when it was killed). No tensor operation runs before the fork.

``"patch": "no-rng"`` in a request makes the child ignore the random
generator states of the checkpoint it resumes from (the negative control).
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def child(argv: list[str], log: str, patch: str | None) -> None:
    os.setpgid(0, 0)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    code = 1
    try:
        from vaeforge.cli import main

        if patch == "no-rng":
            import vaeforge.checkpoint

            vaeforge.checkpoint.restore_rng = lambda state: None

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, then exit
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    import vaeforge.cli  # noqa: F401
    import vaeforge.run  # noqa: F401
    import vaeforge.trainer.loop  # noqa: F401
    from vaeforge.plugins import build_registry, make_plugin_manager

    build_registry(make_plugin_manager())  # imports every component module
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request["argv"], request["log"], request.get("patch"))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
