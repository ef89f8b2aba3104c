#!/usr/bin/env bash
# One call for a GPU window: throughput harness, then the budgeted planner, then one archive.
#
#   scripts/gpu-window.sh [BUDGET] [extra `run` options...]      (BUDGET: 9m by default; 90s, 1h, 0:09:00)
#
# Runs from the repository root of a copy of the project on a machine with PyTorch (MLflow and a
# network are not needed):
#   1. `python -m benchmark perf --seconds 0.5 --repeats 2` on the three MNIST networks (about a
#      minute; an interrupt at its time limit still writes the rows measured), if this version has it;
#   2. while the planner cannot price pgd.table1 here, one of its cells (PGD, seed 0)
#      unbudgeted first (at least 240 s left; see 2a below); then
#      `run --suite lnl.figure4 --suite pgd.table1 --profile paper --device cuda --no-mlflow
#      --time-budget <what is left>` (with `--pack auto` where `run` has it), then `run --all` the
#      same way for whatever time remains
#      (extra options are passed to both, after the defaults, so `--device cpu` or
#      `--profile quick` override them);
#   3. packs the records made in this window, the perf output, the logs and a provenance file
#      (commit, date, nvidia-smi, torch version) into $OUT/runs.tar.gz.
# OUT defaults to ./gpu-out. Records already committed under results/runs are copied into
# $OUT/runs first, so finished runs are not repeated and their measured costs price the plan; only
# new records go into the archive. $OUT then holds runs.tar.gz and provenance.txt only (the device
# tool returns at most 8 files; GPU_WINDOW_KEEP=1 keeps $OUT/runs and $OUT/logs too). Bring the
# records back with `python -m benchmark import runs.tar.gz`.
# The whole call ends within BUDGET (a run that overruns its price is interrupted; it resumes from
# its last epoch checkpoint next time on the same machine).
set -u
T0=$(date +%s)
BUDGET=${1:-9m}
[ $# -gt 0 ] && shift
OUT=${OUT:-./gpu-out}
RESERVE=${GPU_WINDOW_RESERVE_S:-15}  # seconds kept for packing and exit
PY=${PYTHON:-python}

seconds() {  # a duration (9m, 90s, 1h30m, 0:09:00, 540) in whole seconds
  "$PY" -c 'import sys; from benchmark.budget import parse_duration; print(int(parse_duration(sys.argv[1])))' "$1" 2>/dev/null
}
left() { echo $(( TOTAL - ($(date +%s) - T0) - RESERVE )); }

if [ -z "${BENCHMARK_DATA_ROOT:-}" ]; then
  if [ -d shared/data ]; then export BENCHMARK_DATA_ROOT=$PWD/shared/data; else export BENCHMARK_DATA_ROOT=$(cd .. && pwd)/shared/data; fi
fi
TOTAL=$(seconds "$BUDGET") || { echo "error: budget $BUDGET: write e.g. 9m, 90s or 0:09:00" >&2; exit 2; }
mkdir -p "$OUT/runs" "$OUT/logs"
LOG="$OUT/logs/window.log"
echo "gpu-window: budget ${TOTAL}s, data root $BENCHMARK_DATA_ROOT, out $OUT" | tee -a "$LOG"

# Committed records: skip finished runs, price the rest from them; remember which were there.
SEEDED="$OUT/logs/seeded.txt"
: > "$SEEDED"
if [ -d results/runs ]; then
  for f in results/runs/*.json; do
    [ -e "$f" ] || continue
    b=$(basename "$f"); echo "$b" >> "$SEEDED"
    [ -e "$OUT/runs/$b" ] || cp "$f" "$OUT/runs/$b"
  done
fi
ls "$OUT/runs" > "$OUT/logs/before.txt"

# 1. throughput harness, if this version has it
if "$PY" -m benchmark perf --help > /dev/null 2>&1; then
  PERF_S=$(( $(left) < 75 ? $(left) - 15 : 75 ))
  if [ "$PERF_S" -gt 0 ]; then
    # the table goes to $OUT/logs (into the archive), never over the repository's reports/perf
    PERF_ARGS="--seconds 0.5 --repeats 2 --models lnl_convnet simple_convnet lff_mlp --out $OUT/logs"
    echo "perf: python -m benchmark perf $PERF_ARGS (at most ${PERF_S}s)" | tee -a "$LOG"
    timeout --signal=INT "$PERF_S" "$PY" -m benchmark perf $PERF_ARGS > "$OUT/logs/perf.txt" 2>&1
    echo "perf: exit $?" | tee -a "$LOG"
  fi
else
  echo "perf: this version has no \`benchmark perf\`; skipped" | tee -a "$LOG"
fi

# 2. the budgeted planner: the two GPU-window suites first, then the rest
plan() {  # plan NAME RUN-ARGS...
  local name=$1; shift
  local t; t=$(left)
  if [ "$t" -lt 10 ]; then echo "$name: ${t}s left, not started" | tee -a "$LOG"; return; fi
  echo "$name: --time-budget ${t}s" | tee -a "$LOG"
  # the planner never starts a run whose price does not fit; the hard stop below catches a run
  # that overruns its price (it is interrupted and resumes from its checkpoint next time)
  timeout --signal=INT --kill-after=5 "$(( t + 5 ))" "$PY" -m benchmark run "$@" --profile paper --device cuda \
    --no-mlflow --no-progress --results-dir "$OUT/runs" --time-budget "${t}s" "${EXTRA[@]}" \
    > "$OUT/logs/$name.txt" 2>&1
  echo "$name: exit $?" | tee -a "$LOG"
  grep -E "^(Time budget|[0-9]+ run\(s\) (planned|in))" "$OUT/logs/$name.txt" | tee -a "$LOG"
}
EXTRA=("$@")
# packed training (issue 14, item 1), where this version has it; an explicit --pack in the extra options wins
if "$PY" -m benchmark run --help 2>/dev/null | grep -q -- "--pack"; then EXTRA=(--pack auto "${EXTRA[@]}"); fi
# 2a. bootstrap PGD's prices. The planner never starts a run it cannot price; while no stored run
# prices pgd.table1 on this device (its dry run says "without an estimate"), every window would leave
# it all out. Then one real cell of it (PGD on colored_mnist_ratio, seed 0) trains first, unbudgeted,
# capped at the time left less BOOT_KEEP_S, and only if at least BOOT_MIN_S are left (a run cut off
# is lost on a fresh machine); its record prices the suite's runs of that dataset and backbone.
BOOT_MIN_S=${GPU_WINDOW_BOOTSTRAP_MIN_S:-240}
BOOT_KEEP_S=${GPU_WINDOW_BOOTSTRAP_KEEP_S:-60}
if [ "$(left)" -lt "$BOOT_MIN_S" ]; then
  echo "bootstrap: $(left)s left (< ${BOOT_MIN_S}s), not started; pgd.table1 stays unpriced if nothing stored prices it" \
    | tee -a "$LOG"
elif ! "$PY" -m benchmark run --suite pgd.table1 --profile paper --device cuda --results-dir "$OUT/runs" --dry-run \
     "${EXTRA[@]}" 2>/dev/null | grep -E "^ +pgd\.table1 " | grep -q "without an estimate"; then
  echo "bootstrap: the planner prices pgd.table1 here; not needed" | tee -a "$LOG"
else
  t=$(( $(left) - BOOT_KEEP_S ))
  echo "bootstrap: one pgd.table1 cell (pgd, seed 0) to price the suite, at most ${t}s" | tee -a "$LOG"
  timeout --signal=INT --kill-after=5 "$t" "$PY" -m benchmark run --suite pgd.table1 --profile paper --device cuda \
    --no-mlflow --no-progress --results-dir "$OUT/runs" --match "pgd on colored_mnist_ratio" --match seed=0 --limit 1 \
    "${EXTRA[@]}" > "$OUT/logs/bootstrap.txt" 2>&1
  echo "bootstrap: exit $?" | tee -a "$LOG"
  grep -E "^[0-9]+ run\(s\) in" "$OUT/logs/bootstrap.txt" | tee -a "$LOG"
fi
plan window-suites --suite lnl.figure4 --suite pgd.table1
plan window-rest --all

# 3. one archive: the new records, logs, perf output and provenance
PROV="$OUT/logs/provenance.txt"
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo "${BENCHMARK_CODE_COMMIT:-unknown (no .git; set BENCHMARK_CODE_COMMIT)}")"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "budget_s: $TOTAL"
  echo "elapsed_before_packing_s: $(( $(date +%s) - T0 ))"
  echo "extra run options: ${EXTRA[*]:-(none)}"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1)"
  echo "python: $("$PY" --version 2>&1)"
  echo "nvidia-smi:"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
} > "$PROV"
NEW="$OUT/logs/new.txt"
( cd "$OUT/runs" && ls *.json 2>/dev/null ) | grep -vxF -f "$SEEDED" > "$NEW"
echo "records made in this window: $(wc -l < "$NEW")" | tee -a "$LOG" "$PROV"
STAGE=$(mktemp -d)
mkdir -p "$STAGE/runs" && while read -r f; do cp "$OUT/runs/$f" "$STAGE/runs/"; done < "$NEW"
# post-run outputs of the new records (re-evaluations at the end of each suite run; `import` stores them too)
while read -r f; do
  for o in "$OUT"/runs/_outputs/*/"${f%.json}".*.json; do
    [ -e "$o" ] || continue
    step=$(basename "$(dirname "$o")"); mkdir -p "$STAGE/runs/_outputs/$step" && cp "$o" "$STAGE/runs/_outputs/$step/"
  done
done < "$NEW"
cp -r "$OUT/logs" "$STAGE/logs"
echo "wrote $OUT/runs.tar.gz at $(( $(date +%s) - T0 ))s of ${TOTAL}s; bring it back with: python -m benchmark import runs.tar.gz" \
  | tee -a "$LOG" > "$STAGE/logs/end.txt"
if ! tar -czf "$OUT/runs.tar.gz" -C "$STAGE" runs logs; then echo "error: could not write $OUT/runs.tar.gz" >&2; exit 1; fi
rm -rf "$STAGE"
cp "$PROV" "$OUT/provenance.txt"
# the device tool brings back at most 8 files: leave the archive and the provenance only
[ "${GPU_WINDOW_KEEP:-0}" = 1 ] || rm -rf "$OUT/runs" "$OUT/logs"
cat "$OUT/provenance.txt" | head -6
echo "wrote $OUT/runs.tar.gz in $(( $(date +%s) - T0 ))s of ${TOTAL}s; bring it back with: python -m benchmark import runs.tar.gz"
