#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 20) on its seed
# corpus, one after the other, then prints the executions per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on the stable
# toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (AddressSanitizer).
# New inputs go to a scratch directory, not into corpus/; a crash is written to
# fuzz/artifacts/<target>/ and makes the script exit 1 once every target has run.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/huddle-fuzz-target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# The bundled SQLite amalgamation (linked in through huddle-storage) has two
# static arrays named aiOff, which ASan's ODR check takes for a violation.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

cargo fuzz build
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "artifacts/$t"
  log="$scratch/$t.log"
  status=ok
  "$CARGO_TARGET_DIR/$triple/release/$t" "$scratch/$t" "corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=CRASH
  # libFuzzer's final stats, or its "#N DONE" line
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -1)"
  corpus=$(($(ls "corpus/$t" | wc -l) + $(ls "$scratch/$t" | wc -l)))
  summary+=("$(printf '%-20s %6ss %12s execs %7s corpus  %s' "$t" "$seconds" "${execs:-?}" "$corpus" "$status")")
  if [ "$status" != ok ]; then
    failed+=("$t")
    echo "== $t crashed; the end of its log:" >&2
    tail -40 "$log" >&2
  fi
done

echo
echo "fuzz targets, ${seconds}s each:"
printf '%s\n' "${summary[@]}"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
