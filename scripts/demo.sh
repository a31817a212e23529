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

# Relay control as docs/relay-control.md sets it up: the daemon also answers Postfix's relay
# question (policy socket) and lists the accepted domains (relay_domains socketmap).
"$BIN" run --foreground --config "$WORK/connectors.yaml" --socket "unix:$WORK/run/milter.sock" \
    --policy-socket "unix:$WORK/run/policy.sock" --maps-socket "unix:$WORK/run/maps.sock" \
    --user nobody --group postfix "${LOG_ARGS[@]}" > "$WORK/log/connector-milter.out" 2>&1 &
MILTER_PID=$!
lab_wait_for 15 test -S "$WORK/run/milter.sock" || lab_die "connector-milter did not start: $(cat "$WORK/log/connector-milter.out")"

smtp-sink -u nobody -d "$WORK/sink/%M." 127.0.0.1:"$SINK_PORT" 64 > "$WORK/log/smtp-sink.out" 2>&1 &
SINK_PID=$!
lab_wait_for 10 lab_port_listening "$SINK_PORT" || lab_die "smtp-sink did not start"
lab_start_postfix "$WORK"
lab_wait_for 10 lab_port_listening "$SMTP_PORT" || lab_die "Postfix does not listen on $SMTP_PORT"
echo "Postfix on 127.0.0.1:$SMTP_PORT, milter on $WORK/run/milter.sock, policy $WORK/connectors.yaml"

# Every sample states what it must produce: the RCPT TO reply and the verdict line. A sample that
# comes out otherwise (swaks without STARTTLS, a changed policy, a broken build) is listed at the
# end and the demo exits 1: a demo that cannot show its point says so.
FAILURES=()
verdict_count() { grep -c 'verdict=' "$VERDICTS" 2>/dev/null || true; }

