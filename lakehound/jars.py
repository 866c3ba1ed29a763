"""The JVM jar cache: resolve once at set-up, then every Spark start is offline.

``jars.lock.json`` (committed) names the Maven coordinates LakeHound needs and, after
resolution, every jar file with its SHA-256. ``python -m lakehound.jars resolve``
lets Spark's own Ivy resolver fetch them into ``.cache/ivy`` (the only step that
touches the network), checks the files against the lock and writes
``spark-defaults.conf`` into the project's Spark install so that a plain
``spark-submit`` finds them too. At run time :func:`jar_paths` only reads the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lakehound.errors import SetupError

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "jars.lock.json"
CACHE_DIR = Path(os.environ.get("LAKEHOUND_JAR_CACHE", ROOT / ".cache" / "ivy"))


def _load_lock() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(LOCK_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(f"jar lock file missing: {LOCK_FILE}") from None
    return data


def jar_paths(group: str = "spark") -> list[str]:
    """Absolute paths of the locked jars of one group, checked to exist."""
    lock = _load_lock()
    jars_dir = CACHE_DIR / "jars"
    entries = lock["groups"][group].get("jars", [])
    if not entries:
        raise SetupError(f"{LOCK_FILE}: group '{group}' has no resolved jars; run `make setup`")
    paths = [jars_dir / e["file"] for e in entries]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SetupError(f"JVM jar missing from the cache: {missing[0]}; run `make setup`")
    return [str(p) for p in paths]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_IVY_SCRIPT = """
import sys
from pyspark.sql import SparkSession
packages, excludes, ivy = sys.argv[1], sys.argv[2], sys.argv[3]
b = (SparkSession.builder.master("local[1]").appName("lakehound-resolve")
     .config("spark.jars.packages", packages).config("spark.jars.ivy", ivy)
     .config("spark.ui.enabled", "false"))
if excludes:
    b = b.config("spark.jars.excludes", excludes)
b.getOrCreate().stop()
"""


def _ivy_resolve(packages: list[str], excludes: list[str], ivy_dir: Path) -> set[str]:
    """Run Spark's Ivy resolution in a child process; return the jar file names it used."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "ivy"
        # Resolve into a scratch Ivy home that shares the persistent cache, so the
        # retrieved jar list is exactly this resolution's, not leftovers.
        (ivy_dir / "cache").mkdir(parents=True, exist_ok=True)
        scratch.mkdir()
        (scratch / "cache").symlink_to(ivy_dir / "cache")
        cmd = [sys.executable, "-c", _IVY_SCRIPT, ",".join(packages), ",".join(excludes)]
        subprocess.run([*cmd, str(scratch)], check=True)
        names = {p.name for p in (scratch / "jars").glob("*.jar")}
        (ivy_dir / "jars").mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(scratch / "jars" / name, ivy_dir / "jars" / name)
    return names


def resolve(update_lock: bool = False) -> None:
    lock = _load_lock()
    for group, spec in lock["groups"].items():
        names = _ivy_resolve(spec["packages"], spec.get("excludes", []), CACHE_DIR)
        resolved = [{"file": n, "sha256": _sha256(CACHE_DIR / "jars" / n)} for n in sorted(names)]
        if update_lock or not spec.get("jars"):
            spec["jars"] = resolved
            print(f"jars[{group}]: locked {len(resolved)} jars")
            continue
        expected = {e["file"]: e["sha256"] for e in spec["jars"]}
        got = {e["file"]: e["sha256"] for e in resolved}
        if expected != got:
            diff = sorted(set(expected.items()) ^ set(got.items()))
            raise SetupError(f"jars[{group}] differ from {LOCK_FILE.name}: {diff[:3]}")
        print(f"jars[{group}]: {len(resolved)} jars match {LOCK_FILE.name}")
    LOCK_FILE.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    write_spark_defaults()


def write_spark_defaults() -> Path:
    """Point the project's own Spark install (in .venv) at the cached jars.

    pyspark launched from Python gets ``spark.jars`` from the session builder, but a
    JVM started by ``spark-submit`` (or a standalone master/worker) reads
    ``$SPARK_HOME/conf/spark-defaults.conf`` before any Python runs.
    """
    import pyspark

    conf_dir = Path(os.environ.get("SPARK_CONF_DIR", Path(pyspark.__file__).parent / "conf"))
    conf_dir.mkdir(parents=True, exist_ok=True)
    target = conf_dir / "spark-defaults.conf"
    lines = [
        "# Written by `python -m lakehound.jars resolve` (make setup); do not edit.",
        f"spark.jars {','.join(jar_paths('spark'))}",
        "spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone UTC",
    ]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehound.jars", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    res = sub.add_parser("resolve", help="fetch the locked jars into .cache/ivy (network)")
    res.add_argument("--update-lock", action="store_true", help="rewrite the lock")
    sub.add_parser("paths", help="print the cached jar paths, comma separated")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "resolve":
            resolve(update_lock=args.update_lock)
        else:
            print(",".join(jar_paths()))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
