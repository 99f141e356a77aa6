"""Ray and Dask on the shapes of the Python benchmark (benchmarks/benches/python.rs), measured in
the same run as faasflow: a chain of no-op tasks, a fan-out of 100, and a numpy array handed from
the driver to a task in another process.

    python reference.py ray|dask RUNS
    python reference.py ray-edges RUNS

prints one JSON object of medians, in µs:
  chain1, chain50: a chain of 1 and 50 no-op tasks, each waiting for the one before;
  fanout100: 100 no-op tasks at once, gathered;
  noop_roundtrip: one no-op task given a small argument, submitted and waited for;
  array_1MiB, array_64MiB: the same task given a numpy array of that size (Ray: ray.put, then
  the task reads it from the object store; Dask: scatter, then the task).

`ray-edges` is the shape of the per-edge bench (benchmarks/benches/edges.rs): a chain of 50
tasks that each sleep 0, 20 µs, 1 ms or 10 ms and pass nothing or 1 KiB to the next; it prints,
by `WORKus_BYTESB`, the median added per edge: (chain time − 50 × the task's own time) / 49,
the task's own time being the median of the same body run in the driver.
"""

import json
import statistics
import sys
import time

import numpy

WORKERS = 2


def noop(x=None):
    return None


def nbytes(a):
    return a.nbytes


def median_us(f, runs, warmup=3):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def ray_figures(runs):
    import ray

    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    f = ray.remote(noop)
    g = ray.remote(nbytes)

    def chain(n):
        def run():
            x = f.remote(None)
            for _ in range(n - 1):
                x = f.remote(x)
            ray.get(x)

        return run

    out = {
        "chain1": median_us(chain(1), runs),
        "chain50": median_us(chain(50), runs),
        "fanout100": median_us(lambda: ray.get([f.remote(i) for i in range(100)]), runs),
        "noop_roundtrip": median_us(lambda: ray.get(f.remote(1)), runs),
    }
    for name, size in (("array_1MiB", 1 << 20), ("array_64MiB", 64 << 20)):
        a = numpy.ones(size // 8, dtype=numpy.float64)
        out[name] = median_us(lambda: ray.get(g.remote(ray.put(a))), runs)
    out["version"] = ray.__version__
    ray.shutdown()
    return out


def work(us, size, x=None):
    if us:
        time.sleep(us / 1e6)
    return bytes(size) if size else None


def ray_edges(runs):
    import ray

    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    f = ray.remote(work)
    out = {}
    for us, n_runs in ((0, runs), (20, runs), (1000, max(runs * 2 // 3, 3)), (10000, max(runs // 4, 2))):
        for size in (0, 1024):
            own = median_us(lambda: work(us, size), 20)

            def run():
                x = f.remote(us, size, None)
                for _ in range(49):
                    x = f.remote(us, size, x)
                ray.get(x)

            out[f"{us}us_{size}B"] = (median_us(run, n_runs) - 50 * own) / 49
    out["version"] = ray.__version__
    ray.shutdown()
    return out


def dask_figures(runs):
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)

    def chain(n):
        def run():
            x = client.submit(noop, None, pure=False)
            for _ in range(n - 1):
                x = client.submit(noop, x, pure=False)
            x.result()

        return run

    out = {
        "chain1": median_us(chain(1), runs),
        "chain50": median_us(chain(50), runs),
        "fanout100": median_us(lambda: client.gather(client.map(noop, range(100), pure=False)), runs),
        "noop_roundtrip": median_us(lambda: client.submit(noop, 1, pure=False).result(), runs),
    }
    for name, size in (("array_1MiB", 1 << 20), ("array_64MiB", 64 << 20)):
        a = numpy.ones(size // 8, dtype=numpy.float64)

        def run():
            fut = client.scatter(a, hash=False)
            client.submit(nbytes, fut, pure=False).result()
            client.cancel(fut)

        out[name] = median_us(run, max(runs // 2, 3))
    out["version"] = dask.__version__
    client.close()
    cluster.close()
    return out


def main():
    which = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    if which == "ray-edges":
        figures = ray_edges(runs)
    else:
        figures = ray_figures(runs) if which == "ray" else dask_figures(runs)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
