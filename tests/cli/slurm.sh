#!/usr/bin/env bash
# launcher/slurm/unidiff.sbatch under a real single-node Slurm (Debian's slurmctld, slurmd, munge),
# started by this test in a temporary folder: a two-rank job is submitted, preempted with
# `scancel --signal=USR1` once it has logged, exits 75 with a checkpoint, requeues itself, resumes
# and finishes; its final weights equal an uninterrupted two-rank run's bit for bit.
# Skips (77) where the Slurm daemons are not installed or cannot be started (not root).
set -u
bin=$UNIDIFF_BIN
py=$UNIDIFF_PYTHON
repo=$UNIDIFF_SOURCE_DIR
for tool in slurmctld slurmd munged sbatch scancel scontrol srun; do
  command -v "$tool" >/dev/null || { echo "skip: $tool is not installed (Debian: slurmctld slurmd slurm-client munge)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "skip: starting slurmd needs root"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok:   $*"; }
show_logs() { tail -n 30 "$tmp"/*.log "$tmp"/job/*.out 2>/dev/null; }

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
host=$(hostname -s)

# --- munge --------------------------------------------------------------------------------------
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/job"
chmod 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --foreground --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge/seed" \
  >"$tmp/munged.out" 2>&1 &
pids+=($!)

# --- slurm.conf ---------------------------------------------------------------------------------
cat >"$tmp/slurm.conf" <<EOF
ClusterName=unidifftest
SlurmctldHost=$host
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
EOF
export SLURM_CONF=$tmp/slurm.conf
for i in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
up=0
for i in $(seq 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then up=1; break; fi
  sleep 0.2
done
if [ "$up" != 1 ]; then
  echo "skip: the single-node Slurm did not come up (see its logs below)"
  show_logs
  exit 77
fi
ok "single-node Slurm up: $(sinfo -h -o '%P %D %T %c')"

# --- the job --------------------------------------------------------------------------------------
"$bin" data toy --dist=moons --num=4000 --seed=1 --out="$tmp/moons.h5" >/dev/null
steps=20000  # long enough that the preemption lands mid-run on a loaded machine
flags="--flagfile=$repo/experiments/recipes/toy2d_ddpm.flags --model_hidden=64 --model_layers=2 --train_steps=$steps --data_batch=256 --log_every=500 --save_every_minutes=0 --seed=3 --eval_every=0"
sed '/--gpus-per-node/d' "$repo/launcher/slurm/unidiff.sbatch" >"$tmp/unidiff.sbatch"
job=$(cd "$tmp/job" && UNIDIFF_REPO="$repo" UNIDIFF_RUN_DIR="$tmp/run" UNIDIFF_DATA="$tmp/moons.h5" \
  UNIDIFF_FLAGS="$flags" UNIDIFF_BIN="$bin" \
  sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=30 "$tmp/unidiff.sbatch")
[ -n "$job" ] || { fail "sbatch printed no job id"; show_logs; exit 1; }
ok "submitted job $job"
# Preempt it once it has logged two rows.
rows() { { wc -l <"$tmp/run/metrics.jsonl"; } 2>/dev/null || echo 0; }
for i in $(seq 600); do
  [ "$(rows)" -ge 2 ] && break
  sleep 0.1
done
at=$(rows)
scancel --signal=USR1 "$job" && ok "scancel --signal=USR1 $job at $at metrics rows (of $((steps / 500)))"
state=""
for i in $(seq 1200); do
  state=$(scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  restarts=$(scontrol show job "$job" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
  [ "$state" = COMPLETED ] && break
  [ "$state" = FAILED ] || [ "$state" = CANCELLED ] && break
  sleep 0.25
done
out=$(cat "$tmp"/job/unidiff-"$job".out 2>/dev/null)
echo "$out" | tail -n 12
[ "$state" = COMPLETED ] && ok "job $job COMPLETED after $restarts restart(s)" || fail "job $job ended $state"
[ "${restarts:-0}" -ge 1 ] && ok "the job was requeued (Restarts=$restarts)" || fail "the job was not requeued"
echo "$out" | grep -q "stopped with a checkpoint (exit 75): requeueing job $job" && ok "exit 75 seen, requeued" ||
  fail "no exit 75 / requeue line in the job's output"
echo "$out" | grep -q "resumed from .*step" && ok "the requeued job resumed from the checkpoint" ||
  fail "the requeued job did not resume"

# --- the same training, uninterrupted -----------------------------------------------------------
# shellcheck disable=SC2086
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "${MPIEXEC:-mpirun}" -np 2 --oversubscribe \
  --bind-to none "$bin" train $flags --data="$tmp/moons.h5" \
  --run_dir="$tmp/ref" --threads=1 >"$tmp/ref.log" 2>&1 || { fail "the uninterrupted run failed"; tail "$tmp/ref.log"; }
"$py" - "$tmp/run/model.h5" "$tmp/ref/model.h5" <<'PY' && ok "final weights equal the uninterrupted run's bit for bit" || fail "final weights differ"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as a, h5py.File(sys.argv[2]) as b:
    names = []
    a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
    assert names and int(a.attrs["step"]) == int(b.attrs["step"]), (a.attrs["step"], b.attrs["step"])
    for n in names:
        assert np.array_equal(a[n][()], b[n][()]), n
    print(f"{len(names)} tensors equal at step {int(a.attrs['step'])}")
PY
[ "$failures" -eq 0 ] || show_logs
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
