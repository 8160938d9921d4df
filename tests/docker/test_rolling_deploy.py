"""End to end in Docker: a new app image rolled out with `compose up -d` under 100 msg/s of publishing.

This module gets its own compose project: the `stack` fixture is module-scoped,
so it is brought up (and torn down) for this module alone, exactly as for
test_compose_stack.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.docker.conftest import NOTES, TIMINGS, ComposeStack, in_thread, run
from tests.faults.harness import run_scenario

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

CLIENTS = 30
RATE = 100.0
REPLICAS = 3


def app_images(stack: ComposeStack) -> dict[str, str]:
    """Container name -> image id of every running app replica."""
    containers = stack.containers()
    if not containers:
        return {}
    found = json.loads(run(["docker", "inspect", *[c.id for c in containers]], 30))
    return {item["Name"].lstrip("/"): item["Image"] for item in found}


def app_health(stack: ComposeStack) -> dict[str, tuple[str, str]]:
    """Container name -> (image id, health status) of every running app replica."""
    containers = stack.containers()
    if not containers:
        return {}
    found = json.loads(run(["docker", "inspect", *[c.id for c in containers]], 30))
    return {
        item["Name"].lstrip("/"): (item["Image"], ((item["State"].get("Health") or {}).get("Status", "none")))
        for item in found
    }


def build_new_app_image(stack: ComposeStack, tag: str) -> str:
    """Build deploy/Dockerfile again under the stack's app tag, with a label that changes the image id."""
    image = f"windsock-app:{tag}"
    run(
        [
            "docker",
            "build",
            "-q",
            "-f",
            "deploy/Dockerfile",
            "--build-arg",
            f"PYTHON_IMAGE={stack.env['PYTHON_IMAGE']}",
            "--label",
            f"windsock.e2e.deploy={uuid.uuid4().hex}",
            "-t",
            image,
            ".",
        ],
        600,
        stack.env,
    )
    return str(json.loads(run(["docker", "image", "inspect", image], 30))[0]["Id"])


def up_new_image(stack: ComposeStack) -> None:
    """What a deployment types; compose recreates the replicas whose image changed."""
    # Compose v1.29 `up` scales a service back to its configured scale (1)
    # unless told otherwise: a deployment that runs 3 replicas says so.
    output = stack.run("up", "-d", "--no-deps", "--scale", f"app={REPLICAS}", "app", timeout=300)
    with open(stack.logs, "a") as out:
        out.write(output)


def wait_healthy(stack: ComposeStack, image: str, timeout: float) -> dict[str, tuple[str, str]]:
    """Poll until REPLICAS app containers run the given image and all report healthy."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        seen = app_health(stack)
        if len(seen) == REPLICAS and all(v == (image, "healthy") for v in seen.values()):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"app replicas not all healthy on {image} within {timeout:.0f} s: {seen}")


async def test_rolling_deploy_of_new_app_image_loses_nothing(stack: ComposeStack) -> None:
    """`up -d --no-deps app` with a new image at 100 msg/s, keyed publisher: nothing lost, nothing twice."""
    tag = stack.env["WINDSOCK_TAG"]
    before = app_images(stack)
    assert len(before) == REPLICAS, before
    ips_before = sorted(c.ip for c in stack.containers())
    # Built before the clients start: the build is not the deploy, and it loads the 2 cores.
    started = time.monotonic()
    new_image = await in_thread(build_new_app_image, stack, tag)
    built = time.monotonic() - started
    assert new_image not in before.values(), (new_image, before)

    timing: dict[str, float] = {}

    async def deploy() -> None:
        began = time.monotonic()
        await in_thread(up_new_image, stack)
        timing["up"] = time.monotonic() - began
        await in_thread(wait_healthy, stack, new_image, 120)
        timing["healthy"] = time.monotonic() - began

    # Keyed: the publisher retries a refused publish (a 502 or 503, or no
    # answer) with the same Idempotency-Key, so a refused publish that did go
    # through is answered `200 duplicate` with its id instead of published again.
    ledger = await run_scenario(
        stack.base, "e2e.deploy", clients=CLIENTS, rate=RATE, fault=deploy, settle=5.0, keyed=True
    )
    figures = ledger.report(f"rolling deploy (up -d --no-deps app) of a new image at {RATE:.0f} msg/s")
    after = app_images(stack)
    ips_after = sorted(c.ip for c in stack.containers())
    # Ids the subscribers got that the publisher never saw accepted (a 502 whose publish went through).
    unconfirmed = ledger.unconfirmed()
    print(
        f"[deploy] app addresses {ips_before} -> {ips_after}; "
        f"delivered but not confirmed to the publisher: {unconfirmed}; "
        f"refused {figures['refused']}, retried {figures['retried']}, "
        f"answered duplicate {figures['duplicate_answers']}"
    )
    print(
        f"[deploy] image build {built:.1f} s; `up -d` returned after {timing['up']:.1f} s; "
        f"all {REPLICAS} replicas healthy after {timing['healthy']:.1f} s; "
        f"image {sorted(set(before.values()))} -> {sorted(set(after.values()))}"
    )
    TIMINGS["rolling deploy (up -d --no-deps app, new image, 100 msg/s, keyed publisher)"] = (
        f"`up -d` {timing['up']:.1f} s, every replica healthy {timing['healthy']:.1f} s; "
        f"published {figures['published']}, delivered {figures['delivered']}, lost {figures['lost']}, "
        f"duplicated ids {figures['duplicated']}, duplicated payloads {figures['duplicated_payloads']}, "
        f"refused {figures['refused']}, retried {figures['retried']}, "
        f"answered duplicate {figures['duplicate_answers']}, "
        f"reconnects {figures['reconnects']}, delivered though refused {len(unconfirmed)}"
    )
    NOTES.append(f"deploy: app containers {sorted(before)} -> {sorted(after)}")

    assert len(after) == REPLICAS and set(after.values()) == {new_image}, (before, after)
    assert not set(before.values()) & set(after.values())
    assert figures["published"] >= RATE * 5, figures
    assert figures["resets"] == 0, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["duplicated_payloads"] == 0, figures
    assert unconfirmed == [], "a refused publish that went through must be confirmed by its keyed retry"
    assert figures["out_of_order"] == 0, figures
