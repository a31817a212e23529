#!/usr/bin/env bash
# throughput.sh - messages per second through a private Postfix with
#   (a) no milter, (b) the pass-through C milter, (e) the same C milter asking for the fewest
#       round trips the milter protocol allows (passthrough-milter -n: the floor of what
#       negotiation can save for a milter that sees the envelope and the headers),
#   (c) connector-milter,
#   (d) connector-milter with the relay control docs/relay-control.md sets up (every
#       recipient also asks the daemon's policy service and its relay-domains socketmap),
# all in one run, so the ratios compare like with like. (a)-(c) and (e) run with stock relay
# control and 127.0.0.1 in mynetworks, so Postfix asks nobody about relaying; (d) takes
# 127.0.0.1 out of mynetworks so that it does.
#
# Two figures per case, each the median of the rounds:
#   msgs/s    BENCH_MESSAGES / wall time of smtp-source (every message accepted by Postfix,
#             i.e. through the milter). What the bars are about; on a shared machine it moves
#             10-30 % from one case to the next as the neighbours' load does.
#   CPU/msg   the machine's CPU time per message (every process: Postfix, the milter, syslog,
#             the load generator; from /proc/stat, from the start of a case until its last
#             message reached the sink) in units of smtp-source's own CPU time per message.
#             smtp-source does the same work in every case, so the unit slows down and speeds
#             up with the machine and the ratio stays put (a few %): the throughput the same
#             cases would have on a machine to themselves, since all of them keep the CPUs busy.
# The ratios x/y are printed for both: rate_x / rate_y, and cpu_y / cpu_x (above 1: x cheaper).
#
# usage: bench/throughput.sh [POLICY.yaml]
#   POLICY.yaml              policy for (c) and (d); without it, or without the binary, they are skipped
#   CONNECTOR_MILTER_BIN     the daemon (default: .build/release, then .build/debug)
#   BENCH_MESSAGES=2000 BENCH_SESSIONS=10 BENCH_SIZE=1024 BENCH_WARMUP=200
#   BENCH_ROUNDS=3           rounds of the cases interleaved; each case reports its median
#   BENCH_FROM=sender@fabrikam.com BENCH_TO=user@contoso.com   envelope of every message
#                            (must be accepted by the policy: smtp-source stops on a refusal)
#   BENCH_KEEP=1             keep the work directory (logs) after the run
#
# Load: Postfix's smtp-source, BENCH_SESSIONS parallel sessions, one connection per
# message, BENCH_SIZE bytes of body, to 127.0.0.1; Postfix relays everything to
# smtp-sink on another loopback port. All milters run for the whole benchmark on their own
# sockets; a case only switches smtpd_milters (postfix reload). Cases are interleaved
# (a b e c d a b e c d ...) so drift hits all alike.
#
# Needs root, postfix (smtp-source, smtp-sink), a C compiler ($CC, gcc, cc or the Swift
# toolchain's clang), libmilter-dev, openssl; rsyslog to
# give connector-milter a /dev/log when no syslog daemon runs. Stops every process it
# started, by PID, on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab.sh
. "$HERE/lab.sh"

POLICY=${1:-}
MESSAGES=${BENCH_MESSAGES:-2000}
SESSIONS=${BENCH_SESSIONS:-10}
SIZE=${BENCH_SIZE:-1024}
WARMUP=${BENCH_WARMUP:-200}
ROUNDS=${BENCH_ROUNDS:-3}
FROM=${BENCH_FROM:-sender@fabrikam.com}
TO=${BENCH_TO:-user@contoso.com}

lab_require postfix postconf smtp-source smtp-sink openssl
CC=${CC:-$(command -v gcc || command -v cc || command -v clang || true)}
[ -n "$CC" ] || lab_die "no C compiler (apt-get install gcc)"
[ -f /usr/include/libmilter/mfapi.h ] || lab_die "libmilter-dev is not installed (apt-get install libmilter-dev)"

