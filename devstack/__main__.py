"""The run command: the whole service on its defaults, for a newcomer or a developer.

Starts a private ``redis-server`` unless ``REDIS_URL`` is set, the emulator unless
``AIWYN_BASE_URL`` is set, runs the Procfile's ``release`` (migrations, registration), then
its ``web`` and ``worker`` under honcho. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devstack.services import (
    ROOT,
    Process,
    StackError,
    free_port,
    local_secrets_key,
    port_in_use,
    run_release,
    start_emulator,
    start_redis,
    wait_until,
)
from devstack.stack import emulator_settings, web_settings

VAR = ROOT / "var"
EMULATOR_PORT = 8700


def _instructions(env: dict[str, str], var: Path) -> str:
    python = os.path.relpath(sys.executable, Path.cwd())
    emulator = env.get("AIWYN_BASE_URL", "")
    lines = [
        "",
        "=" * 78,
        f"The receiver is up: {env['PUBLIC_URL']}/webhooks/aiwyn (health: {env['PUBLIC_URL']}/readyz)",
        f"Aiwyn API: {emulator}   Redis: {env['REDIS_URL']}   Database: {env.get('DATABASE_URL') or var / 'aiwyn.sqlite3'}",
        "",
        "In another terminal, create, change and delete a record in the emulator and watch the mirror:",
        f"  {python} -m devstack.demo --aiwyn {emulator}",
        f"  {python} -m workers records          # the mirror, newest first",
        "",
        f"Logs of the emulator and Redis are in {var / 'logs'}/. Emulator deliveries: {emulator}/_emulator/stats",
        "Ctrl-C stops everything.",
        "=" * 78,
    ]
    return "\n".join(lines)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that everything started is stopped, as on Ctrl-C


def _ready(procfile: subprocess.Popen[bytes], port: int) -> bool:
    if procfile.poll() is not None:
        raise StackError(f"the web or worker process exited ({procfile.returncode}); see the output above")
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/run", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="web port (default: $PORT or 8000)")
    parser.add_argument("--var", type=Path, default=VAR, help="where the stack keeps its state and logs (default: the checkout's var/)")
    args = parser.parse_args(argv)
    var = args.var.resolve()

    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The Procfile's commands (gunicorn, python) must be this virtual environment's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    port = args.port or int(env.get("PORT") or 8000)
    if port_in_use(port):
        print(f"port {port} is taken: stop what runs there or pass --port N", file=sys.stderr)
        return 2
    env["PORT"] = str(port)
    # The local stack's settings, each unless the developer set it.
    env = web_settings(port, local_secrets_key(var / "secrets.key")) | env
    if var != VAR:  # the settings' default database is the checkout's var/aiwyn.sqlite3
        env.setdefault("DATABASE_URL", f"sqlite:///{var / 'aiwyn.sqlite3'}")
    started: list[Process] = []
    procfile: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        if not env.get("REDIS_URL"):
            redis_process, env["REDIS_URL"] = start_redis(var / "redis", durable=True)  # what it acknowledged survives a restart
            started.append(redis_process)
            print(f"started a private redis-server at {env['REDIS_URL']}")
        if not env.get("AIWYN_BASE_URL"):
            # The emulator's credentials (its defaults unless set) for the service too, and quick
            # retries, so a delivery refused while the web process starts lands soon.
            client = env.get("EMULATOR_CLIENT_ID", "local-client"), env.get("EMULATOR_CLIENT_SECRET", "local-secret")
            env = emulator_settings(*client, retry_schedule="1,2,5,10,30,60,300") | env
            emulator_port = EMULATOR_PORT if not port_in_use(EMULATOR_PORT) else free_port()
            emulator, env["AIWYN_BASE_URL"] = start_emulator(env, var / "logs" / "emulator.log", emulator_port)
            started.append(emulator)
            print(f"started the Aiwyn emulator at {env['AIWYN_BASE_URL']}")
        run_release(env, var / "logs" / "release.log")
        print("release done: migrations applied, subscriptions registered")
        honcho = Path(sys.executable).with_name("honcho")
        procfile = subprocess.Popen([str(honcho), "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start", "web", "worker"], env=env)
        wait_until(lambda: _ready(procfile, port), 60, "web /readyz")
        print(_instructions(env, var), flush=True)
        return procfile.wait()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if procfile is not None and procfile.poll() is None:
            procfile.terminate()  # honcho stops web and worker gracefully
            procfile.wait(30)
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
