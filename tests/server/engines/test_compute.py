"""The core budget holds across processes (engines/compute.py): real processes, real flock."""

import subprocess
import sys
import time

HOLDER = """
import sys, time
from server.engines.compute import CoreBudget
budget = CoreBudget(sys.argv[1], cores=int(sys.argv[2]), threads=int(sys.argv[3]))
for _ in range(20):
    with budget:
        start = time.monotonic()
        time.sleep(0.05)
        print(start, time.monotonic(), flush=True)
"""


def _run(tmp_path, cores: int, threads: list[int]) -> list[list[tuple[float, float]]]:
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(cores), str(t)],
                              stdout=subprocess.PIPE, text=True) for t in threads]
    out = []
    for proc in procs:
        text, _ = proc.communicate(30)
        assert proc.returncode == 0
        out.append([tuple(map(float, line.split())) for line in text.splitlines()])
    return out


def _overlaps(a, b) -> int:
    return sum(1 for s1, e1 in a for s2, e2 in b if s1 < e2 and s2 < e1)


def test_full_width_runners_never_decode_at_once(tmp_path):
    a, b = _run(tmp_path, cores=2, threads=[2, 2])
    assert len(a) == len(b) == 20
    assert _overlaps(a, b) == 0


def test_single_thread_runners_share_the_cores(tmp_path):
    a, b = _run(tmp_path, cores=2, threads=[1, 1])
    assert _overlaps(a, b) > 0  # each holds one core: both fit at once


def test_a_dead_holder_releases_its_cores(tmp_path):
    from server.engines.compute import CoreBudget

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom server.engines.compute import CoreBudget\n"
        "b = CoreBudget(sys.argv[1], 2, 2)\nb.__enter__()\nprint('held', flush=True)\n"
        "time.sleep(60)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # as a crashing runner dies, holding the budget
    holder.wait()
    budget = CoreBudget(tmp_path, 2, 2)
    started = time.monotonic()
    with budget:
        pass
    assert time.monotonic() - started < 5
