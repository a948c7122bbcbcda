#!/usr/bin/env bash
# `make test`: the whole suite -- slow, multi-node and fault-injection tests included -- in two lanes
# run side by side, each its own pytest process:
#   clusters: tests that run their own multi-node clusters or Ray Train jobs (CLUSTER_LANE below);
#   main:     everything else.
# Why two: a lane of Ray tests keeps a 2-core machine only ~60-75 % busy (measured: a multi-node
# training node-loss case 73 %, `ray job submit` end to end 60 %, an S3 outage case 61 %) -- much of
# it is waiting on node-death detection, drains, retries' back-off and process start-up -- so the
# multi-node node-loss cases fit in CI next to the rest instead of after it. They coexist by design:
# every multi-node cluster uses free ports and a private temp dir (never the default-port cluster
# `ray.init()` would find), and each pytest process has its own moto server on a free port.
# Extra arguments go to the main lane's pytest. Exit status: non-zero if either lane failed; the
# cluster lane's log is printed after the main lane's report.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CLUSTER_LANE=(tests/e2e tests/reliability/test_multinode_annotate.py tests/train/test_ray_train.py
              tests/reliability/test_train_faults.py)
ignores=()
for path in "${CLUSTER_LANE[@]}"; do ignores+=("--ignore=$path"); done
mkdir -p .cache
log=.cache/test-cluster-lane.log
start=$SECONDS

"$PY" -m pytest -q -p no:cacheprovider -m "slow or not slow" --durations=25 "${CLUSTER_LANE[@]}" > "$log" 2>&1 &
lane=$!
trap 'kill "$lane" 2>/dev/null' INT TERM

echo "make test: lane 1 of 2 (main) here; lane 2 (multi-node clusters, Ray Train) runs alongside, log: $log"
"$PY" -m pytest -q -m "slow or not slow" --durations=40 "${ignores[@]}" "$@"
main=$?
main_s=$((SECONDS - start))

wait "$lane"
clusters=$?
echo
echo "==== make test: lane 2 of 2 (multi-node clusters, Ray Train): ${CLUSTER_LANE[*]}"
cat "$log"
echo "make test: main lane exit $main in ${main_s} s; cluster lane exit $clusters; both done in $((SECONDS - start)) s"
[ "$main" -eq 0 ] && [ "$clusters" -eq 0 ]
