#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the `slurm` tests and for trying the
# cluster profile (workflow/profiles/slurm) without a cluster. Debian/Ubuntu, root, no systemd.
#
#   .ci/slurm-localhost.sh start    install the packages if needed, write slurm.conf, start
#                                   munged, slurmctld and slurmd, wait until the node is idle
#   .ci/slurm-localhost.sh stop     stop the daemons and move slurm.conf aside
#   .ci/slurm-localhost.sh status   exit 0 when the node answers
#
# Exit status 3: the packages are missing and cannot be installed.
# Both are idempotent: `start` first stops a cluster left over by a crashed run, `stop` on a
# stopped cluster does nothing. The node declares at least 8 CPUs (more than a CI machine has,
# so rules written for real nodes schedule) and SLURM_LOCALHOST_GPUS (default 2) fake GPUs:
# character devices that slurmd hands out as CUDA_VISIBLE_DEVICES; jobs still compute on the CPU.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES=$CONF_DIR/gres.conf
ASIDE_SUFFIX=.slurm-localhost-off
STATE=/var/lib/slurm-localhost          # state, spool, logs and pid files of this cluster
MARK="# written by slurm-localhost.sh"  # a slurm.conf without it is the site's: never touched
NODE=localnode
GPUS=${SLURM_LOCALHOST_GPUS:-2}
MIN_CPUS=${SLURM_LOCALHOST_CPUS:-8}

log() { echo "slurm-localhost: $*" >&2; }
die() { log "error: $*"; exit 1; }
cannot_install() { log "error: $*"; exit 3; }  # the tests skip on this status

ours() { [ -f "$CONF" ] && grep -qxF "$MARK" "$CONF"; }

kill_pidfile() {  # stop the daemon whose id it wrote to FILE; wait until it is gone
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    # a stale file from a crashed run may name a process id reused since: check the name
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop() {
    kill_pidfile "$STATE/slurmd.pid" slurmd
    kill_pidfile "$STATE/slurmctld.pid" slurmctld
    # munged only when this script started it (a site's own munged stays up)
    if [ -f "$STATE/munged.ours" ]; then
        kill_pidfile /run/munge/munged.pid munged
        rm -f "$STATE/munged.ours"
    fi
    # While slurm.conf exists with the daemons down, every snakemake call waits ~10 s on SLURM.
    for file in "$CONF" "$GRES"; do
        if [ -f "$file" ] && grep -qxF "$MARK" "$file"; then
            mv -f "$file" "$file$ASIDE_SUFFIX"
        fi
    done
    for i in $(seq 0 $((GPUS - 1))); do rm -f "/dev/fakegpu$i"; done
    log "stopped; slurm.conf moved aside"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || cannot_install "slurmctld/slurmd/sbatch/munged are missing and there is no apt-get"
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || cannot_install "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || cannot_install "apt-get install slurmctld slurmd slurm-client munge failed"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # already running (ours from an earlier start, or the site's)
    fi
    [ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || die "cannot create /etc/munge/munge.key"; }
    chown munge:munge /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start"
    touch "$STATE/munged.ours"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged is running but munge -n | unmunge fails"
}

write_conf() {
    local memory cpus
    memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
    [ -n "$memory" ] && [ -n "$cpus" ] || die "cannot read CPUs and RealMemory from slurmd -C"
    [ "$cpus" -lt "$MIN_CPUS" ] && cpus=$MIN_CPUS
    local gres_node=""
    [ "$GPUS" -gt 0 ] && gres_node="Gres=gpu:$GPUS"
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d"
    cat > "$CONF" <<EOF
$MARK
ClusterName=localhost
SlurmctldHost=localhost(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
# task/none with config_overrides: the node may declare more CPUs than the machine has
TaskPlugin=task/none
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName=$NODE NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory $gres_node State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    {
        echo "$MARK"
        echo "AutoDetect=off"
        for i in $(seq 0 $((GPUS - 1))); do
            # slurmd sets CUDA_VISIBLE_DEVICES only for character devices, not plain files
            [ -c "/dev/fakegpu$i" ] || { rm -f "/dev/fakegpu$i"; mknod -m 666 "/dev/fakegpu$i" c 1 3; }
            echo "NodeName=$NODE Name=gpu File=/dev/fakegpu$i"
        done
    } > "$GRES"
}

wait_idle() {
    local state=""
    for _ in $(seq 300); do
        state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        case "$state" in
            idle*|mix*|alloc*) return 0 ;;
            down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.1
    done
    die "node $NODE is not idle after 30 s (state '${state}'); see $STATE/slurmctld.log and $STATE/slurmd.log"
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    if [ -f "$CONF" ] && ! ours; then
        die "$CONF exists and was not written by this script (a real SLURM site?); not touching it"
    fi
    install_packages
    mkdir -p "$STATE"
    stop 2>/dev/null  # a cluster left over by a crashed run
    start_munge
    write_conf
    slurmctld -c -i || die "slurmctld did not start; see $STATE/slurmctld.log"
    slurmd -N "$NODE" || die "slurmd did not start; see $STATE/slurmd.log"
    wait_idle
    log "node $NODE idle: $(sinfo -h -N -o '%C CPUs (alloc/idle/other/total), %m MB, %G')"
}

status() {
    ours && sinfo -h -n "$NODE" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
