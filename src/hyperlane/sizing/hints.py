"""Runtime hints: settings in an image's env and command that clash with the sizing.

Each hint is one sentence comparing a runtime setting with the recommended CPU or
memory: GOMAXPROCS, the JVM's -Xmx and MaxRAMPercentage, the worker count of
gunicorn or uvicorn, and Node's --max-old-space-size.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

# Share of the memory limit above which a heap leaves too little for the rest of
# the process (thread stacks, metaspace, buffers): the JVM's own default
# MaxRAMPercentage is 25, and 75 is the common ceiling for containers.
MAX_HEAP_SHARE = 0.75

_JVM_OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_OPTS")
_XMX = re.compile(r"^-Xmx(\d+)([kKmMgGtT]?)$")
_MAX_RAM_PERCENTAGE = re.compile(r"^-XX:MaxRAMPercentage=(\d+(?:\.\d+)?)$")
_NODE_HEAP = re.compile(r"^--max-old-space-size=(\d+)$")
_SIZE_SUFFIX_BYTES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def runtime_hints(
    env: Sequence[str],
    command: Sequence[str],
    cpu_cores: float | None,
    memory_limit_bytes: int | None,
) -> list[str]:
    """Return one sentence per runtime setting that the sizing bears on.

    env is "NAME=VALUE" strings, command is the entrypoint followed by the cmd,
    cpu_cores is the CPU limit (or the request when no limit is set), and
    memory_limit_bytes is the recommended memory limit.
    """
    variables = dict(item.split("=", 1) for item in env if "=" in item)
    tokens = list(command)
    for name in (*_JVM_OPTION_VARIABLES, "NODE_OPTIONS"):
        if name in variables:
            tokens.extend(_split(variables[name]))
    # A shell form such as ["sh", "-c", "java -Xmx1g -jar app.jar"] hides its flags.
    expanded: list[str] = []
    for token in tokens:
        expanded.extend(_split(token) if " " in token else [token])

    hints: list[str] = []
    if cpu_cores is not None:
        hints.extend(_gomaxprocs_hint(variables, cpu_cores))
        hints.extend(_worker_hint(expanded, variables, cpu_cores))
    if memory_limit_bytes is not None:
        hints.extend(_jvm_hints(expanded, memory_limit_bytes))
        hints.extend(_node_hint(expanded, memory_limit_bytes))
    return hints


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _gomaxprocs_hint(variables: dict[str, str], cpu_cores: float) -> list[str]:
    value = variables.get("GOMAXPROCS", "")
    if not value.isdigit():
        return []
    procs = int(value)
    cores = max(1, math.ceil(cpu_cores))
    if procs > cores:
        return [
            f"GOMAXPROCS={procs} runs Go code on more threads than the "
            f"{cpu_cores * 1000:.0f}m of CPU, which a CPU quota then throttles; "
            f"set GOMAXPROCS={cores}."
        ]
    return [
        f"GOMAXPROCS={procs} fits the {cpu_cores * 1000:.0f}m of CPU (at most {cores})."
    ]


def _worker_hint(
    tokens: Sequence[str], variables: dict[str, str], cpu_cores: float
) -> list[str]:
    servers = [name for name in ("gunicorn", "uvicorn") if _mentions(tokens, name)]
    if not servers:
        return []
    workers = _flag_value(tokens, ("--workers", "-w"))
    if workers is None:
        workers = variables.get("WEB_CONCURRENCY")
    if workers is None or not workers.isdigit():
        return []
    count = int(workers)
    # gunicorn's documentation suggests (2 x cores) + 1 workers.
    cores = max(1, math.ceil(cpu_cores))
    ceiling = 2 * cores + 1
    server = servers[0]
    if count > ceiling:
        return [
            f"{server} runs {count} workers on {cpu_cores * 1000:.0f}m of CPU, more "
            f"than (2 x {cores} cores) + 1 = {ceiling}; lower --workers or raise the "
            "CPU."
        ]
    return [
        f"{server} runs {count} workers on {cpu_cores * 1000:.0f}m of CPU, within "
        f"(2 x {cores} cores) + 1 = {ceiling}."
    ]


def _jvm_hints(tokens: Sequence[str], memory_limit_bytes: int) -> list[str]:
    hints = []
    limit_mib = memory_limit_bytes / 2**20
    for token in tokens:
        heap = _XMX.match(token)
        if heap:
            heap_bytes = int(heap.group(1)) * _SIZE_SUFFIX_BYTES[heap.group(2).lower()]
            share = heap_bytes / memory_limit_bytes
            if share > MAX_HEAP_SHARE:
                hints.append(
                    f"{token} is {share:.0%} of the {limit_mib:.0f} MiB memory "
                    f"limit, which leaves too little for the JVM's non-heap memory; "
                    f"set -Xmx at most "
                    f"{math.floor(memory_limit_bytes * MAX_HEAP_SHARE / 2**20)}m or "
                    "raise the limit."
                )
            else:
                hints.append(
                    f"{token} is {share:.0%} of the {limit_mib:.0f} MiB memory limit."
                )
        percentage = _MAX_RAM_PERCENTAGE.match(token)
        if percentage:
            percent = float(percentage.group(1))
            heap_mib = limit_mib * percent / 100
            verdict = (
                "which leaves too little for non-heap memory; use 75 or less"
                if percent > MAX_HEAP_SHARE * 100
                else "which leaves room for non-heap memory"
            )
            hints.append(
                f"{token} gives a {heap_mib:.0f} MiB heap under the "
                f"{limit_mib:.0f} MiB memory limit, {verdict}."
            )
    return hints


def _node_hint(tokens: Sequence[str], memory_limit_bytes: int) -> list[str]:
    limit_mib = memory_limit_bytes / 2**20
    for token in tokens:
        heap = _NODE_HEAP.match(token)
        if heap:
            heap_mib = int(heap.group(1))
            if heap_mib > limit_mib * MAX_HEAP_SHARE:
                return [
                    f"{token} lets V8's old space grow to {heap_mib} MiB of the "
                    f"{limit_mib:.0f} MiB memory limit, so the kernel may OOM-kill "
                    f"Node before it collects garbage; set it at most "
                    f"{math.floor(limit_mib * MAX_HEAP_SHARE)}."
                ]
            return [
                f"{token} keeps V8's old space within the {limit_mib:.0f} MiB memory "
                "limit."
            ]
    return []


def _mentions(tokens: Sequence[str], program: str) -> bool:
    return any(token.rsplit("/", 1)[-1] == program for token in tokens)


def _flag_value(tokens: Sequence[str], names: Sequence[str]) -> str | None:
    for index, token in enumerate(tokens):
        for name in names:
            if token == name and index + 1 < len(tokens):
                return tokens[index + 1]
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
    return None
