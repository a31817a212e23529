#!/usr/bin/env bash
# Load-and-reload soak (issue 7): about 200 concurrent SMTP sessions (smtp-source) through a
# private Postfix with connector-milter and an smtp-sink, while a driver sends the daemon
# SIGUSR1 or SIGHUP every 100 ms, cycling two valid policies and one broken one.
#
#   scripts/soak.sh [SECONDS] [SESSIONS]      (defaults 90 and 200; loopback only; root)
#
# Policy A and policy B both accept mail from 127.0.0.0/8 to contoso.com, through on-premises
# connectors named "Soak A" and "Soak B": every verdict line must name one of them. The broken
# policy must be refused at each reload, the running one kept.
#
# Figures printed at the end: messages accepted by Postfix vs delivered to the sink (must be
# equal), accept verdict lines, verdict lines that match neither policy (must be 0), the
# worker's resident memory and open descriptors at start and end, reloads applied and
# rejected. Exit 0 when every check holds.
#
# CONNECTOR_MILTER_BIN picks the binary (default: a release build, made if missing).
# The daemon logs to stderr (--log stderr --foreground): no syslog and no /dev/log needed,
# so the soak may run beside the end-to-end tests. Every process is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lab.sh

duration=${1:-90}
sessions=${2:-200}
lab_require postconf smtp-source smtp-sink openssl

bin=${CONNECTOR_MILTER_BIN:-}
if [ -z "$bin" ]; then
    swift build -c release --product connector-milter >/dev/null
    bin=$PWD/.build/release/connector-milter
fi

LAB=$(mktemp -d /tmp/connector-soak.XXXXXX)
MASTER_PID="" SINK_PID="" DAEMON_PID="" DRIVER_PID="" LOAD_PID=""
cleanup() {
    local pid
    for pid in $DRIVER_PID $LOAD_PID; do lab_stop_pid "$pid" 2; done
    [ -z "$DAEMON_PID" ] || lab_stop_pid "$DAEMON_PID" 15
    lab_stop_postfix "$MASTER_PID"
    lab_stop_pid "$SINK_PID" 5
    if [ "${SOAK_KEEP:-0}" = 1 ]; then echo "soak: lab kept in $LAB"; else rm -rf "$LAB"; fi
}
trap cleanup EXIT

smtp_port=$(lab_free_port 26000)
sink_port=$(lab_free_port $((smtp_port + 1)))
lab_configure "$LAB" "$smtp_port" "$sink_port" "unix:$LAB/run/milter.sock"
# Room for every session: one smtpd per session, and deliveries keep up.
postconf -c "$LAB/etc" -e "default_process_limit = $((sessions + 50))" \
    "default_destination_concurrency_limit = 50" "smtpd_client_connection_count_limit = 0" \
    "milter_connect_timeout = 10s" "milter_command_timeout = 30s"
lab_backdate "$LAB"

policy() {  # policy NAME: accepted domain contoso.com, on-premises 127.0.0.0/8 named NAME
    cat <<YAML
organization:
  acceptedDomains: [contoso.com]
connectors:
  - name: $1
    direction: inbound
    type: onPremises
    senderIPAddresses: [127.0.0.0/8]
  - name: Partner of $1
    direction: inbound
    type: partner
    senderDomains: [fabrikam.com]
    senderIPAddresses: [203.0.113.0/24]
    restrictDomainsToIPAddresses: true
YAML
}
policy "Soak A" > "$LAB/policy-a.yaml"
policy "Soak B" > "$LAB/policy-b.yaml"
{ policy "Soak C"; printf '  - name: Broken\n    direction: sideways\n'; } > "$LAB/policy-broken.yaml"
chmod 644 "$LAB"/policy-*.yaml
cp "$LAB/policy-a.yaml" "$LAB/connectors.yaml"

smtp-sink -u nobody 127.0.0.1:"$sink_port" 512 > "$LAB/log/smtp-sink.out" 2>&1 &
SINK_PID=$!
lab_wait_for 10 lab_port_listening "$sink_port" || lab_die "smtp-sink did not start"
lab_start_postfix "$LAB"

"$bin" run --foreground --log stderr --config "$LAB/connectors.yaml" --socket "unix:$LAB/run/milter.sock" \
    --policy-socket "unix:$LAB/run/policy.sock" --maps-socket "unix:$LAB/run/maps.sock" \
    --user nobody --group postfix > "$LAB/log/daemon.log" 2>&1 &
DAEMON_PID=$!
lab_wait_for 30 test -S "$LAB/run/milter.sock" || lab_die "the daemon did not start: $(cat "$LAB/log/daemon.log")"
worker_pid() { pgrep -P "$DAEMON_PID" | head -1; }
lab_wait_for 10 test -n "$(worker_pid)" || lab_die "no worker"
worker=$(worker_pid)
rss() { awk '/^VmRSS:/ { print $2 " kB" }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# Warm up (first sessions, first reload), then measure the start.
smtp-source -c -s 10 -m 50 -f soak@contoso.com -t user@contoso.com 127.0.0.1:"$smtp_port" >/dev/null 2>&1 || true
kill -USR1 "$DAEMON_PID"; sleep 0.5
rss_start=$(rss "$worker"); fds_start=$(fds "$worker")

# The reload driver: every 100 ms the next policy in A, B, broken, and SIGUSR1 / SIGHUP in turn.
(
    i=0
    while :; do
        case $((i % 3)) in 0) next=b ;; 1) next=broken ;; 2) next=a ;; esac
        cp "$LAB/policy-$next.yaml" "$LAB/connectors.yaml.new" && mv "$LAB/connectors.yaml.new" "$LAB/connectors.yaml"
        if [ $((i % 2)) = 0 ]; then kill -USR1 "$DAEMON_PID"; else kill -HUP "$DAEMON_PID"; fi
        i=$((i + 1))
        sleep 0.1
    done
) &
DRIVER_PID=$!

