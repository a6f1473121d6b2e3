#!/usr/bin/env bash
# A throw-away single-node SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) for tests and CI, on a
# Debian machine, as root, without systemd. Everything it writes lives in one state directory; the daemons run
# in the foreground of their own sessions and this script keeps their process ids, so `down` stops exactly what
# `up` started and nothing else.
#
#   bash tests/slurm/cluster.sh up       install what is missing, write the config, start the daemons, wait until
#                                        `sinfo` shows the node idle and `sacct` answers (idempotent)
#   bash tests/slurm/cluster.sh down     cancel this cluster's jobs, stop the daemons `up` started (idempotent)
#   bash tests/slurm/cluster.sh status   exit 0 when sinfo and sacct answer, else 1 and one line saying why
#   bash tests/slurm/cluster.sh env      the `export SLURM_CONF=...` line for a shell or a test fixture
#
# Client commands (sbatch, srun, sacct, submitit) find the cluster through SLURM_CONF=<state>/etc/slurm.conf; when
# /etc/slurm/slurm.conf does not exist `up` also links it there (removed again by `down`), so that a plain
# `sbatch` works (ALEXNET_SLURM_LINK_ETC=0 turns this off).
#
# Exit codes (a fixture can skip on any of them; the last line on stderr names what failed and the log to read):
#   0 ok   1 status: the cluster does not answer   2 usage   3 not root   4 packages missing and not installable
#   5 a daemon did not start   6 started, but not ready in time   7 this machine's hardware could not be read
#
# Settings (environment):
#   ALEXNET_SLURM_DIR        state directory                             [/tmp/alexnet-slurm]
#   ALEXNET_SLURM_CLUSTER    cluster name (also the account's)           [alexnet]
#   ALEXNET_SLURM_PARTITION  the one partition                           [debug]
#   ALEXNET_SLURM_PORT_BASE  slurmctld, slurmd, slurmdbd, MariaDB use BASE, BASE+1, BASE+2, BASE+3   [16817]
#   ALEXNET_SLURM_CRED_EXPIRE  job credential lifetime in s; a requeued job is held this long + 1 (SLURM: >= 5) [10]
#   ALEXNET_SLURM_WAIT       seconds to wait for each daemon and for the node to be idle   [120]
#   ALEXNET_SLURM_LINK_ETC   1: link /etc/slurm/slurm.conf to ours when there is none      [1]
#   ALEXNET_SLURM_KEEP_ON_FAILURE  1: a failed `up` leaves the daemons it started running (to debug them)   [0]

set -uo pipefail

STATE=${ALEXNET_SLURM_DIR:-/tmp/alexnet-slurm}
CLUSTER=${ALEXNET_SLURM_CLUSTER:-alexnet}
PARTITION=${ALEXNET_SLURM_PARTITION:-debug}
PORT_BASE=${ALEXNET_SLURM_PORT_BASE:-16817}
CRED_EXPIRE=${ALEXNET_SLURM_CRED_EXPIRE:-10}
WAIT=${ALEXNET_SLURM_WAIT:-120}
LINK_ETC=${ALEXNET_SLURM_LINK_ETC:-1}

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
SPOOL=$STATE/spool
DB_DATA=$STATE/mysql
MUNGE_SOCKET=$RUN/munge.socket
DB_SOCKET=$RUN/mysqld.sock
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
ETC_LINK=/etc/slurm/slurm.conf
# set in the environment of every daemon we start (and so of the slurmstepd processes slurmd forks): how `down`
# recognises our processes, and no other, even when a pid file is stale and its number has been reused
MARK=ALEXNET_SLURM_OWNER
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)

export SLURM_CONF=$ETC/slurm.conf
ME="cluster.sh"

