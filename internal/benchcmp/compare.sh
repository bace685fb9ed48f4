#!/usr/bin/env bash
# compare.sh is what `task bench:compare` runs: Brace beside its peers,
# summarised, with the targets checked. Run it from anywhere:
#
#	COUNT=6 BENCHTIME=300ms OUT=out bash internal/benchcmp/compare.sh
#
# It vets and tests the module, builds the test binary once, and runs the
# whole suite COUNT times, interleaved (one -test.count 1 run per round,
# so that a burst of load on a shared machine spreads over every
# implementation instead of skewing one), each round followed by the
# scaling check (the parallel success paths with -cpu 1,2). It records the
# machine, the Go version and the load average (before, at each round,
# after) in the results, then prints benchstat's summaries (medians with
# their 95% confidence intervals) and cmd/benchtab's tables and target
# verdicts. Everything goes to OUT (relative to this directory; default
# out, ignored by git): compare.txt and scaling.txt (raw), benchstat.txt,
# benchstat-scaling.txt, tables.md.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-300ms}
OUT=${OUT:-out}
# benchstat at the version of golang.org/x/perf that go.mod requires.
BENCHSTAT=golang.org/x/perf/cmd/benchstat
SCALING='(Retry|Breaker|Backpressure|Composed)$/^path=(success|closed|closed-rate|admitted|busy)$/^mode=par$'

load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | sed 's/ /, /g' || uptime | sed 's/.*load average[s]*: //'; }

go vet ./...
go test ./...
mkdir -p "$OUT"
go test -c -o "$OUT/benchcmp.test" .
{
	echo "go: $(go version | cut -d' ' -f3)"
	echo "machine: $(uname -srm)"
	echo "cpus: $(getconf _NPROCESSORS_ONLN)"
	echo "rounds: $COUNT"
	echo "benchtime: $BENCHTIME"
	echo "load-before: $(load)"
} >"$OUT/compare.txt"
cp "$OUT/compare.txt" "$OUT/scaling.txt"
during=()
for i in $(seq "$COUNT"); do
	during+=("$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')")
	echo "round $i of $COUNT (1-minute load ${during[-1]})"
	"$OUT/benchcmp.test" -test.run '^$' -test.bench . -test.benchmem \
		-test.benchtime "$BENCHTIME" -test.count 1 >>"$OUT/compare.txt"
	"$OUT/benchcmp.test" -test.run '^$' -test.benchmem -test.benchtime "$BENCHTIME" -test.count 1 -test.cpu 1,2 \
		-test.bench "$SCALING" >>"$OUT/scaling.txt"
done
{
	echo "load-during: ${during[*]}"
	echo "load-after: $(load)"
} | tee -a "$OUT/compare.txt"
rm "$OUT/benchcmp.test"
go run "$BENCHSTAT" "$OUT/compare.txt" | tee "$OUT/benchstat.txt"
go run "$BENCHSTAT" -col /gomaxprocs "$OUT/scaling.txt" | tee "$OUT/benchstat-scaling.txt"
go run ./cmd/benchtab "$OUT/compare.txt" "$OUT/scaling.txt" | tee "$OUT/tables.md"
