#!/bin/sh
# bench/run.sh (make bench): runs the benchmarks and writes their figures
# to docs/benchmarks.md (between the markers of each section) and the raw
# JSON lines to build/bench/results.jsonl. Benchmarks are not tests: they
# never fail on a number. Run them on a quiet machine.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/bench
out=build/bench/results.jsonl
: > "$out"
echo "bench: local durable delivery (tandem deliver, 1,000 messages, 3 repetitions)"
python3 bench/bench_deliver.py | tee -a "$out"
echo "bench: LMTP delivery, initial sync, rolling latency, round trips per APPEND"
python3 bench/bench_sync.py | tee -a "$out"
echo "bench: initial sync of 10,000 messages"
BENCH_SYNC_N=10000 BENCH_SYNC_ONLY=initial python3 bench/bench_sync.py | tee -a "$out"
if [ "${BENCH_SCALE_N:-100000}" != 0 ]; then
	echo "bench: initial sync, 10,000 messages, then ${BENCH_SCALE_N:-100000} over 1,000 users x 10 folders (BENCH_SCALE_N=0 skips; minutes, 4 GB of disk)"
	BENCH_SYNC_N=10000 python3 bench/bench_throughput.py sync scale | tee -a "$out"
fi
echo "bench: rolling passes and the replica's syncs under a 200 msg/s LMTP load"
python3 bench/bench_passes.py | tee -a "$out"
echo "bench: a sharded channel catching up (2,000 deliveries, 1 vs 4 shards)"
python3 bench/bench_shards.py | tee -a "$out"
echo "bench: LMTP latency with synchronous replication (sync_rightnow_channel) off and on"
TANDEM_BIN=bin python3 bench/bench_rightnow.py | tee -a "$out"
if [ "$(id -u)" = 0 ] && [ -x /usr/lib/cyrus/bin/master ] && [ -x /usr/lib/cyrus/bin/sync_client ]; then
	echo "bench: tandem vs Cyrus 3.6 on the same data (LMTP, IMAP FETCH, initial sync)"
	python3 bench/bench_cyrus.py | tee -a "$out"
	echo "bench: logins under load, tandem (login cache on and off) vs Cyrus 3.6; the mix from one client address and from one each"
	BENCH_MIX_ADDRS=both python3 bench/bench_login.py | tee -a "$out"
else
	echo "bench: skipping tandem vs Cyrus (Cyrus 3.6 not installed or not root; scripts/deps.sh check installs it)"
fi
python3 bench/report.py "$out" docs/benchmarks.md
echo "bench: figures written to docs/benchmarks.md"
