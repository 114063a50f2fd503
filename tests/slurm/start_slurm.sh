#!/usr/bin/env bash
# A single-node Slurm (slurmctld + slurmd + munge) on the loopback interface, for the
# integration test tests/test_slurm.py and for CI. Run as root.
#
#   tests/slurm/start_slurm.sh [--install]    configure and start (apt-get install first)
#   tests/slurm/start_slurm.sh --stop         stop the daemons this script started
#
# One node "localhost" (127.0.0.1, every CPU of the machine) in one partition "compute" (the
# queue conf/hpc names). No cgroups, no accounting database: finished jobs are listed by
# `scontrol show job` for MinJobAge seconds and appended to $SLURM_JOBCOMP (jobcomp/filetxt).
# Idempotent: a running, responsive controller is left alone.
set -euo pipefail

ETC=/etc/slurm
LOG=/var/log/slurm
SPOOL=/var/spool/slurm
JOBCOMP=${SLURM_JOBCOMP:-$LOG/jobcomp.log}

stop() {
    local pid
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    done
}

if [[ ${1:-} == --stop ]]; then
    stop
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "start_slurm.sh: must run as root" >&2
    exit 1
fi
if [[ ${1:-} == --install ]] && ! command -v slurmctld >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
for exe in slurmctld slurmd munged sbatch; do
    command -v "$exe" >/dev/null || { echo "start_slurm.sh: $exe not installed" >&2; exit 1; }
done

if scontrol ping 2>/dev/null | grep -q UP && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
    echo "slurm already running"
    exit 0
fi
stop

# munge: the key the package generated, or a new one
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --pid-file=/run/munge/munged.pid
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # 80% of RAM
mkdir -p "$ETC" "$LOG" "$SPOOL/ctld" "$SPOOL/d"
cat > "$ETC/slurm.conf" <<CONF
# written by tests/slurm/start_slurm.sh: one node on the loopback interface
ClusterName=reactive-al-test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=compute Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -i   # -i: ignore state files a previous instance left behind
slurmd -N localhost
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
        echo "slurm up: $(sinfo -h -o '%P %D %T %c')"
        exit 0
    fi
    sleep 0.2
done
echo "start_slurm.sh: the node did not become idle; logs in $LOG" >&2
sinfo >&2 || true
tail -20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
exit 1
