# Shell version of the end-to-end lab's Postfix recipe, for the benchmarks.
# Source it: . bench/lab.sh
#
# It renders the same templates as Tests/EndToEndTests/Support/PostfixLab.swift
# (Tests/EndToEndTests/Fixtures/postfix/{main,master}.cf.in) and starts Postfix the same
# way: queue directories made by hand, `master -c DIR -w` (what `postfix start` does,
# without its `postfix check` pass), configuration files back-dated because Postfix
# pauses while main.cf is younger than ~2 s. Needs root. Every process is tracked by PID.

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_TEMPLATES="$LAB_ROOT/Tests/EndToEndTests/Fixtures/postfix"

lab_die() { echo "lab: $*" >&2; exit 1; }

lab_require() {
    [ "$(id -u)" = 0 ] || lab_die "must run as root (a private Postfix instance, smtp-sink -u)"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 ||
            lab_die "missing tool: $tool"
    done
}

# lab_port_listening PORT: true if something listens on 127.0.0.1:PORT or *:PORT (IPv4).
lab_port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && ($2 == "0100007F" p || $2 == "00000000" p) { found = 1 } END { exit !found }' /proc/net/tcp
}

# lab_free_port START: the first port from START up that nothing listens on.
lab_free_port() {
    local port=$1
    while lab_port_listening "$port"; do port=$((port + 1)); done
    echo "$port"
}

# lab_wait_for SECONDS COMMAND...: poll COMMAND every 20 ms.
lab_wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.02
    done
}

# lab_certs DIR: lab CA and Postfix server certificate (P-256).
lab_certs() {
    local dir=$1
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/ca.key" \
        -out "$dir/ca.crt" -days 3650 -subj "/CN=Connector Lab CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/server.key" \
        -out "$dir/server.csr" -subj "/CN=mx.lab.test" 2>/dev/null
    printf 'subjectAltName=DNS:mx.lab.test\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial 1 \
        -out "$dir/server.crt" -days 3650 -extfile "$dir/server.ext" 2>/dev/null
    chmod 644 "$dir"/*
}

# lab_backdate DIR: make main.cf and master.cf 10 s old so Postfix reads them at once.
lab_backdate() {
    touch -d '-10 seconds' "$1/etc/main.cf" "$1/etc/master.cf"
}

# lab_configure DIR SMTP_PORT SINK_PORT [MILTER]: directories and configuration.
# MILTER is an smtpd_milters value (e.g. unix:/path) or empty.
# Relay control: LAB_RELAY=connectors (the documented setup: the daemon's policy service on
# DIR/run/policy.sock and relay-domains socketmap on DIR/run/maps.sock; start the daemon with
# both) or LAB_RELAY=stock (only the host relays; relay_domains = $LAB_RELAY_DOMAINS).
lab_configure() {
    local dir=$1 smtp=$2 sink=$3 milter=${4:-}
    local lines="" relay_policy="" relay_domains=${LAB_RELAY_DOMAINS:-}
    [ -z "$milter" ] || lines="smtpd_milters = $milter"
    case ${LAB_RELAY:-connectors} in
        connectors)
            relay_policy="check_policy_service unix:$dir/run/policy.sock, "
            relay_domains="socketmap:unix:$dir/run/maps.sock:relay-domains" ;;
        stock) ;;
        *) lab_die "LAB_RELAY must be connectors or stock" ;;
    esac
    mkdir -p "$dir"/{etc,queue,data,log,sink,run,certs}
    chmod 755 "$dir"
    chmod 1777 "$dir/run"
    chown postfix:postfix "$dir/data"
    chown nobody "$dir/sink"
    : > "$dir/log/maillog"
    [ -f "$dir/certs/server.crt" ] || lab_certs "$dir/certs"
    local name
    for name in main.cf master.cf; do
        sed -e "s|@LAB@|$dir|g" -e "s|@SMTP_PORT@|$smtp|g" -e "s|@SINK_PORT@|$sink|g" \
            -e "s|@MILTER_LINES@|$lines|" -e "s|@RELAY_POLICY@|$relay_policy|" \
            -e "s|@RELAY_DOMAINS@|$relay_domains|" "$LAB_TEMPLATES/$name.in" > "$dir/etc/$name"
    done
    lab_backdate "$dir"
}

# lab_start_postfix DIR: start master; sets MASTER_PID.
lab_start_postfix() {
    local dir=$1 q=$1/queue d
    for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
        mkdir -p "$q/$d"; chown postfix:root "$q/$d"; chmod 700 "$q/$d"
    done
    mkdir -p "$q/maildrop" "$q/public" "$q/pid"
    chown postfix:postdrop "$q/maildrop" "$q/public"
    chmod 730 "$q/maildrop"; chmod 710 "$q/public"; chmod 755 "$q/pid"
    "$(postconf -c "$dir/etc" -d -h daemon_directory 2>/dev/null)/master" -c "$dir/etc" -w ||
        lab_die "Postfix master did not start; $dir/log/maillog says: $(tail -5 "$dir/log/maillog")"
    MASTER_PID=$(tr -d ' \n' < "$q/pid/master.pid")
}

# lab_set_milter DIR MILTER: change smtpd_milters (empty = none) and reload.
lab_set_milter() {
    local dir=$1 milter=${2:-}
    postconf -c "$dir/etc" -e "smtpd_milters = $milter"
    lab_backdate "$dir"
    postfix -c "$dir/etc" reload 2>/dev/null
}

# lab_stop_pid PID [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default 10).
lab_stop_pid() {
    local pid=$1 grace=${2:-10}
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + grace))
    while lab_alive "$pid"; do
        if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null; break; fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
}

# lab_alive PID: running and not a zombie (orphans may never be reaped here).
lab_alive() {
    local state
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# lab_group_members PGID: PIDs of the living members of a process group (from /proc).
lab_group_members() {
    local group=$1 stat line
    for stat in /proc/[0-9]*/stat; do
        line=$(cat "$stat" 2>/dev/null) || continue
        line=${line##*) }  # after "pid (comm) ": state ppid pgrp ...
        set -- $line
        if [ "${3:-}" = "$group" ] && [ "$1" != Z ]; then
            stat=${stat#/proc/}
            echo "${stat%/stat}"
        fi
    done
}

# lab_stop_postfix MASTER_PID: stop master and every process of its group, by PID.
lab_stop_postfix() {
    local master=$1 pid
    [ -n "$master" ] || return 0
    local members
    members=$(lab_group_members "$master")
    lab_stop_pid "$master" 10
    for pid in $members; do lab_stop_pid "$pid" 2; done
}

# lab_syslog_listening: true when a syslog daemon answers on /dev/log.
lab_syslog_listening() {
    [ -S /dev/log ] && logger --socket-errors=on -u /dev/log -t connector-lab -p mail.debug "lab probe" 2>/dev/null
}

# lab_private_syslog DIR: a private rsyslogd on /dev/log writing mail.* to DIR/log/mail.log;
# sets SYSLOG_PID and OWN_DEVLOG (remove /dev/log when done). Use when none listens.
lab_private_syslog() {
    local dir=$1
    rm -f /dev/log
    cat > "$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir/run")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
mail.* action(type="omfile" file="$dir/log/mail.log")
CONF
    PATH="$PATH:/usr/sbin" rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/run/rsyslogd.pid" > "$dir/log/rsyslogd.out" 2>&1 &
    SYSLOG_PID=$!
    OWN_DEVLOG=1
    lab_wait_for 10 test -S /dev/log || lab_die "rsyslogd did not create /dev/log: $(cat "$dir/log/rsyslogd.out")"
}
