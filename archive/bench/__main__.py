"""``python -m archive.bench STORE QUERIES`` (or ``--shards STORE... QUERIES``): the query-timing
child process of ``archive bench``; it prints one JSON object."""

import json
import sys

from archive.bench.queries import bench_queries, bench_sharded_queries

if sys.argv[1] == "--shards":
    print(json.dumps(bench_sharded_queries(sys.argv[2:-1], int(sys.argv[-1]))))
else:
    print(json.dumps(bench_queries(sys.argv[1], int(sys.argv[2]))))