# sample TITLE ADDR FROM TO --reply REPLY [--verdict FRAGMENT]... [--no-verdict] [-- SWAKS-OPTIONS...]
# One SMTP session; XCLIENT presents ADDR as the client. REPLY is how the RCPT TO reply must
# begin; each FRAGMENT must appear in the one verdict line the session leaves (--no-verdict: the
# session must leave none).
sample() {
    local title=$1 addr=$2 from=$3 to=$4; shift 4
    local want_reply="" want_lines=1 fragments=() swaks_options=()
    while [ $# -gt 0 ]; do
        case $1 in
            --reply) want_reply=$2; shift 2 ;;
            --verdict) fragments+=("$2"); shift 2 ;;
            --no-verdict) want_lines=0; shift ;;
            --) shift; swaks_options=("$@"); break ;;
            *) lab_die "sample: unknown option $1" ;;
        esac
    done
    printf '\n  %-62s ' "$title"
    local before out reply
    before=$(verdict_count)
    out=$(swaks --server 127.0.0.1 --port "$SMTP_PORT" --helo client.demo.test --from "$from" --to "$to" \
        --xclient-addr "$addr" --xclient-name "client.demo.test" --header "Subject: $title" \
        "${swaks_options[@]}" 2>&1 || true)
    # swaks marks lines: "->"/"~>" sent (plain/TLS), "<-"/"<~" received, "<**"/"<~*" an error reply.
    reply=$(printf '%s\n' "$out" | awk '/^ *[-~]> RCPT TO/ { getline; sub(/^ *<[-~*]+ */, ""); print; exit }')
    printf '%s' "${reply:-(no RCPT reply)}"

    # Acceptances are logged when the message is queued, refusals at RCPT; syslog may lag a little.
    lab_wait_for 10 bash -c "[ \$(grep -c 'verdict=' '$VERDICTS' 2>/dev/null) -ge $((before + want_lines)) ]" || true
    local lines
    lines=$(grep 'verdict=' "$VERDICTS" 2>/dev/null | tail -n +$((before + 1)) | grep -o 'verdict=.*' || true)

    local problems=() fragment
    if [ "${reply#"$want_reply"}" = "$reply" ] || [ -z "$reply" ]; then
        local hint  # why swaks gave up, when it did (no STARTTLS, no connection)
        hint=$(printf '%s\n' "$out" | grep -E '^\*\*\*' | head -1 | sed 's/^\*\*\* */ (swaks: /; s/$/)/' || true)
        problems+=("RCPT TO reply: expected \"$want_reply...\", got \"${reply:-no reply}\"$hint")
    fi
    local got_lines=0
    [ -z "$lines" ] || got_lines=$(printf '%s\n' "$lines" | wc -l)
    if [ "$got_lines" -ne "$want_lines" ]; then
        problems+=("verdict lines: expected $want_lines, got $got_lines${lines:+: $lines}")
    else
        for fragment in "${fragments[@]}"; do
            case $lines in
                *"$fragment"*) ;;
                *) problems+=("verdict line: expected \"$fragment\" in: $lines") ;;
            esac
        done
    fi
    if [ ${#problems[@]} -eq 0 ]; then
        printf '  ok'
    else
        printf '  UNEXPECTED'
        local problem
        for problem in "${problems[@]}"; do
            printf '\n      %s' "$problem"
            FAILURES+=("$title: $problem")
        done
    fi
}

bold "3. Sample traffic (the RCPT TO reply of each session, checked with its verdict line)"
sample "Fabrikam Bank, from its own address, over TLS" 203.0.113.5 pay@fabrikam.com ap@contoso.com \
    --reply "250 2.1.5" \
    --verdict 'verdict=accept direction=incoming inbound="Fabrikam Bank"' --verdict 'tls=TLSv1.' -- --tls
sample "On-premises relay with a verified certificate, to the internet" 192.0.2.10 ceo@contoso.com partner@example.net \
    --reply "250 2.1.5" \
    --verdict 'verdict=accept direction=originating inbound="Contoso on-premises"' --verdict 'cert="relay.contoso.com"' \
    -- --tls --tls-cert "$WORK/certs/relay.crt" --tls-key "$WORK/certs/relay.key"
sample "Newsletter from an unknown server, to a local user" 198.51.100.9 news@example.org user@contoso.com \
    --reply "250 2.1.5" --verdict 'verdict=accept direction=incoming inbound=none' \
    -- --header "X-Connector-Inbound: forged by the sender"
# Postfix's own relay control refuses it (the daemon's policy service said DUNNO): the milter
# never sees this recipient, so there is no verdict line.
sample "Unknown server relaying to the internet" 198.51.100.9 spam@example.org victim@example.net \
    --reply "554 5.7.1" --no-verdict
sample "fabrikam.com sender from a foreign address" 198.51.100.9 pay@fabrikam.com ap@contoso.com \
    --reply "550 5.7.51" --verdict 'verdict=reject reason=partner-restricted'
sample "Fabrikam Bank without TLS" 203.0.113.5 pay@fabrikam.com ap@contoso.com \
    --reply "454 4.7.0" --verdict 'verdict=tempfail reason=tls-required direction=incoming inbound="Fabrikam Bank"'
sample "On-premises address without its certificate" 192.0.2.10 ceo@contoso.com partner@example.net \
    --reply "454 4.7.0" --verdict 'verdict=tempfail reason=tls-required direction=originating inbound="Contoso on-premises"'
sample "Woodgrove (monitor mode) without its certificate" 198.51.100.20 promo@woodgrove.example user@contoso.com \
    --reply "250 2.1.5" --verdict 'verdict=accept would=reject reason=partner-restricted' --verdict 'mode=monitor'
echo

bold "4. The verdict lines connector-milter logged"
grep -o '[A-Z0-9]*: verdict=.*' "$VERDICTS" | sed 's/^/  /' || echo "  (none: see $WORK/log)"

bold "5. Headers of a delivered message (the forged X-Connector-Inbound is gone)"
find_newsletter() { grep -l "Subject: Newsletter" "$WORK"/sink/* 2>/dev/null | head -1; }
lab_wait_for 10 find_newsletter >/dev/null || true  # queued is not yet delivered
newsletter=$(find_newsletter || true)
if [ -z "$newsletter" ]; then
    echo "  (not delivered)"
    FAILURES+=("Newsletter: the message did not reach the delivery sink ($WORK/sink)")
else
    grep -E '^(X-Connector|Subject)' "$newsletter" | sed 's/^/  /'
    if grep -q '^X-Connector-Inbound: forged' "$newsletter" || ! grep -q '^X-Connector-Inbound: none$' "$newsletter"; then
        FAILURES+=("Newsletter: expected the forged header replaced by \"X-Connector-Inbound: none\"")
    fi
fi

bold "6. Summary (connector-milter report; without the cut, it goes on per connector)"
"$BIN" report "$VERDICTS" | sed -n '1p;/^All connectors/,/^$/p'
echo
if [ ${#FAILURES[@]} -gt 0 ]; then
    printf '\033[1mdemo FAILED: %d sample check(s) came out otherwise than expected:\033[0m\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    echo "(DEMO_KEEP=1 make demo keeps the directory with Postfix's and the daemon's logs)" >&2
    exit 1
fi
echo "Every sample came out as expected."
echo "Try it yourself: $BIN classify --config examples/connectors.yaml --client-ip 203.0.113.5 --from '<a@fabrikam.com>' --rcpt '<b@contoso.com>'"