WORK=$(mktemp -d /tmp/connector-bench.XXXXXX)
MASTER_PID="" SINK_PID="" PASS_PID="" FEWEST_PID="" MILTER_PID="" SYSLOG_PID="" OWN_DEVLOG=""

cleanup() {
    set +e
    lab_stop_postfix "$MASTER_PID"
    lab_stop_pid "$MILTER_PID" 10
    lab_stop_pid "$PASS_PID" 10
    lab_stop_pid "$FEWEST_PID" 10
    lab_stop_pid "$SINK_PID" 5
    lab_stop_pid "$SYSLOG_PID" 5
    [ -z "$OWN_DEVLOG" ] || rm -f /dev/log
    if [ -n "${BENCH_KEEP:-}" ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- connector-milter: found and given a policy, or (c) is skipped -----------------
BIN=${CONNECTOR_MILTER_BIN:-}
if [ -z "$BIN" ]; then
    for candidate in "$LAB_ROOT/.build/release/connector-milter" "$LAB_ROOT/.build/debug/connector-milter"; do
        if [ -x "$candidate" ]; then BIN=$candidate; break; fi
    done
fi
SKIP_C=""
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    SKIP_C="no connector-milter binary (build it, or set CONNECTOR_MILTER_BIN)"
elif [ -z "$POLICY" ]; then
    SKIP_C="no policy file given (bench/throughput.sh POLICY.yaml)"
elif [ ! -r "$POLICY" ]; then
    SKIP_C="cannot read policy $POLICY"
fi

# --- the lab ------------------------------------------------------------------------
SMTP_PORT=$(lab_free_port 25250)
SINK_PORT=$(lab_free_port $((SMTP_PORT + 1)))
LAB_RELAY=stock LAB_RELAY_DOMAINS="" lab_configure "$WORK" "$SMTP_PORT" "$SINK_PORT" ""
PASS_SOCKET="unix:$WORK/run/passthrough.sock"
FEWEST_SOCKET="unix:$WORK/run/fewest-replies.sock"
MILTER_SOCKET="unix:$WORK/run/milter.sock"

"$CC" -O2 -Wall -o "$WORK/passthrough-milter" "$HERE/passthrough-milter.c" -lmilter -lpthread

smtp-sink -u nobody 127.0.0.1:"$SINK_PORT" 1024 > "$WORK/log/smtp-sink.out" 2>&1 &
SINK_PID=$!
lab_wait_for 10 lab_port_listening "$SINK_PORT" || lab_die "smtp-sink did not start: $(cat "$WORK/log/smtp-sink.out")"
lab_start_postfix "$WORK"
lab_wait_for 10 lab_port_listening "$SMTP_PORT" || lab_die "Postfix does not listen on $SMTP_PORT"

# connector-milter logs with syslog(3); without a listener on /dev/log glibc drops the
# lines (cheaper than real life). Give it one: the machine's, or a private rsyslogd.
if [ -z "$SKIP_C" ]; then
    if lab_syslog_listening; then
        LOGGING="the machine's syslog daemon (/dev/log)"
    elif command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; then
        lab_private_syslog "$WORK"
        LOGGING="a private rsyslogd writing $WORK/log/mail.log"
    else
        LOGGING="nothing listening on /dev/log (install rsyslog): log lines are dropped"
    fi
fi

sent_count() { grep -c 'status=sent' "$WORK/log/maillog" || true; }

# wait_delivered N: until N messages in total reached the sink (keeps runs apart).
wait_delivered() {
    local want=$1 deadline=$((SECONDS + 120))
    while [ "$(sent_count)" -lt "$want" ]; do
        [ $SECONDS -lt $deadline ] || lab_die "only $(sent_count) of $want messages delivered to the sink; see $WORK/log/maillog"
        sleep 0.2
    done
}

# set_relay stock|connectors: Postfix's relay control for the next case (reloaded by lab_set_milter).
set_relay() {
    if [ "$1" = connectors ]; then
        postconf -c "$WORK/etc" -e "mynetworks =" \
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_policy_service unix:$WORK/run/policy.sock, reject_unauth_destination" \
            "relay_domains = socketmap:unix:$WORK/run/maps.sock:relay-domains"
    else
        postconf -c "$WORK/etc" -e "mynetworks = 127.0.0.1/32 [::1]/128" \
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination" "relay_domains ="
    fi
}

# The machine's busy CPU time, in clock ticks: user, nice, system, irq, softirq (not idle,
# iowait or the time the hypervisor gave to others).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# CPU time, in clock ticks, of this shell's children that have ended (smtp-source among them).
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

TOTAL=0
# run_case LABEL MILTER [RELAY]: sets RATE to the rate in msgs/s and CPU to the machine's CPU
# per message in units of smtp-source's.
run_case() {
    local label=$1 milter=$2
    set_relay "${3:-stock}"
    lab_set_milter "$WORK" "$milter"
    sleep 1  # smtpd processes of the old configuration finish and exit
    smtp-source -s "$SESSIONS" -m "$WARMUP" -l "$SIZE" -f "$FROM" -t "$TO" -M bench.lab.test \
        127.0.0.1:"$SMTP_PORT" > "$WORK/log/warmup-$label.out" 2>&1 ||
        lab_die "($label) warm-up failed: $(tail -3 "$WORK/log/warmup-$label.out"); Postfix: $(tail -3 "$WORK/log/maillog")"
    TOTAL=$((TOTAL + WARMUP))
    wait_delivered "$TOTAL"
    local start end busy0 busy1 source0 source1
    busy0=$(busy_ticks)
    source0=$(children_ticks)
    start=$(date +%s.%N)
    smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "$FROM" -t "$TO" -M bench.lab.test \
        127.0.0.1:"$SMTP_PORT" > "$WORK/log/run-$label.out" 2>&1 ||
        lab_die "($label) smtp-source failed (a refusal? set BENCH_FROM/BENCH_TO to mail the policy accepts): $(tail -3 "$WORK/log/run-$label.out"); Postfix: $(tail -3 "$WORK/log/maillog")"
    end=$(date +%s.%N)
    source1=$(children_ticks)
    TOTAL=$((TOTAL + MESSAGES))
    wait_delivered "$TOTAL"
    busy1=$(busy_ticks)
    RATE=$(awk -v n="$MESSAGES" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", n / (e - s) }')
    [ $((source1 - source0)) -gt 0 ] || lab_die "($label) smtp-source used no measurable CPU; raise BENCH_MESSAGES"
    CPU=$(awk -v b=$((busy1 - busy0)) -v s=$((source1 - source0)) 'BEGIN { printf "%.2f", b / s }')
}

"$WORK/passthrough-milter" -g postfix "$PASS_SOCKET" > "$WORK/log/passthrough-milter.out" 2>&1 &
PASS_PID=$!
"$WORK/passthrough-milter" -g postfix -n "$FEWEST_SOCKET" > "$WORK/log/fewest-replies.out" 2>&1 &
FEWEST_PID=$!
lab_wait_for 10 test -S "$WORK/run/passthrough.sock" ||
    lab_die "passthrough-milter did not start: $(cat "$WORK/log/passthrough-milter.out")"
lab_wait_for 10 test -S "$WORK/run/fewest-replies.sock" ||
    lab_die "passthrough-milter -n did not start: $(cat "$WORK/log/fewest-replies.out")"

if [ -z "$SKIP_C" ]; then
    "$BIN" run --foreground --config "$POLICY" --socket "$MILTER_SOCKET" --log syslog \
        --pidfile "$WORK/run/connector-milter.pid" --user nobody --group postfix \
        --policy-socket "unix:$WORK/run/policy.sock" --maps-socket "unix:$WORK/run/maps.sock" \
        > "$WORK/log/connector-milter.out" 2>&1 &
    MILTER_PID=$!
    lab_wait_for 30 test -S "$WORK/run/milter.sock" ||
        lab_die "connector-milter did not create its socket: $(tail -5 "$WORK/log/connector-milter.out")"
fi

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "throughput: $MESSAGES messages of $SIZE bytes, $SESSIONS sessions, one connection per message," \
     "MAIL FROM <$FROM> RCPT TO <$TO>; $ROUNDS round(s); $(nproc) CPUs"
if [ -n "$SKIP_C" ]; then
    echo "(c), (d) connector-milter skipped: $SKIP_C"
else
    echo "(c) connector-milter: $BIN, policy $POLICY, logging to $LOGGING"
fi

CASES="a b e"
[ -n "$SKIP_C" ] || CASES="$CASES c d"
declare -A RATES CPUS
for round in $(seq 1 "$ROUNDS"); do
    rates="" cpus=""
    for case in $CASES; do
        case $case in
            a) run_case "a$round" "" ;;
            b) run_case "b$round" "$PASS_SOCKET" ;;
            e) run_case "e$round" "$FEWEST_SOCKET" ;;
            c) run_case "c$round" "$MILTER_SOCKET" ;;
            d) run_case "d$round" "$MILTER_SOCKET" connectors ;;
        esac
        RATES[$case]="${RATES[$case]:-} $RATE"
        CPUS[$case]="${CPUS[$case]:-} $CPU"
        rates="$rates $case=$RATE" cpus="$cpus $case=$CPU"
    done
    echo "  round $round:$rates msgs/s;$cpus CPU/msg"
