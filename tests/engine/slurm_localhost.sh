#!/bin/bash
# A one-node SLURM cluster on localhost, for tests/engine/test_slurm.py's real-sbatch test.
#
#   sudo apt-get install -y slurm-wlm          # Debian 12: slurm-wlm 22.05, munge
#   eval "$(tests/engine/slurm_localhost.sh start /tmp/slurm)"   # prints: export SLURM_CONF=...
#   .venv/bin/pytest tests/engine/test_slurm.py
#   tests/engine/slurm_localhost.sh stop /tmp/slurm
#
# Needs root (munged's socket is /run/munge; slurmd runs the jobs as their submitter).
# Everything else (state, spool, logs, pid files) stays in the given folder.
set -euo pipefail
action=${1:?usage: slurm_localhost.sh start|stop FOLDER}
dir=${2:?usage: slurm_localhost.sh start|stop FOLDER}
conf="$dir/slurm.conf"

stop_pid() {  # stop the daemon whose pid file is $1, if it runs
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$1"
}

case "$action" in
start)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" /run/munge
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat > "$conf" <<CONF
ClusterName=localhost
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
ReturnToService=2
SlurmctldPort=26817
SlurmdPort=26818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmUser=root
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    [ -s /etc/munge/munge.key ] || mungekey --create >&2
    munged --force --pid-file="$dir/munged.pid" >&2
    SLURM_CONF=$conf slurmctld -f "$conf" >&2
    SLURM_CONF=$conf slurmd -f "$conf" >&2
    for _ in $(seq 100); do
        SLURM_CONF=$conf scontrol ping 2>/dev/null | grep -q UP \
            && SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | grep -q idle && break
        sleep 0.2
    done
    SLURM_CONF=$conf sinfo >&2
    echo "export SLURM_CONF=$conf"
    ;;
stop)
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munged.pid"
    ;;
*)
    echo "usage: slurm_localhost.sh start|stop FOLDER" >&2
    exit 2
    ;;
esac
