#!/usr/bin/env bash
# GPU check (issue 15): one command on a CUDA machine, about 8 minutes at most.
#   1. the Triton kernel tests, compiled for the GPU (TRITON_INTERPRET unset),
#   2. the kernel benchmark (benchmarks/kernels.py: fused vs torch vs loop vs PEFT, bf16),
#   3. training-step ratios of this tree on the GPU (benchmarks/trial.py --versions after --sections step),
#   4. a 3-trial search on the embedded model (objectives run under bf16 autocast on CUDA),
# then every figure into one JSON, $OUT/gpu_check.json. A failing stage is recorded and the others still run.
# Usage: bash benchmarks/gpu_check.sh   (or make gpu-check); OUT defaults to benchmarks/gpu_check.
# GPU_CHECK_ON_CPU=1 runs the same stages on a CPU (a dry run of the script itself; the figures mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${OUT:-benchmarks/gpu_check}
mkdir -p "$OUT"
unset TRITON_INTERPRET
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} TQDM_DISABLE=1 PYTHONUNBUFFERED=1
if [ "${GPU_CHECK_ON_CPU:-0}" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: no CUDA device visible to torch; nothing run (the CPU runs the kernels under TRITON_INTERPRET=1 in make test)" >&2
    exit 2
fi
: > "$OUT/stages.tsv"

stage() {  # stage NAME TIMEOUT_S COMMAND...: runs it, logs to $OUT/NAME.log, records rc and seconds
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name (at most ${limit}s): $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >> "$OUT/stages.tsv"
    tail -n 25 "$OUT/$name.log"
}

# Stage limits sum to 470 s; the kernel tests get the most (autotuning compiles every config per shape key).
stage kernel_tests 210 "$PY" -m pytest -q -p no:cacheprovider tests/hilo_core/test_kernels.py \
    --junitxml "$OUT/kernel_tests.xml"
stage kernel_bench 100 "$PY" benchmarks/kernels.py --out "$OUT"
stage step_ratios 60 "$PY" benchmarks/trial.py --versions after --sections step --repeats 3 --steps 3 \
    --out "$OUT/trial.json"
rm -rf "$OUT/search"
stage search 100 "$PY" -m search.run --space hilo --task analogy --model default --budget 3 --fidelity 12 \
    --eval-examples 100 --study gpu-check --out-root "$OUT/search" --no-report

"$PY" - "$OUT" <<'PY'
"""Collect every stage's figures into one JSON."""
import json, pathlib, platform, sys, xml.etree.ElementTree as ET
import torch

out = pathlib.Path(sys.argv[1])
cuda = torch.cuda.is_available()
figures = {"gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
           "machine": platform.platform(), "stages": {}}
for line in (out / "stages.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    figures["stages"][name] = {"rc": int(rc), "seconds": int(seconds)}
try:
    import triton
    figures["triton"] = triton.__version__
except ImportError:
    figures["triton"] = None
from hilo_core.kernels import dispatch
figures["dispatch_to_triton_bf16_cuda"] = cuda and dispatch.triton_applies(
    torch.zeros(1, device="cuda", dtype=torch.bfloat16))
junit = out / "kernel_tests.xml"
if junit.exists():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    figures["kernel_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
for name in ("kernels.json", "trial.json"):
    path = out / name
    if path.exists():
        figures[path.stem] = json.loads(path.read_text())
study = out / "search" / "gpu-check" / "study.db"
if study.exists():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="gpu-check", storage=f"sqlite:///{study}").trials
    figures["search"] = [{"number": t.number, "state": t.state.name, "values": t.values,
                          "seed_name": t.user_attrs.get("seed_name"), "failure": t.user_attrs.get("failure"),
                          "metrics": t.user_attrs.get("metrics")} for t in trials]
(out / "gpu_check.json").write_text(json.dumps(figures, indent=1))
bad = {n: s for n, s in figures["stages"].items() if s["rc"] != 0}
print(f"gpu_check: {out / 'gpu_check.json'}; stages " + ", ".join(f"{n} rc={s['rc']} {s['seconds']}s"
                                                                for n, s in figures["stages"].items()))
sys.exit(1 if bad else 0)
PY