done

declare -A RATE_OF CPU_OF
for case in $CASES; do
    RATE_OF[$case]=$(echo "${RATES[$case]}" | median)
    CPU_OF[$case]=$(echo "${CPUS[$case]}" | median)
done
# ratios X Y: the rate ratio and the CPU ratio of X to Y (above 1: X is cheaper), 3 decimals.
ratios() {
    awk -v rx="${RATE_OF[$1]}" -v ry="${RATE_OF[$2]}" -v cx="${CPU_OF[$1]}" -v cy="${CPU_OF[$2]}" \
        'BEGIN { printf "%.3f %.3f", rx / ry, cy / cx }'
}
# ratio X Y: "x/y = R (CPU: C)".
ratio() {
    local rate cpu
    read -r rate cpu <<< "$(ratios "$1" "$2")"
    printf '%s/%s = %.2f (CPU: %.2f)' "$1" "$2" "$rate" "$cpu"
}
row() { printf '(%s) %-29s %8s %8s   %s\n' "$1" "$2" "${RATE_OF[$1]}" "${CPU_OF[$1]}" "${3:-}"; }
echo "medians:                              msgs/s  CPU/msg"
row a "no milter"
row b "pass-through C milter" "$(ratio b a)"
row e "C milter, fewest round trips" "$(ratio e b)"
if [ -n "$SKIP_C" ]; then
    echo "(c), (d) connector-milter skipped: $SKIP_C"
else
    row c "connector-milter" "$(ratio c b)   $(ratio c e)   $(ratio c a)"
    row d "connector-milter + relay" "$(ratio d c)"
fi

# One line for scripts: the figures and ratios.
line="RESULT"
for case in $CASES; do line="$line $case=${RATE_OF[$case]} cpu_$case=${CPU_OF[$case]}"; done
for pair in "b a" "e b" "c b" "c e" "d c"; do
    set -- $pair
    case " $CASES " in *" $1 "*) ;; *) continue ;; esac
    read -r rate cpu <<< "$(ratios "$1" "$2")"
    line="$line $1/$2=$rate cpu_$1/$2=$cpu"
done
echo "$line"
