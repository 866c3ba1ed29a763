"""Peak memory of a benchmark's process tree, sampled from /proc by the parent.

The tree of one benchmark worker is: the Python driver, the JVM it launches (in
local mode the JVM is both the Spark driver and the executor) and the Python workers
the JVM forks for pandas UDFs (``pyspark.daemon`` and its children). The sampler
reads every process's resident set size (VmRSS) a few times a second and keeps the
peak of each group's sum. Sampling can miss a spike shorter than the interval.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

GROUPS = ("driver_python", "jvm", "python_workers")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: fields after the last ')' are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def classify(pid: int, root: int) -> str | None:
    if pid == root:
        return "driver_python"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    exe = cmd.split(" ", 1)[0]
    if exe.endswith("java"):
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "python_workers"
    return None


@dataclass
class TreeSampler:
    """Samples the process tree under ``root`` in a background thread until stopped."""

    root: int
    interval: float = 0.25
    peaks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0))
    peak_total: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        sums = dict.fromkeys(GROUPS, 0)
        for pid in descendants(self.root):
            group = classify(pid, self.root)
            if group:
                sums[group] += rss_bytes(pid)
        for g, v in sums.items():
            self.peaks[g] = max(self.peaks[g], v)
        self.peak_total = max(self.peak_total, sum(sums.values()))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        mib = {f"peak_rss_{g}_mib": round(v / 2**20, 1) for g, v in self.peaks.items()}
        mib["peak_rss_total_mib"] = round(self.peak_total / 2**20, 1)
        mib["memory_samples"] = float(self.samples)
        return mib