say() { echo "$ME: $*"; }
STARTED=()  # "name comm" of each daemon this `up` started: stopped again when `up` fails
# fail CODE WHAT LOG: one line a test fixture can show as its skip reason (the last line printed)
fail() {
    local code=$1 what=$2 log=${3:-} k
    if ((${#STARTED[@]})) && [[ ${ALEXNET_SLURM_KEEP_ON_FAILURE:-0} != 1 ]]; then
        for ((k = ${#STARTED[@]} - 1; k >= 0; k--)); do
            # shellcheck disable=SC2086
            stop_daemon ${STARTED[k]}
        done
        STARTED=()
    fi
    echo "$ME: SLURM unavailable: $what${log:+ (read $log)}" >&2
    exit "$code"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------------------------
# our processes

# the pid kept for daemon NAME, if that process is alive, runs program COMM and carries our mark
our_pid() {
    local name=$1 comm=$2 pid
    pid=$(cat "$RUN/$name.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    grep -qzxF "$MARK=$STATE" "/proc/$pid/environ" 2>/dev/null || return 1
    echo "$pid"
}

# start_daemon NAME COMM OUTFILE CMD...: CMD in the foreground of its own session, detached from ours
start_daemon() {
    local name=$1 comm=$2 out=$3 pid i
    shift 3
    if pid=$(our_pid "$name" "$comm"); then
        say "$name already running (pid $pid)"
        return 0
    fi
    echo "=== $(date '+%F %T') $*" >>"$out"
    # a background job of a non-interactive shell is no process-group leader, so setsid execs without forking
    # and $! is the daemon itself
    # (9>&-: the daemon must not inherit, and so hold, our lock)
    env "$MARK=$STATE" setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$RUN/$name.pid"
    STARTED+=("$name $comm")
    # until env and setsid have exec'd the daemon (or it has died: wait_for reports that with its log)
    for ((i = 0; i < 50; i++)); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "$name started (pid $pid)"
}

# alive_or_fail NAME COMM LOG: stop at once when a daemon we just started has died
alive_or_fail() {
    our_pid "$1" "$2" >/dev/null || fail 5 "$1 exited while starting" "$3"
}

# wait_for NAME COMM LOG WHAT CMD...: poll CMD until it succeeds, the daemon dies, or WAIT seconds pass
wait_for() {
    local name=$1 comm=$2 log=$3 what=$4 deadline=$((SECONDS + WAIT))
    shift 4
    until "$@" >/dev/null 2>&1; do
        alive_or_fail "$name" "$comm" "$log"
        ((SECONDS < deadline)) || fail 6 "$what not ready after ${WAIT}s" "$log"
        sleep 0.5
    done
}

# stop_daemon NAME COMM: SIGTERM, then SIGKILL after 30 s; only the process we started
stop_daemon() {
    local name=$1 comm=$2 pid i
    if pid=$(our_pid "$name" "$comm"); then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "$name stopped (pid $pid)"
    fi
    rm -f "$RUN/$name.pid"
}

# slurmstepd processes forked by our slurmd (they carry its environment, hence our mark)
our_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
        grep -qzxF "$MARK=$STATE" "$p/environ" 2>/dev/null && echo "${p#/proc/}"
    done
}

# ---------------------------------------------------------------------------------------------------------------
# installation

missing_commands() {
    local c
    for c in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr sbatch \
        srun scontrol squeue scancel setsid flock; do
        command -v "$c" >/dev/null 2>&1 || echo "$c"
    done
}

install_packages() {
    local missing apt_log=$LOG/apt.log made_policy=0 rc
    missing=$(missing_commands | tr '\n' ' ')
    [[ -z $missing ]] && return 0
    command -v apt-get >/dev/null || fail 4 "missing ${missing}and no apt-get to install them"
    say "installing ${PACKAGES[*]} (missing: ${missing% })"
    # no init scripts: without this, invoke-rc.d would start a system-wide munged and MariaDB that are not ours
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}")
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        apt-get update -q >>"$apt_log" 2>&1
    fi
    "${apt[@]}" >>"$apt_log" 2>&1
    rc=$?
    if ((rc != 0)); then  # stale package lists: refresh once and try again
        apt-get update -q >>"$apt_log" 2>&1
        "${apt[@]}" >>"$apt_log" 2>&1
        rc=$?
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || fail 4 "apt-get install ${PACKAGES[*]} failed" "$apt_log"
    missing=$(missing_commands | tr '\n' ' ')
    [[ -z $missing ]] || fail 4 "still missing after apt-get install: ${missing% }" "$apt_log"
}

# ---------------------------------------------------------------------------------------------------------------
# configuration

# write_if_changed FILE MODE: stdin to FILE unless FILE already holds exactly that
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$file"
        CHANGED+=" ${file##*/}"
    fi
}

write_config() {
    local node hw
    node=$(hostname -s 2>/dev/null || hostname)
    [[ -n $node ]] || fail 7 "no host name"
    # slurmd -C: this machine's CPUs (sockets, cores, threads) and memory, as slurmd itself will report them
    hw=$(slurmd -C 2>"$LOG/slurmd-C.log" | head -n 1) || true
    [[ $hw == NodeName=* ]] || fail 7 "slurmd -C could not read this machine's hardware" "$LOG/slurmd-C.log"
    hw=${hw#NodeName=* }
    NODE=$node

    [[ -s $ETC/munge.key ]] || (umask 077 && head -c 1024 /dev/urandom >"$ETC/munge.key" && chmod 400 "$ETC/munge.key")
    [[ -s $ETC/db.pass ]] || { (umask 077 && tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 >"$ETC/db.pass"); }

    write_if_changed "$ETC/my.cnf" 644 <<EOF
# MariaDB for slurmdbd only (written by tests/slurm/cluster.sh)
[mysqld]
user=root
datadir=$DB_DATA
socket=$DB_SOCKET
pid-file=$RUN/mariadbd.own.pid
log-error=$LOG/mariadb.log
port=$DB_PORT
bind-address=127.0.0.1
skip-name-resolve
skip-log-bin
performance_schema=OFF
# slurmdbd logs an error below 512M (virtual: pages are only touched as used)
innodb_buffer_pool_size=512M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
EOF

    write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF
# written by tests/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.own.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$ETC/db.pass")
StorageLoc=slurm_acct_db
EOF

    write_if_changed "$ETC/slurm.conf" 644 <<EOF
# A single-node cluster for tests (written by tests/slurm/cluster.sh): no cgroups, short timeouts.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (SLURM's default: 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$RUN/slurmctld.own.pid
SlurmdPidFile=$RUN/slurmd.own.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# the MUNGE socket for talking to slurmdbd (sacct, sacctmgr, slurmctld); AuthInfo covers the rest only
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
# tasks get the nice value of the sbatch/srun that submitted them
PropagatePrioProcess=1
JobRequeue=1
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

link_etc() {
    [[ $LINK_ETC == 1 ]] || return 0
    if [[ -L $ETC_LINK && $(readlink "$ETC_LINK") == "$ETC/slurm.conf" ]]; then
        return 0
    fi
    if [[ ! -e $ETC_LINK && ! -L $ETC_LINK ]]; then
        mkdir -p "${ETC_LINK%/*}" && ln -s "$ETC/slurm.conf" "$ETC_LINK" && say "linked $ETC_LINK -> $ETC/slurm.conf"
    else
        say "$ETC_LINK exists and is not ours: export SLURM_CONF=$ETC/slurm.conf to use this cluster"
    fi
}

unlink_etc() {
    if [[ -L $ETC_LINK && $(readlink "$ETC_LINK") == "$ETC/slurm.conf" ]]; then
        rm -f "$ETC_LINK" && say "removed the link $ETC_LINK"
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# the daemons, in dependency order

db() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_munge() {
    local log=$LOG/munged.log  # in the foreground munged logs to stderr, not to --log-file
    start_daemon munged munged "$log" munged --foreground --force --key-file="$ETC/munge.key" \
        --socket="$MUNGE_SOCKET" --pid-file="$RUN/munged.own.pid" --seed-file="$STATE/munge.seed"
    wait_for munged munged "$log" "munged" bash -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"
}

start_mariadb() {
    local log=$LOG/mariadb.log pass
    if [[ ! -d $DB_DATA/mysql ]]; then
        say "initialising MariaDB in $DB_DATA"
        mariadb-install-db --defaults-file="$ETC/my.cnf" --skip-test-db --auth-root-authentication-method=socket \
            >>"$LOG/mariadb-install.log" 2>&1 || fail 5 "mariadb-install-db failed" "$LOG/mariadb-install.log"
    fi
    start_daemon mariadbd mariadbd "$LOG/mariadbd.out" mariadbd --defaults-file="$ETC/my.cnf"
    wait_for mariadbd mariadbd "$log" "MariaDB" db -e 'SELECT 1'
    pass=$(cat "$ETC/db.pass")
    db >>"$LOG/mariadb-setup.log" 2>&1 <<EOF || fail 5 "creating the slurm database user failed" "$LOG/mariadb-setup.log"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

# sacctmgr_ensure "LIST SPEC" "ADD SPEC": add to the accounting database unless `sacctmgr list LIST SPEC` finds it
sacctmgr_ensure() {
    local out
    # shellcheck disable=SC2086
    [[ -n $(sacctmgr -n -P list $1 2>/dev/null) ]] && return 0
    # shellcheck disable=SC2086
    out=$(sacctmgr -i add $2 2>&1)
    local rc=$?
    echo "$out" >>"$LOG/sacctmgr.log"
    ((rc == 0)) || fail 5 "sacctmgr add $2 failed" "$LOG/sacctmgr.log"
}

start_slurmdbd() {
    local log=$LOG/slurmdbd.log
    start_daemon slurmdbd slurmdbd "$LOG/slurmdbd.out" slurmdbd -D
    wait_for slurmdbd slurmdbd "$log" "slurmdbd" sacctmgr -n list cluster
    # (slurmctld would register the cluster itself; the account is for jobs that name one: --account=$CLUSTER)
    sacctmgr_ensure "cluster $CLUSTER format=cluster" "cluster $CLUSTER"
    sacctmgr_ensure "account $CLUSTER format=account" \
        "account $CLUSTER cluster=$CLUSTER description=tests organization=$CLUSTER"
    sacctmgr_ensure "association cluster=$CLUSTER account=$CLUSTER user=root format=user" \
        "user root account=$CLUSTER cluster=$CLUSTER"
}

node_idle() {
    local s
    s=$(sinfo -h -n "$NODE" -o %T 2>/dev/null) || return 1
    [[ $s == idle || $s == mixed || $s == allocated ]]
}

start_slurm() {
    start_daemon slurmctld slurmctld "$LOG/slurmctld.out" slurmctld -D -f "$ETC/slurm.conf"
    wait_for slurmctld slurmctld "$LOG/slurmctld.log" "slurmctld" scontrol ping
    start_daemon slurmd slurmd "$LOG/slurmd.out" slurmd -D -f "$ETC/slurm.conf" -N "$NODE"
    wait_for slurmd slurmd "$LOG/slurmd.log" "node $NODE (sinfo: idle)" node_idle
    wait_for slurmdbd slurmdbd "$LOG/slurmdbd.log" "sacct" sacct -n -X
}

# ---------------------------------------------------------------------------------------------------------------
# commands

cmd_up() {
    local t0 changed
    t0=$(now)
    ((EUID == 0)) || fail 3 "not root (cluster.sh up installs packages and runs the daemons as root)"
    mkdir -p "$ETC" "$RUN" "$LOG" "$SPOOL/slurmctld" "$SPOOL/slurmd" || fail 7 "cannot create $STATE"
    # readable by all, so that other users may submit too (the MUNGE key and the database password are not)
    chmod 755 "$STATE" "$ETC" "$RUN"
    exec 9>"$STATE/lock"
    flock -w 600 9 || fail 6 "another cluster.sh holds $STATE/lock"
    install_packages
    CHANGED=""
    write_config
    changed=$CHANGED
    if [[ -n $changed ]] && our_pid slurmctld slurmctld >/dev/null; then
        say "the config changed (${changed# }) while the cluster runs: run 'down' then 'up' to apply it"
    fi
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    link_etc
    say "up: cluster '$CLUSTER', partition '$PARTITION', node $NODE ($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB, %T'))"
    say "up took $(elapsed "$t0") s (state: $STATE; logs: $LOG; export SLURM_CONF=$ETC/slurm.conf)"
}

cmd_down() {
    local t0 jobs i left
    t0=$(now)
    ((EUID == 0)) || fail 3 "not root"
    [[ -d $STATE ]] || { say "down: nothing to stop ($STATE does not exist)"; return 0; }
    mkdir -p "$RUN"
    exec 9>"$STATE/lock"
    flock -w 600 9 || fail 6 "another cluster.sh holds $STATE/lock"
    if our_pid slurmctld slurmctld >/dev/null && [[ -f $ETC/slurm.conf ]]; then
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null
            for ((i = 0; i < 40; i++)); do
                [[ -z $(squeue -h -o %A -t R,CG 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_daemon slurmd slurmd
    left=$(our_stepds | tr '\n' ' ')
    if [[ -n ${left// /} ]]; then
        say "stopping slurmstepd left by our slurmd: $left"
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null
        sleep 2
        left=$(our_stepds | tr '\n' ' ')
        # shellcheck disable=SC2086
        [[ -n ${left// /} ]] && kill -KILL $left 2>/dev/null
    fi
    stop_daemon slurmctld slurmctld
    stop_daemon slurmdbd slurmdbd
    stop_daemon mariadbd mariadbd
    stop_daemon munged munged
    unlink_etc
    say "down took $(elapsed "$t0") s"
}

cmd_status() {
    local out node
    [[ -f $ETC/slurm.conf ]] || { echo "$ME: down: no config in $ETC (run: bash $0 up)"; return 1; }
    out=$(sinfo -h -o '%n %T' 2>&1) || { echo "$ME: down: sinfo: $(echo "$out" | head -n 1)"; return 1; }
    node=$(echo "$out" | head -n 1)
    case ${node#* } in
    idle* | mixed* | allocated* | completing*) ;;
    *) echo "$ME: not ready: node $node (read $LOG/slurmd.log, $LOG/slurmctld.log)"; return 1 ;;
    esac
    out=$(sacct -n -X 2>&1) || { echo "$ME: down: sacct: $(echo "$out" | head -n 1)"; return 1; }
    echo "$ME: up: node $node; sacct answers (SLURM_CONF=$ETC/slurm.conf)"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$ETC/slurm.conf" ;;
*)
    echo "usage: bash $0 up|down|status|env   (state: $STATE)" >&2
    exit 2
    ;;
esac
