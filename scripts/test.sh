#!/usr/bin/env bash
# Runs every Brokkr test. Installs what the tests need when it is missing
# (ZooKeeper, kcat, python3-confluent-kafka), so it works on a fresh machine.
#
#   ./scripts/test.sh            # everything: vet, unit + integration tests, short fuzz runs
#   FUZZTIME=30s ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s zookeeper >/dev/null 2>&1 || need+=(zookeeper)
dpkg -s kcat >/dev/null 2>&1 || need+=(kcat)
dpkg -s python3-confluent-kafka >/dev/null 2>&1 || need+=(python3-confluent-kafka)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing test dependencies: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== go vet"
go vet ./...

echo "== go build"
mkdir -p bin
CGO_ENABLED=0 go build -o bin/brokkr ./cmd/brokkr

echo "== go test"
# Packages run two at a time (2 cores); every test bounds its own loops and time.
go test -count=1 -p 2 -timeout 25m ./...

# Short fuzz runs of every fuzz target, seeded by the corpus under testdata/fuzz.
FUZZTIME=${FUZZTIME:-10s}
echo "== fuzz (${FUZZTIME} each)"
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  pkg="./$(dirname "${f#./}")"
  for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$f" | awk '{print $2}'); do
    echo "-- $pkg $fn"
    go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" "$pkg"
  done
done
echo "== all tests passed"
