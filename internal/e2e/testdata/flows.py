"""Runs real Prefect flows against PREFECT_API_URL with Prefect's own client.

usage: python flows.py <name-prefix> <rounds>

Each round runs three flows in this process, each to a different end: one
returns (Completed), one raises (Failed), one outlives its timeout_seconds
(TimedOut, a FAILED-type state). One JSON line per run on stdout:
{"run": <flow run id>, "state": <state name Prefect recorded>}.
"""

import json
import sys
import time

from prefect import flow

prefix, rounds = sys.argv[1], int(sys.argv[2])


@flow(name=prefix + "-ok")
def ok():
    return 1


@flow(name=prefix + "-fails")
def fails():
    raise ValueError("boom")


@flow(name=prefix + "-slow", timeout_seconds=0.5)
def slow():
    time.sleep(5)


for _ in range(rounds):
    for f in (ok, fails, slow):
        state = f(return_state=True)
        run_id = state.state_details.flow_run_id
        print(json.dumps({"run": str(run_id), "state": state.name}), flush=True)
