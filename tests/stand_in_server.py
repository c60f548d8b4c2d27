"""A stand-in for a model server (vLLM, SGLang, llama-server) that a run starts and stops.

Run as a script (``python tests/stand_in_server.py --port 8123 --model m``): it binds 127.0.0.1
only and speaks what the launcher and the replay use: ``GET /health``, ``GET /v1/models`` (the
``--model`` names) and ``POST /v1/chat/completions`` (answers from :func:`servers.make_completion`:
``echo: <last user message>``, prefixed with the model name asked for when it is not the first
``--model``, so a LoRA adapter's answers differ from the base model's).

Faults, for the tests of the launcher:

* ``--never-healthy`` - ``/health`` answers 503 forever;
* ``--die-after N`` - after N answers, the next completion request makes the process exit
  (code 7);
* ``--child`` - starts a child process (``CHILD <pid>`` in the log), like vLLM's engine
  workers: the launcher must stop the whole process group;
* ``--ignore-term`` - SIGTERM is ignored (the launcher must escalate to SIGKILL).

It exits by itself after ``--lifetime`` seconds, so that a test that fails cannot leave it
running for long.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import make_completion


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="stand-in OpenAI-compatible model server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each answer waits")
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args(argv)
    models: list[str] = args.model or ["stand-in"]
    answered = 0

    print(f"PID {os.getpid()}", flush=True)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.lifetime})"]
        )
        print(f"CHILD {child.pid}", flush=True)

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=503 if args.never_healthy else 200)

    async def list_models(request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in models]}
        )

    async def chat(request: web.Request) -> web.Response:
        nonlocal answered
        body = await request.json()
        model = body.get("model")
        if model not in models:
            return web.json_response({"error": {"message": f"no model {model}"}}, status=404)
        if args.delay:
            await asyncio.sleep(args.delay)
        completion = make_completion(body)
        if model != models[0]:
            message = completion["choices"][0]["message"]
            if isinstance(message.get("content"), str):
                message["content"] = f"[{model}] {message['content']}"
        answered += 1
        if args.die_after and answered > args.die_after:
            print(f"dying after {args.die_after} answers", flush=True)
            os._exit(7)
        return web.json_response(completion)

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", list_models)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"serving {', '.join(models)} on 127.0.0.1:{args.port}", flush=True)
        await asyncio.sleep(args.lifetime)
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
