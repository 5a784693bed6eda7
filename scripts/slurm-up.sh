#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (localhost), as root: Debian's slurm-wlm + munge.
# Idempotent: when the node already answers `sinfo` as usable it returns at once.
# Used by .ci/run and `make slurm` before the tests marked `slurm` (tests/test_launch_slurm*.py).
#
#   sudo scripts/slurm-up.sh          # installs slurm-wlm and munge with apt-get if missing
#
# What it sets up (no accounting daemon: `sacct` fails, the study reads `squeue` instead):
#   - /etc/munge/munge.key: 1024 random bytes, owner munge, mode 400; `munged` running
#   - /etc/slurm/slurm.conf: SlurmUser=root, auth/munge, proctrack/linuxproc, task/none,
#     select/cons_tres with CR_Core, no job accounting, ReturnToService=2, this node's CPUs and
#     memory (from `slurmd -C`), one default partition `debug`
#   - slurmctld, then slurmd; waits until the node is idle (at most 60 s)
set -euo pipefail

PARTITION=${DIMCOLLAPSE_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf
say() { echo "slurm-up: $*"; }

node_state() { timeout 5 sinfo -h -N -o '%t' 2>/dev/null | head -1 || true; }

usable() {
  case "$(node_state)" in
    idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;;
    *) return 1 ;;
  esac
}

if command -v sinfo >/dev/null 2>&1 && usable; then
  say "SLURM is up ($(node_state))"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "slurm-up: error: starting SLURM needs root (apt-get, munged, slurmctld, slurmd); rerun with sudo." >&2
  exit 2
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
   || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: a 1024-byte key readable by munge only, and the daemon
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ] || [ "$(stat -c %s "$KEY")" != "1024" ]; then
  say "writing a new 1024-byte munge key"
  mkdir -p /etc/munge
  dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
fi
chown munge:munge "$KEY" /etc/munge
chmod 400 "$KEY"
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf for this node (rewritten only when it differs)
HOST=$(hostname -s)
NODE=$(slurmd -C | head -1)           # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW=$(mktemp)
cat >"$NEW" <<EOF
# written by dimcollapse scripts/slurm-up.sh: a one-node cluster on localhost
ClusterName=dimcollapse
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=30
MinJobAge=300
${NODE} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
RESTART=0
if ! cmp -s "$NEW" "$CONF"; then
  install -m 644 "$NEW" "$CONF"
  RESTART=1
fi
rm -f "$NEW"

if [ "$RESTART" = "1" ]; then
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do   # daemons this script started (pid files)
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
fi
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/slurmctld.pid; then
  say "starting slurmctld"
  /usr/sbin/slurmctld
fi
for _ in $(seq 100); do timeout 5 sinfo -h >/dev/null 2>&1 && break; sleep 0.2; done
if ! alive /run/slurmd.pid; then
  say "starting slurmd"
  /usr/sbin/slurmd
fi

for _ in $(seq 120); do
  if usable; then
    say "SLURM is up: $(sinfo -h -N -o '%N %t %c CPUs %m MB partition %P')"
    exit 0
  fi
  case "$(node_state)" in
    down*|drain*|drng|fail*|inval*)
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
echo "slurm-up: error: the node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
