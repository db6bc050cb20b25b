#!/bin/bash
# A one-node SLURM cluster on this machine, for the tests (and for trying the job scripts by hand):
#
#   tests/slurm/cluster.sh start DIR   # prints the SLURM_CONF to export; exit 3 (with the reason) if it cannot
#   tests/slurm/cluster.sh stop DIR    # stops, by pid, every daemon that start started
#
# Needs root and Debian's slurm-wlm and munge (`make slurm` installs them). Everything it writes lies
# in DIR, except munge's key (/etc/munge/munge.key, made once if missing). A munged already running
# is used as it is. Each cluster takes two free ports of its own, so two can run side by side (two
# test runs at once, or one by hand while the tests run); a munged still in use by another is left running.
set -u
action=${1:?start or stop}
dir=${2:?a directory}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

cannot() { echo "cannot start SLURM: $*"; exit 3; }

stop() {
  if [ -f "$dir/slurmctld.pid" ]; then  # end the jobs first, so no job step outlives its slurmd
    export SLURM_CONF="$dir/slurm.conf"
    scancel --quiet --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null
    for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  for name in slurmd slurmctld munged; do
    if [ "$name" = munged ] && pgrep -x slurmctld >/dev/null; then
      continue  # another cluster still authenticates through it: left running, as a start finds it
    fi
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null
      rm -f "$dir/$name.pid"
    fi
  done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi

for tool in slurmctld slurmd munged munge sbatch srun scontrol sinfo; do
  command -v "$tool" >/dev/null || cannot "$tool is not installed (apt-get install slurm-wlm munge, or make slurm)"
done
[ "$(id -u)" = 0 ] || cannot "slurmd must be started as root"

if ! munge -n </dev/null >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || cannot "no munge key"
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid || cannot "munged did not start"
  cp /run/munge/munged.pid "$dir/munged.pid"  # started here, so stopped here
  munge -n </dev/null >/dev/null 2>&1 || cannot "munge does not answer"
fi

host=$(hostname -s)
listening() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 50); do
  candidate=$((20000 + RANDOM % 20000))
  listening "$candidate" || listening $((candidate + 1)) || { port=$candidate; break; }
done
[ -n "$port" ] || cannot "no two free ports found"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
cat >"$dir/slurm.conf" <<CONF
ClusterName=fmnist-test
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
KillWait=30
NodeName=$host CPUs=$(nproc) RealMemory=$(($(free -m | awk '/^Mem:/ {print $2}') * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -i || { stop; cannot "slurmctld did not start (see $dir/log/slurmctld.log)"; }
slurmd || { stop; cannot "slurmd did not start (see $dir/log/slurmd.log)"; }
for _ in $(seq 100); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1)
  [ "$state" = idle ] && { echo "SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.2
done
stop
cannot "the node did not come up (state '${state:-none}'; see $dir/log)"
