#!/usr/bin/env bash
# make demo: connector-milter in a private Postfix on 127.0.0.1, with the example policy.
#
# Installs what is missing (Debian, as root), builds, starts a private Postfix that loads the
# milter, a delivery sink and (when no syslog daemon runs) a private rsyslogd, sends sample
# mail that is accepted, refused, tempfailed and monitored, prints the verdict lines and a
# summary, and stops every process it started, by PID. Nothing outside a temporary directory
# is touched, except /dev/log when it did not exist (removed again at the end).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it starts a private Postfix)" >&2; exit 1; }

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "1. Installing what is missing and building"
bash scripts/install-deps
swift build --product connector-milter 2>&1 | tail -1
BIN=$ROOT/.build/debug/connector-milter

# shellcheck source=../bench/lab.sh
. "$ROOT/bench/lab.sh"
lab_require postfix postconf smtp-sink openssl swaks

WORK=$(mktemp -d /tmp/connector-demo.XXXXXX)
MASTER_PID="" SINK_PID="" MILTER_PID="" SYSLOG_PID="" OWN_DEVLOG=""
cleanup() {
    set +e
    lab_stop_postfix "$MASTER_PID"
    lab_stop_pid "$MILTER_PID" 15
    lab_stop_pid "$SINK_PID" 5
    lab_stop_pid "$SYSLOG_PID" 5
    [ -z "$OWN_DEVLOG" ] || rm -f /dev/log
    if [ -n "${DEMO_KEEP:-}" ]; then echo "demo directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold "2. Starting a private Postfix on 127.0.0.1 with connector-milter"
SMTP_PORT=$(lab_free_port 25350)
SINK_PORT=$(lab_free_port $((SMTP_PORT + 1)))
lab_configure "$WORK" "$SMTP_PORT" "$SINK_PORT" "unix:$WORK/run/milter.sock"

# The example policy, with its monitor-mode partner switched on so the demo shows monitor mode.
sed 's/^    enabled: false$/    enabled: true/' examples/connectors.yaml > "$WORK/connectors.yaml"
chmod 644 "$WORK/connectors.yaml"
"$BIN" check --config "$WORK/connectors.yaml"

# A client certificate for the on-premises relay, signed by the lab CA that Postfix trusts.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/certs/relay.key" \
    -out "$WORK/certs/relay.csr" -subj "/CN=relay.contoso.com" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > "$WORK/certs/relay.ext"
openssl x509 -req -in "$WORK/certs/relay.csr" -CA "$WORK/certs/ca.crt" -CAkey "$WORK/certs/ca.key" \
    -set_serial 2 -out "$WORK/certs/relay.crt" -days 30 -extfile "$WORK/certs/relay.ext" 2>/dev/null

# Verdict lines go to syslog. Without a syslog daemon, a private rsyslogd takes /dev/log.
VERDICTS=$WORK/log/mail.log
LOG_ARGS=(--log syslog)
if lab_syslog_listening; then
    echo "a syslog daemon already listens on /dev/log: the daemon logs to stderr for this demo"
    LOG_ARGS=(--log stderr)
    VERDICTS=$WORK/log/connector-milter.out
else
    lab_private_syslog "$WORK"
fi

"$BIN" run --foreground --config "$WORK/connectors.yaml" --socket "unix:$WORK/run/milter.sock" \
    --user nobody --group postfix "${LOG_ARGS[@]}" > "$WORK/log/connector-milter.out" 2>&1 &
MILTER_PID=$!
lab_wait_for 15 test -S "$WORK/run/milter.sock" || lab_die "connector-milter did not start: $(cat "$WORK/log/connector-milter.out")"

smtp-sink -u nobody -d "$WORK/sink/%M." 127.0.0.1:"$SINK_PORT" 64 > "$WORK/log/smtp-sink.out" 2>&1 &
SINK_PID=$!
lab_wait_for 10 lab_port_listening "$SINK_PORT" || lab_die "smtp-sink did not start"
lab_start_postfix "$WORK"
lab_wait_for 10 lab_port_listening "$SMTP_PORT" || lab_die "Postfix does not listen on $SMTP_PORT"
echo "Postfix on 127.0.0.1:$SMTP_PORT, milter on $WORK/run/milter.sock, policy $WORK/connectors.yaml"

# send TITLE ADDR FROM TO [swaks options...]: one SMTP session; XCLIENT presents ADDR as the client.
send() {
    local title=$1 addr=$2 from=$3 to=$4; shift 4
    printf '\n  %-62s ' "$title"
    local out reply
    out=$(swaks --server 127.0.0.1 --port "$SMTP_PORT" --helo client.demo.test --from "$from" --to "$to" \
        --xclient-addr "$addr" --xclient-name "client.demo.test" --header "Subject: $title" "$@" 2>&1 || true)
    # swaks marks lines: "->"/"~>" sent (plain/TLS), "<-"/"<~" received, "<**"/"<~*" an error reply.
    reply=$(printf '%s\n' "$out" | awk '/^ *[-~]> RCPT TO/ { getline; sub(/^ *<[-~*]+ */, ""); print; exit }')
    printf '%s' "${reply:-(no RCPT reply)}"
}

bold "3. Sample traffic (the RCPT TO reply of each session)"
send "Fabrikam Bank, from its own address, over TLS" 203.0.113.5 pay@fabrikam.com ap@contoso.com --tls
send "On-premises relay with a verified certificate, to the internet" 192.0.2.10 ceo@contoso.com partner@example.net \
    --tls --tls-cert "$WORK/certs/relay.crt" --tls-key "$WORK/certs/relay.key"
send "Newsletter from an unknown server, to a local user" 198.51.100.9 news@example.org user@contoso.com \
    --header "X-Connector-Inbound: forged by the sender"
send "Unknown server relaying to the internet" 198.51.100.9 spam@example.org victim@example.net
send "fabrikam.com sender from a foreign address" 198.51.100.9 pay@fabrikam.com ap@contoso.com
send "Fabrikam Bank without TLS" 203.0.113.5 pay@fabrikam.com ap@contoso.com
send "On-premises address without its certificate" 192.0.2.10 ceo@contoso.com partner@example.net
send "Woodgrove (monitor mode) without its certificate" 198.51.100.20 promo@woodgrove.example user@contoso.com
echo

# Acceptances are logged when the message is queued; give the last ones a moment.
lab_wait_for 10 bash -c "[ \$(grep -c 'verdict=' '$VERDICTS' 2>/dev/null || echo 0) -ge 8 ]" || true

bold "4. The verdict lines connector-milter logged"
grep -o '[A-Z0-9]*: verdict=.*' "$VERDICTS" | sed 's/^/  /' || echo "  (none: see $WORK/log)"

bold "5. Headers of a delivered message (the forged X-Connector-Inbound is gone)"
newsletter=$(grep -l "Subject: Newsletter" "$WORK"/sink/* 2>/dev/null | head -1 || true)
if [ -n "$newsletter" ]; then grep -E '^(X-Connector|Subject)' "$newsletter" | sed 's/^/  /'; fi

bold "6. Summary (connector-milter report; without the cut, it goes on per connector)"
"$BIN" report "$VERDICTS" | sed -n '1p;/^All connectors/,/^$/p'
echo
echo "Try it yourself: $BIN classify --config examples/connectors.yaml --client-ip 203.0.113.5 --from '<a@fabrikam.com>' --rcpt '<b@contoso.com>'"
