"""docker-py (the Python Docker SDK) against sdc-docker: the calls most
programs make, each checked against what Docker itself answers.

Usage: basics.py BASE_URL IMAGE

Every step prints "ok: <step>" as it passes; the first failure prints
"FAILED: <step>: <what>" with the traceback and exits 1, so the Rust test
that runs this shows exactly where docker-py and sdc-docker disagree.
"""

import sys
import time
import traceback

import docker
import docker.errors

BASE_URL, IMAGE = sys.argv[1], sys.argv[2]
NAME = "docker-py-basics"
DEADLINE = 15  # seconds for a condition the server writes asynchronously


class Failed(Exception):
    """A check that did not hold."""


def check(condition, what):
    if not condition:
        raise Failed(what)


def until(what, probe):
    """Poll probe() until it returns a true value, for DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(0.1)


def main():
    client = docker.DockerClient(base_url=BASE_URL, timeout=60)
    step = "connect"
    try:
        print(f"ok: {step}", flush=True)
        step = "ping"
        check(client.ping() is True, "ping did not answer OK")

        print(f"ok: {step}", flush=True)
        step = "version"
        version = client.version()
        check(version.get("ApiVersion"), f"no ApiVersion in {version}")
        check(version.get("Version"), f"no Version in {version}")

        print(f"ok: {step}", flush=True)
        step = "info"
        info = client.info()
        check(info.get("Driver") == "sdc", f"Driver is {info.get('Driver')!r}")
        check(isinstance(info.get("NCPU"), int), f"NCPU is {info.get('NCPU')!r}")

        print(f"ok: {step}", flush=True)
        step = "run with remove"
        out = client.containers.run(IMAGE, "echo hi", remove=True)
        check(out == b"hi\n", f"output was {out!r}")

        print(f"ok: {step}", flush=True)
        step = "run detached"
        container = client.containers.run(
            IMAGE, ["sh", "-c", "echo started; exec sleep 100"], detach=True, name=NAME
        )
        check(len(container.id) == 64, f"id is {container.id!r}")

        print(f"ok: {step}", flush=True)
        step = "list"
        listed = [c.id for c in client.containers.list()]
        check(container.id in listed, f"{container.id} not in {listed}")

        print(f"ok: {step}", flush=True)
        step = "get and attrs"
        got = client.containers.get(NAME)
        check(got.id == container.id, f"get({NAME}) gave {got.id}")
        check(got.name == NAME, f"name is {got.name!r}")
        check(got.status == "running", f"status is {got.status!r}")
        check(got.attrs["State"]["Running"] is True, f"State is {got.attrs['State']}")
        check(
            got.attrs["Config"]["Cmd"] == ["sh", "-c", "echo started; exec sleep 100"],
            f"Cmd is {got.attrs['Config']['Cmd']!r}",
        )

        print(f"ok: {step}", flush=True)
        step = "logs"
        logs = until("the container's output", lambda: container.logs() or None)
        check(logs == b"started\n", f"logs were {logs!r}")

        print(f"ok: {step}", flush=True)
        step = "exec_run"
        result = container.exec_run("echo from-exec")
        check(result.exit_code == 0, f"exit code {result.exit_code}")
        check(result.output == b"from-exec\n", f"output was {result.output!r}")
        result = container.exec_run(["sh", "-c", "exit 3"])
        check(result.exit_code == 3, f"exit code {result.exit_code}, wanted 3")

        print(f"ok: {step}", flush=True)
        step = "stop"
        container.stop(timeout=1)
        container.reload()
        check(container.status == "exited", f"status is {container.status!r}")
        check(
            container.attrs["State"]["ExitCode"] == 137,
            f"exit code {container.attrs['State']['ExitCode']}, wanted 137 (SIGKILL)",
        )

        print(f"ok: {step}", flush=True)
        step = "remove"
        container.remove()
        try:
            client.containers.get(NAME)
            raise Failed(f"{NAME} still there after remove")
        except docker.errors.NotFound:
            pass

        print(f"ok: {step}", flush=True)
        step = "not found"
        try:
            client.containers.get("no-such-container-at-all")
            raise Failed("get of a missing container returned")
        except docker.errors.NotFound as e:
            check(
                "No such container: no-such-container-at-all" in str(e),
                f"error was {e}",
            )
    except Exception as e:  # noqa: BLE001 - every failure is reported alike
        print(f"FAILED: {step}: {e}", flush=True)
        traceback.print_exc()
        return 1
    finally:
        try:
            client.containers.get(NAME).remove(force=True)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    print(f"ok: {step}", flush=True)
    print("ok: all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
