#!/usr/bin/env bash
# A real one-node Slurm on this machine, to try the job scripts (and for
# the tests that run them): installs slurm-wlm and munge when missing,
# writes /etc/slurm/slurm.conf for this machine's cores and memory, and
# starts munged, slurmctld and slurmd. Run as root (Debian or Ubuntu):
#
#   scripts/slurm/local-cluster.sh          # start; prints sinfo
#   scripts/slurm/local-cluster.sh --stop   # stop the daemons it started
#
# --stop ends only the processes this script started (their PIDs are kept
# in $STATE/pids); a munged that was already running is used and left
# alone. An /etc/slurm/slurm.conf that this script did not write (a real
# cluster's) is never replaced: the script refuses instead.
#
# The cluster keeps Debian's MpiDefault=none, as many sites do: the job
# scripts choose the PMIx plugin themselves (srun --mpi=pmix).
#
# Variables: STATE (default /run/alexnet-local-slurm), PARTITION (default
# debug), WAIT (seconds to wait for the node, default 60).
set -euo pipefail

STATE=${STATE:-/run/alexnet-local-slurm}
PARTITION=${PARTITION:-debug}
WAIT=${WAIT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# Written by alexnet-rs scripts/slurm/local-cluster.sh"

die() {
    echo "local-cluster.sh: $*" >&2
    exit 1
}

# A process we started, still running, and still the program we started.
alive() {
    local pid=$1 name=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

stop() {
    [[ -f $STATE/pids ]] || {
        echo "local-cluster.sh: nothing to stop (no $STATE/pids)"
        return 0
    }
    # Reverse order of start: slurmd, slurmctld, then munged.
    tac "$STATE/pids" | while read -r name pid; do
        if alive "$pid" "$name"; then
            kill "$pid"
            for _ in $(seq 50); do
                alive "$pid" "$name" || break
                sleep 0.2
            done
            if alive "$pid" "$name"; then
                kill -9 "$pid"
            fi
            echo "stopped $name (pid $pid)"
        fi
    done
    rm -f "$STATE/pids"
}

if [[ ${1:-} == --stop ]]; then
    stop
    exit 0
elif [[ $# -gt 0 ]]; then
    die "usage: $0 [--stop]"
fi

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts the Slurm daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and there is no apt-get: install Slurm and munge by hand"
    echo "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if [[ -f $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script (a real cluster's?): not replacing it"
fi
if [[ -f $STATE/pids ]]; then
    while read -r name pid; do
        alive "$pid" "$name" && die "$name (pid $pid) of an earlier start is still running: run $0 --stop first"
    done <"$STATE/pids"
    rm -f "$STATE/pids"
fi
mkdir -p "$STATE" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
: >"$STATE/pids"

# munge: the key comes with the package; start munged unless one answers.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -f /etc/munge/munge.key ]] || {
        if command -v mungekey >/dev/null; then mungekey --create; else create-munge-key; fi
    }
    chown munge:munge /run/munge 2>/dev/null || true
    # --force: as root it would otherwise refuse over the log file's owner
    # (its warning about that is kept in $STATE/munged.err).
    /usr/sbin/munged --force 2>"$STATE/munged.err" || {
        cat "$STATE/munged.err" >&2
        die "munged did not start"
    }
    for _ in $(seq 50); do
        [[ -s /run/munge/munged.pid ]] && break
        sleep 0.1
    done
    echo "munged $(cat /run/munge/munged.pid)" >>"$STATE/pids"
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

# One node: this machine's cores and 90% of its memory (slurmd refuses a
# node that declares more than it has).
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
cat >"$CONF" <<EOF
$MARK
# One node ($HOST, $CPUS cores, $MEM_MB MB); replaced on every start.
ClusterName=local
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
# No cgroups (containers often have none): process tracking by /proc, and
# no task plugin, so no cpu binding (srun --cpu-bind would warn).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Debian's default, and many sites': srun gives a program no PMI unless
# asked (train.sbatch asks for PMIx).
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

start_daemon() {
    local name=$1
    shift
    rm -f "$STATE/$name.pid"
    "$@"
    for _ in $(seq 100); do
        [[ -s $STATE/$name.pid ]] && break
        sleep 0.1
    done
    [[ -s $STATE/$name.pid ]] || die "$name did not start: see /var/log/slurm/$name.log"
    echo "$name $(cat "$STATE/$name.pid")" >>"$STATE/pids"
}
# -c: a clean controller state (no jobs of an earlier start).
start_daemon slurmctld slurmctld -c
start_daemon slurmd slurmd

for _ in $(seq "$WAIT"); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    [[ $state == idle* ]] && break
    sleep 1
done
[[ $state == idle* ]] || die "node $HOST is '${state:-unknown}' after ${WAIT} s: see /var/log/slurm/"
sinfo
echo "Slurm is up: $CPUS cores, $MEM_MB MB on $HOST; stop it with $0 --stop"
