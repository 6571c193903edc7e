#!/usr/bin/env python
"""Throughput and memory of the lab's embedded IPFS (add --only-hash, add, cat; optionally over Kubo's RPC).

For each file size (1 MB, 50 MB and 500 MB by default; decimal MB) a file of random bytes is
written in 4 MiB pieces to a temporary directory, then timed (best of ``--repeats``, MB/s with
MB = 10^6 bytes):

- ``sha256``: hashlib's SHA-256 of the file read in 1 MiB pieces: the ceiling, since every add
  hashes every byte once;
- ``add --only-hash``, CIDv0 and CIDv1 (raw leaves): ``EmbeddedStore().add(path, only_hash=True)``;
- ``add`` (CIDv0) into an on-disk ``EmbeddedStore`` (CID and store: block files written, not
  fsynced, ``durable=False``), a fresh store directory for each repeat;
- ``cat`` from that on-disk store: ``iter_cat`` drained and discarded (every block re-hashed
  against its CID on the way);
- with ``--kubo`` (on unless ``--quick``): the same add and cat through ``KuboStore`` against an
  ``RpcServer`` over an on-disk ``EmbeddedStore`` in the same process (HTTP over loopback).

The file was just written, so reads come from the page cache: the numbers are CPU cost, not disk.

Memory: each operation also runs once per size in a fresh process (this script's hidden
``--one OP FILE STORE`` mode). After imports and setup (store, server, client) it resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), notes its RSS, runs the operation, and reports
its peak RSS (``VmHWM``) minus that baseline. ``ru_maxrss`` is recorded too but not used where
``/proc`` exists: after ``exec`` it keeps the peak of the parent's forked image, which the reset does
not clear. A control operation that reads the whole file into memory shows that the meter sees growth.

Targets: ``add --only-hash`` (CIDv0) of the 50 MB file >= 500 MB/s; for every operation, peak RSS
growth <= 64 MiB at every size and at most 8 MiB more at the largest size than at the smallest
(memory flat in file size). Also checked: the CIDs of only-hash, store add and Kubo add agree, and
cat returns every byte.

    cd /work/main && .venv/bin/python benchmarks/ipfs.py [--sizes 1,50,500] [--quick] [--repeats 3] [--strict]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from _provenance import git_provenance
from tqdm import tqdm

from din_lab.storage.embedded import EmbeddedStore

log = logging.getLogger("benchmarks.ipfs")

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000
MiB = 1 << 20
WRITE_PIECE = 4 * MiB
READ_PIECE = MiB
DEFAULT_SIZES_MB = (1, 50, 500)
QUICK_SIZES_MB = (1, 50)
TARGET_ONLY_HASH_MBPS = 500.0
TARGET_ONLY_HASH_SIZE = 50 * MB
MEMORY_MAX_GROWTH_MIB = 64.0  # peak RSS growth of any operation, at any size
MEMORY_MAX_INCREASE_MIB = 8.0  # growth at the largest size minus growth at the smallest
CONTROL = "control_read_whole"
CONTROL_MIN_BYTES = 32 * MB  # smaller whole-file reads are too close to allocator noise to judge the meter

OPS: dict[str, str] = {
    "sha256": "SHA-256 of the file, 1 MiB reads (ceiling)",
    "only_hash_v0": "add --only-hash, CIDv0",
    "only_hash_v1": "add --only-hash, CIDv1 (raw leaves)",
    "add_disk": "add to on-disk store (CIDv0)",
    "cat_disk": "cat from on-disk store",
    "kubo_add": "Kubo RPC add (in-process daemon, disk)",
    "kubo_cat": "Kubo RPC cat (in-process daemon, disk)",
    CONTROL: "(control) read whole file into memory",
}
KUBO_OPS = ("kubo_add", "kubo_cat")
ADD_OPS = ("add_disk", "kubo_add")  # need a fresh, empty store directory
CAT_OPS = ("cat_disk", "kubo_cat")  # need a store that holds the file


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    return tqdm(items, desc=desc, total=total, leave=False, disable=None, file=sys.stderr)


def size_label(nbytes: int) -> str:
    return f"{nbytes / MB:g} MB"


# ----------------------------------------------------------------------------- the operations


def write_random_file(path: Path, nbytes: int) -> None:
    """``nbytes`` of os.urandom, written in 4 MiB pieces (never held whole)."""
    with open(path, "wb") as f:
        left = nbytes
        while left:
            piece = os.urandom(min(WRITE_PIECE, left))
            f.write(piece)
            left -= len(piece)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while piece := f.read(READ_PIECE):
            h.update(piece)
    return h.hexdigest()


def drain(chunks: Iterable[bytes]) -> int:
    """Consume and discard; the number of bytes seen."""
    n = 0
    for chunk in chunks:
        n += len(chunk)
    return n


def stored_cid(store_dir: Path) -> str:
    """The one pinned root of a store populated by :func:`populate`."""
    (cid,) = EmbeddedStore(path=store_dir).pins()
    return str(cid)


def populate(file: Path, store_dir: Path) -> str:
    return str(EmbeddedStore(path=store_dir).add(file))


@contextlib.contextmanager
def operation(op: str, file: Path, store_dir: Path | None) -> Iterator[Callable[[], Any]]:
    """Set up ``op`` (stores, server, client: not measured) and yield the call to measure.

    The call returns a CID (adds), a byte count (cat, control) or a hex digest (sha256)."""
    if op == "sha256":
        yield lambda: sha256_file(file)
    elif op == CONTROL:
        yield lambda: len(file.read_bytes())
    elif op in ("only_hash_v0", "only_hash_v1"):
        store = EmbeddedStore()
        version = int(op[-1])
        yield lambda: str(store.add(file, only_hash=True, cid_version=version))
    elif op == "add_disk":
        store = EmbeddedStore(path=store_dir)
        yield lambda: str(store.add(file))
    elif op == "cat_disk":
        store = EmbeddedStore(path=store_dir)
        cid = stored_cid(store_dir)
        yield lambda: drain(store.iter_cat(cid))
    elif op in KUBO_OPS:
        from din_lab.storage.daemon import RpcServer
        from din_lab.storage.kubo import KuboStore

        backing = EmbeddedStore(path=store_dir)
        cid = stored_cid(store_dir) if op == "kubo_cat" else None
        server = RpcServer(backing, port=0).start()
        try:
            client = KuboStore(server.url)
            try:
                if op == "kubo_add":
                    yield lambda: str(client.add(file))
                else:
                    yield lambda: drain(client.iter_cat(cid))
            finally:
                client.close()
        finally:
            server.stop()
    else:
        raise ValueError(f"unknown operation {op!r}")


# ----------------------------------------------------------------------------- timing


def time_op(op: str, file: Path, nbytes: int, work: Path, *, repeats: int, cat_store: Path | None,
            bar: Any) -> dict[str, Any]:
    """Best of ``repeats`` wall-clock times of ``op`` on ``file``."""
    seconds: list[float] = []
    result: Any = None
    for i in range(repeats):
        fresh = work / f"{op}-{i}" if op in ADD_OPS else None
        with operation(op, file, fresh if op in ADD_OPS else cat_store) as fn:
            t = time.perf_counter()
            result = fn()
            seconds.append(time.perf_counter() - t)
        if fresh is not None:
            shutil.rmtree(fresh)
        bar.update(1)
    if op in CAT_OPS and result != nbytes:
        raise RuntimeError(f"{op} returned {result} bytes of a {nbytes}-byte file")
    best = min(seconds)
    out = {"seconds": [round(s, 6) for s in seconds], "best_seconds": round(best, 6),
           "mb_per_s": round(nbytes / MB / best, 1)}
    if op in ADD_OPS or op.startswith("only_hash"):
        out["cid"] = result
    log.info("%8s  %-42s best %8.3f s  %8.1f MB/s", size_label(nbytes), OPS[op], best, out["mb_per_s"])
    return out


# ----------------------------------------------------------------------------- memory


def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _maxrss_kib() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so import-time peaks do not mask the operation."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def one(op: str, file: Path, store: str) -> dict[str, Any]:
    """Hidden ``--one`` mode: run ``op`` once in this (fresh) process and report its peak RSS growth."""
    store_dir = None if store == "-" else Path(store)
    with operation(op, file, store_dir) as fn:
        reset = _reset_peak()
        baseline = _proc_status_kib("VmRSS") if reset else None
        if baseline is None:  # no /proc: the peak so far stands for the baseline
            baseline = _maxrss_kib()
        t = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t
        maxrss = _maxrss_kib()
        hwm = _proc_status_kib("VmHWM")
    # after exec, ru_maxrss still holds the peak of the image that exec'd (the parent's copy, tens of MB),
    # which clear_refs does not reset: VmHWM is the peak of this process alone; ru_maxrss without /proc
    source = "VmHWM" if reset and hwm is not None else "ru_maxrss"
    peak = hwm if source == "VmHWM" else maxrss
    return {"op": op, "bytes": file.stat().st_size, "baseline_rss_kib": baseline, "peak_rss_kib": peak,
            "peak_source": source, "ru_maxrss_kib": maxrss, "vmhwm_kib": hwm,
            "peak_reset": reset,
            "growth_mib": round((peak - baseline) / 1024, 2), "seconds": round(seconds, 4),
            "result": result if isinstance(result, (int, str)) else None}


def measure_memory(op: str, file: Path, store: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", op, str(file), str(store) if store else "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one size


def run_size(nbytes: int, root: Path, *, ops: list[str], repeats: int, bar: Any) -> dict[str, Any]:
    work = root / f"size-{nbytes}"
    work.mkdir()
    try:
        file = work / "data.bin"
        t = time.perf_counter()
        write_random_file(file, nbytes)
        log.info("%8s  wrote %s in %.1f s", size_label(nbytes), file, time.perf_counter() - t)
        cat_store = work / "cat-store"
        cat_cid = populate(file, cat_store)

        timings = {}
        for op in ops:
            timings[op] = time_op(op, file, nbytes, work, repeats=repeats, cat_store=cat_store, bar=bar)

        memory = {}
        for op in [*ops, CONTROL]:
            store = work / f"mem-{op}" if op in ADD_OPS else cat_store if op in CAT_OPS else None
            memory[op] = measure_memory(op, file, store)
            if op in CAT_OPS and memory[op]["result"] != nbytes:
                raise RuntimeError(f"{op} (fresh process) returned {memory[op]['result']} bytes of {nbytes}")
            if store is not None and op in ADD_OPS:
                shutil.rmtree(store, ignore_errors=True)
            log.info("%8s  %-42s peak RSS growth %7.1f MiB", size_label(nbytes), OPS[op], memory[op]["growth_mib"])
            bar.update(1)

        cids = {op: timings[op]["cid"] for op in ("only_hash_v0", "add_disk", "kubo_add") if op in timings}
        cids["populate"] = cat_cid
        if memory.get("add_disk", {}).get("result"):
            cids["add_disk (fresh process)"] = memory["add_disk"]["result"]
        return {"bytes": nbytes, "mb": nbytes / MB, "timings": timings, "memory": memory, "cids_v0": cids,
                "cid_v1": timings.get("only_hash_v1", {}).get("cid")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- checks, table


def checks(results: list[dict[str, Any]], ops: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by_size = {r["bytes"]: r for r in results}
    target = by_size.get(TARGET_ONLY_HASH_SIZE)
    label = f"add --only-hash CIDv0 >= {TARGET_ONLY_HASH_MBPS:,.0f} MB/s ({size_label(TARGET_ONLY_HASH_SIZE)} file)"
    if target is not None:
        v = target["timings"]["only_hash_v0"]["mb_per_s"]
        out.append({"check": label, "value": v, "unit": "MB/s", "pass": v >= TARGET_ONLY_HASH_MBPS,
                    "beside": f"SHA-256 alone {target['timings']['sha256']['mb_per_s']:,.0f} MB/s"})
    else:
        out.append({"check": f"(not judged: no {size_label(TARGET_ONLY_HASH_SIZE)} size) {label}", "value": None,
                    "unit": "MB/s", "pass": None})

    ordered = sorted(results, key=lambda r: r["bytes"])
    lo, hi = ordered[0], ordered[-1]
    for op in ops:
        growths = [r["memory"][op]["growth_mib"] for r in ordered]
        worst = max(growths)
        increase = hi["memory"][op]["growth_mib"] - lo["memory"][op]["growth_mib"]
        if len(ordered) > 1:
            ok = worst <= MEMORY_MAX_GROWTH_MIB and increase <= MEMORY_MAX_INCREASE_MIB
            out.append({"check": f"memory flat: {OPS[op]}: peak RSS growth <= {MEMORY_MAX_GROWTH_MIB:g} MiB at every "
                                 f"size, +<= {MEMORY_MAX_INCREASE_MIB:g} MiB from {size_label(lo['bytes'])} to "
                                 f"{size_label(hi['bytes'])}",
                        "value": f"{lo['memory'][op]['growth_mib']:.1f} -> {hi['memory'][op]['growth_mib']:.1f} MiB "
                                 f"(max {worst:.1f}, {increase:+.1f})", "pass": ok})
        else:  # one size: only the absolute bound can be judged
            out.append({"check": f"memory: {OPS[op]}: peak RSS growth <= {MEMORY_MAX_GROWTH_MIB:g} MiB "
                                 f"({size_label(hi['bytes'])}; flatness needs two sizes)",
                        "value": f"{worst:.1f} MiB", "pass": worst <= MEMORY_MAX_GROWTH_MIB})
    # the control is judged only when the largest file is big enough to stand out from allocator noise
    c = [r["memory"][CONTROL]["growth_mib"] for r in ordered]
    judged = hi["bytes"] >= CONTROL_MIN_BYTES
    label = "the meter sees a whole-file read: growth at the largest size >= 90% of the file"
    out.append({"check": f"(control) {label}" if judged else
                f"(control, not judged below {size_label(CONTROL_MIN_BYTES)}) {label}",
                "value": f"{c[0]:.1f} -> {c[-1]:.1f} MiB (file {hi['bytes'] / MiB:.1f} MiB)",
                "pass": c[-1] >= 0.9 * hi["bytes"] / MiB if judged else None})

    agree = all(len(set(r["cids_v0"].values())) == 1 for r in results)
    out.append({"check": "CIDv0 of only-hash, store add (and Kubo add) agree at every size",
                "value": "yes" if agree else "NO", "pass": agree})
    return out


def table(results: list[dict[str, Any]], ops: list[str], check_rows: list[dict[str, Any]],
          info: dict[str, Any], repeats: int) -> str:
    sizes = [r["bytes"] for r in results]
    width = max(len(v) for v in OPS.values()) + 2
    col = 12

    def header() -> list[str]:
        return ["operation".ljust(width) + "".join(size_label(n).rjust(col) for n in sizes),
                "-" * (width + col * len(sizes))]

    lines = [f"embedded IPFS throughput, MB/s (MB = 10^6 bytes), best of {repeats}; file in the page cache",
             f"{info['cpu_model']}, {info['cpu_count']} CPUs, Python {info['python']}, {info['openssl']}"
             + (", SHA-NI" if info.get("sha_ni") else ""), ""]
    lines += header()
    for op in ops:
        lines.append(OPS[op].ljust(width) + "".join(f"{r['timings'][op]['mb_per_s']:,.0f}".rjust(col)
                                                    for r in results))
    lines += ["", "peak RSS growth, MiB, one run in a fresh process (above its RSS after imports and setup)"]
    lines += header()
    for op in [*ops, CONTROL]:
        lines.append(OPS[op].ljust(width) + "".join(f"{r['memory'][op]['growth_mib']:,.1f}".rjust(col)
                                                    for r in results))
    lines += ["", "targets"]
    for c in check_rows:
        verdict = "info" if c["pass"] is None else "PASS" if c["pass"] else "FAIL"
        value = c["value"]
        if isinstance(value, float):
            value = f"{value:,.0f} {c.get('unit', '')}".rstrip()
        text = f"  {verdict}  {c['check']}" + ("" if value is None else f": {value}")
        if c.get("beside"):
            text += f" ({c['beside']})"
        lines.append(text)
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "implementation": platform.python_implementation(), "platform": platform.platform(),
                            "openssl": ssl.OPENSSL_VERSION, "cpu_model": platform.processor() or platform.machine()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        if m:
            info["cpu_model"] = m.group(1).strip()
        flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
        if flags:
            info["sha_ni"] = "sha_ni" in flags.group(1).split()
    with contextlib.suppress(OSError, AttributeError, ValueError):
        info["memory_total_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    return info


def provenance() -> dict[str, Any]:
    """Which code was measured: git commit and uncommitted changes to the storage package."""
    out: dict[str, Any] = {}
    out.update(git_provenance("din_lab/storage", "din_lab/cid.py"))
    return out


# ----------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [round(float(s) * MB) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"sizes are decimal MB, comma separated: {text!r}") from e
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sorted(set(sizes))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one"]:  # hidden: one operation in this fresh process, JSON on stdout
        if len(argv) != 4:
            print("usage: ipfs.py --one OP FILE STORE|-", file=sys.stderr)
            return 2
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(one(argv[1], Path(argv[2]), argv[3])))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help=f"file sizes in decimal MB, comma separated (default {','.join(map(str, DEFAULT_SIZES_MB))})")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {','.join(map(str, QUICK_SIZES_MB))} only, and no Kubo RPC unless --kubo")
    ap.add_argument("--kubo", action=argparse.BooleanOptionalAction, default=None,
                    help="also add and cat through KuboStore against an in-process RpcServer (default: on, off "
                         "with --quick)")
    ap.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs (default 3)")
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()),
                    help="where the test files and stores go (needs about 3.5x the largest size free)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ipfs.json")
    ap.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for name in ("din_lab", "urllib3", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    sizes = args.sizes or [n * MB for n in (QUICK_SIZES_MB if args.quick else DEFAULT_SIZES_MB)]
    kubo = (not args.quick) if args.kubo is None else args.kubo
    ops = [op for op in OPS if op != CONTROL and (kubo or op not in KUBO_OPS)]

    args.tmp.mkdir(parents=True, exist_ok=True)
    need = int(3.5 * max(sizes)) + 100 * MB  # file, cat store, one add store; a margin
    free = shutil.disk_usage(args.tmp).free
    if free < need:
        ap.error(f"{args.tmp} has {free / 1e9:.1f} GB free, the run needs about {need / 1e9:.1f} GB: choose --tmp")

    info = machine_info()
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="din-lab-ipfs-bench-", dir=args.tmp))
    log.info("sizes %s, repeats %d, Kubo RPC %s, work in %s", ", ".join(map(size_label, sizes)), args.repeats,
             "on" if kubo else "off", root)
    results = []
    try:
        total = len(sizes) * (len(ops) * args.repeats + len(ops) + 1)
        with tqdm(total=total, desc="ipfs bench", leave=False, disable=None, file=sys.stderr) as bar:
            for n in sizes:
                results.append(run_size(n, root, ops=ops, repeats=args.repeats, bar=bar))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    check_rows = checks(results, ops)
    print(table(results, ops, check_rows, info, args.repeats))
    elapsed = time.perf_counter() - t0
    print(f"\ntotal runtime {elapsed:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "description": "throughput and peak memory of the embedded IPFS store (benchmarks/ipfs.py)",
        "machine": info,
        "provenance": provenance(),
        "settings": {"sizes_bytes": sizes, "repeats": args.repeats, "kubo_rpc": kubo, "mb": MB,
                     "timing": "best wall-clock time of the repeats; the file is in the page cache",
                     "store": "EmbeddedStore(path=..., durable=False); a fresh directory for each add",
                     "memory": "peak RSS (VmHWM; ru_maxrss without /proc) of one run in a fresh process minus "
                               "its RSS after imports and setup, the peak mark reset through /proc/self/clear_refs",
                     "parent_peak_rss_mib": round(_maxrss_kib() / 1024, 1),
                     "operations": {op: OPS[op] for op in [*ops, CONTROL]}},
        "targets": {"only_hash_v0_mb_per_s": TARGET_ONLY_HASH_MBPS, "only_hash_size_bytes": TARGET_ONLY_HASH_SIZE,
                    "memory_max_growth_mib": MEMORY_MAX_GROWTH_MIB,
                    "memory_max_increase_mib": MEMORY_MAX_INCREASE_MIB},
        "results": results,
        "checks": check_rows,
        "runtime_seconds": round(elapsed, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 1 if args.strict and any(c["pass"] is False for c in check_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