# The load: smtp-source runs of 2,000 messages over $sessions parallel sessions, until the time is up.
echo "soak: $duration s, $sessions concurrent sessions, reload every 100 ms (lab $LAB)"
end=$((SECONDS + duration))
runs=0
while [ $SECONDS -lt $end ]; do
    smtp-source -c -s "$sessions" -m 2000 -f soak@contoso.com -t user@contoso.com \
        127.0.0.1:"$smtp_port" > "$LAB/log/smtp-source.out" 2>&1 || echo "soak: smtp-source run $runs: $(tail -1 "$LAB/log/smtp-source.out")"
    runs=$((runs + 1))
    printf '\r%d runs, %d s left ' "$runs" $((end - SECONDS))
done
echo
lab_stop_pid "$DRIVER_PID" 2; DRIVER_PID=""
# The last reload settles, with a valid policy in place.
cp "$LAB/policy-a.yaml" "$LAB/connectors.yaml"; kill -USR1 "$DAEMON_PID"; sleep 1

# Wait until Postfix's queue has drained (every accepted message delivered or failed).
accepted() { grep -c ': message-id=<' "$LAB/log/maillog" || true; }   # cleanup: one per queued message
delivered() { grep -c 'status=sent' "$LAB/log/maillog" || true; }
lab_wait_for 120 bash -c "[ \$(grep -c ': message-id=<' '$LAB/log/maillog') -le \$(grep -c status=sent '$LAB/log/maillog') ]" || true
sleep 1

worker_end=$(worker_pid)
rss_end=$(rss "$worker_end"); fds_end=$(fds "$worker_end")
n_accepted=$(accepted); n_delivered=$(delivered)
n_verdicts=$(grep -c 'verdict=accept' "$LAB/log/daemon.log" || true)
n_refused=$(grep 'verdict=' "$LAB/log/daemon.log" | grep -vc 'verdict=accept' || true)
n_foreign=$(grep 'verdict=' "$LAB/log/daemon.log" | grep -Evc 'verdict=accept direction=originating inbound="Soak (A|B)" inbound_type=onPremises ' || true)
n_applied=$(grep -c 'policy reloaded' "$LAB/log/daemon.log" || true)
n_rejected=$(grep -c 'policy reload from .* failed' "$LAB/log/daemon.log" || true)
n_tempfail=$(grep -c 'milter.*\(service unavailable\|4\.7\.1\)' "$LAB/log/maillog" || true)
n_deferred=$(grep -c 'status=deferred\|status=bounced' "$LAB/log/maillog" || true)
restarts=$(grep -c 'worker .* after [0-9]* s' "$LAB/log/daemon.log" || true)

cat <<REPORT
soak figures ($duration s, $sessions sessions, $runs smtp-source runs):
  messages accepted by Postfix   $n_accepted
  messages delivered to the sink $n_delivered
  deferred or bounced            $n_deferred
  accept verdict lines           $n_verdicts
  refusal verdict lines          $n_refused
  verdicts matching neither      $n_foreign
  milter tempfails in Postfix    $n_tempfail
  reloads applied / rejected     $n_applied / $n_rejected
  worker restarts                $restarts (worker $worker -> $worker_end)
  worker RSS start / end         $rss_start / $rss_end
  worker open fds start / end    $fds_start / $fds_end
REPORT

status=0
[ "$n_accepted" -gt 0 ] || { echo "FAIL: nothing accepted"; status=1; }
[ "$n_accepted" = "$n_delivered" ] || { echo "FAIL: accepted != delivered"; status=1; }
[ "$n_accepted" = "$n_verdicts" ] || { echo "FAIL: accepted != accept verdict lines"; status=1; }
[ "$n_foreign" = 0 ] || { echo "FAIL: verdicts matching neither policy:"; grep 'verdict=' "$LAB/log/daemon.log" | grep -Ev 'inbound="Soak (A|B)"' | head -5; status=1; }
[ "$n_rejected" -gt 0 ] && [ "$n_applied" -gt 0 ] || { echo "FAIL: the driver's reloads did not all happen"; status=1; }
[ "$worker" = "$worker_end" ] || { echo "FAIL: the worker was restarted"; status=1; }
[ "$fds_start" = "$fds_end" ] || echo "note: open descriptors changed ($fds_start -> $fds_end)"
[ $status = 0 ] && echo "soak: OK" || echo "soak: FAILED (SOAK_KEEP=1 keeps the lab)"
exit $status
