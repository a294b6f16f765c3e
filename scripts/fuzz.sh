#!/usr/bin/env bash
# make fuzz: run every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 60).
#
#   scripts/fuzz.sh                       all targets, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh sse_assemble resp_decode
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address...). With only the stable toolchain
# this runs it with RUSTC_BOOTSTRAP=1, which unlocks them on stable; FUZZ_TOOLCHAIN=nightly uses
# a nightly toolchain instead. cargo-fuzz itself is installed into .tools/ (git-ignored) when it
# is not on PATH.
#
# Each target starts from fuzz/seeds/<target>/ and keeps what it learns in fuzz/corpus/<target>/
# (git-ignored), its output in fuzz/logs/<target>.log (git-ignored; the last progress line of
# each is summarised at the end). libFuzzer runs in fork mode and goes on after a crash; every crashing input
# (and timeout / out-of-memory input) is copied to testdata/fuzz/<target>/, which the stable
# regression test crates/core/tests/fuzz_regressions.rs replays. The script exits 1 when a run
# found something new. Not part of CI.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-2048}

if command -v cargo-fuzz >/dev/null 2>&1; then
  CARGO_FUZZ=(cargo-fuzz)
elif [ -x "$ROOT/.tools/bin/cargo-fuzz" ]; then
  CARGO_FUZZ=("$ROOT/.tools/bin/cargo-fuzz")
else
  echo "fuzz: installing cargo-fuzz into .tools/" >&2
  cargo install cargo-fuzz --locked --root "$ROOT/.tools"
  CARGO_FUZZ=("$ROOT/.tools/bin/cargo-fuzz")
fi

TOOLCHAIN=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  TOOLCHAIN=("+$FUZZ_TOOLCHAIN")
else
  export RUSTC_BOOTSTRAP=1
fi

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <("${CARGO_FUZZ[@]}" list --fuzz-dir fuzz)
fi

# One build of every target (debug assertions and overflow checks on).
"${CARGO_FUZZ[@]}" build "${TOOLCHAIN[@]}" --fuzz-dir fuzz -a

found=()
summary=()
logs=fuzz/logs
mkdir -p "$logs"
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t" artifacts="fuzz/artifacts/$t" keep="testdata/fuzz/$t"
  mkdir -p "$corpus" "$artifacts" "fuzz/seeds/$t"
  before=$(find "$artifacts" -type f | wc -l)
  echo "=== fuzz: $t for ${FUZZ_SECONDS}s"
  set +e
  "${CARGO_FUZZ[@]}" run "${TOOLCHAIN[@]}" --fuzz-dir fuzz -a "$t" "$corpus" "fuzz/seeds/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -fork="$FUZZ_JOBS" -ignore_crashes=1 -ignore_timeouts=1 \
    -ignore_ooms=1 -rss_limit_mb="$RSS_LIMIT_MB" -timeout=10 -print_final_stats=1 \
    >"$logs/$t.log" 2>&1
  set -e
  tail -n 25 "$logs/$t.log"
  # Fork mode prints no final stats; its last progress line has executions and coverage.
  last=$(grep -E '^#[0-9]+: cov: ' "$logs/$t.log" | tail -n 1 || true)
  summary+=("$(printf '%-18s %s' "$t" "${last:-no progress line (see $logs/$t.log)}")")
  new=0
  while IFS= read -r -d '' f; do
    name=$(basename "$f")
    if [ ! -e "$keep/$name" ]; then
      mkdir -p "$keep"
      cp "$f" "$keep/$name"
      new=$((new + 1))
      echo "fuzz: $t: new finding $keep/$name"
    fi
  done < <(find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \
             -o -name 'leak-*' \) -print0)
  after=$(find "$artifacts" -type f | wc -l)
  if [ "$new" -gt 0 ] || [ "$after" -gt "$before" ]; then
    found+=("$t")
  fi
done

echo "=== fuzz: summary (full logs in $logs/)"
printf '%s\n' "${summary[@]}"

if [ ${#found[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${found[*]} (inputs in testdata/fuzz/<target>/; replay them with" \
       "cargo test -p semcache-core --test fuzz_regressions, or" \
       "RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> <file>)" >&2
  exit 1
fi
echo "fuzz: no findings in ${TARGETS[*]}"
