#!/bin/sh
# How fast `connector-milter report` and `simulate` read a large mail log.
#
# Usage: bench/report-bench.sh [SIZE_MB]      (default 1024, i.e. 1 GiB)
#
# Generates a syslog file in /tmp (deleted afterwards) that looks like a busy Postfix
# maillog, only denser in verdict lines: per message one postfix/smtpd connect line, one
# verdict line per recipient (1 to 3; some refused, some in monitor mode, most over TLS),
# one cleanup and one qmgr line. About 45% of the lines are verdict lines, where a real log
# has far fewer, so the figure errs on the slow side. Builds a release binary first.
# Environment: SCRATCH (SwiftPM scratch path, default .build), KEEP=1 keeps the log.
set -eu

size_mb=${1:-1024}
scratch=${SCRATCH:-.build}
cd "$(dirname "$0")/.."

swift build -c release --product connector-milter --scratch-path "$scratch" >/dev/null
bin="$scratch/release/connector-milter"
log=$(mktemp /tmp/report-bench.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -f "$log"' EXIT INT TERM

echo "generating ${size_mb} MiB of log in $log ..."
start=$(date +%s)
mawk -v target=$((size_mb * 1024 * 1024)) '
BEGIN {
    srand(42)
    split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", month, " ")
    bytes = 0; n = 0
    while (bytes < target) {
        n++
        t = int(n / 40)                       # about 40 messages a second
        stamp = sprintf("Nov %2d %02d:%02d:%02d", 1 + int(t / 86400) % 28, int(t / 3600) % 24, int(t / 60) % 60, t % 60)
        id = sprintf("4%X", 1000000 + n)
        c = n % 997
        client = sprintf("mx%d.example.net[198.51.%d.%d]", c, int(c / 250), c % 250)
        tls = (n % 10 < 8) ? "TLSv1.3" : ((n % 10 == 8) ? "TLSv1.2" : "none")
        line = stamp " mx1 postfix/smtpd[" (1000 + n % 50) "]: connect from " client
        print line; bytes += length(line) + 1
        rcpts = 1 + n % 3
        for (r = 1; r <= rcpts; r++) {
            kind = (n * 7 + r) % 20
            if (kind == 0) {
                v = "NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none"
                out = "outbound=none outbound_type=none"; rcpt = "user" r "@elsewhere" c ".example"
            } else if (kind == 1) {
                v = id ": verdict=accept would=reject reason=partner-restricted direction=incoming inbound=none inbound_type=none"
                out = "outbound=none outbound_type=none"; rcpt = "ap" r "@contoso.com"
            } else if (kind < 6) {
                v = id ": verdict=accept direction=originating inbound=\"Contoso on-premises\" inbound_type=onPremises"
                out = "outbound=\"To Fabrikam Bank\" outbound_type=partner"; rcpt = "user" r "@fabrikam.com"
            } else {
                v = id ": verdict=accept direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner"
                out = "outbound=\"To on-premises\" outbound_type=onPremises"; rcpt = "user" (n % 5000) "@contoso.com"
            }
            line = stamp " mx1 connector-milter[" (200 + n % 8) "]: " v " client=" client " tls=" tls \
                " cert=none from=<sender" (n % 3000) "@sender" (c % 200) ".example> rcpt=<" rcpt "> " out " mode=enforce auth=none"
            print line; bytes += length(line) + 1
        }
        line = stamp " mx1 postfix/cleanup[" (3000 + n % 20) "]: " id ": message-id=<" n ".bench@sender.example>"
        print line; bytes += length(line) + 1
        line = stamp " mx1 postfix/qmgr[99]: " id ": from=<sender" (n % 3000) "@sender.example>, size=" (1000 + n % 50000) ", nrcpt=" rcpts " (queue active)"
        print line; bytes += length(line) + 1
    }
}' > "$log"
echo "generated $(wc -c < "$log") bytes, $(wc -l < "$log") lines in $(( $(date +%s) - start )) s"

run() {
    label=$1; shift
    /usr/bin/time -f "$label: %e s elapsed, %U s user, %M KiB peak memory" "$@" > /dev/null
}
cat "$log" > /dev/null   # warm the page cache, so the figure is the reader's, not the disk's
run "report (text)" "$bin" report "$log"
run "report --format json" "$bin" report --format json "$log"
run "report --connector \"Fabrikam Bank\" --since" "$bin" report --connector "Fabrikam Bank" --since 2026-11-02 "$log"
policy=$(mktemp /tmp/report-bench-policy.XXXXXX)
cat > "$policy" <<'EOF'
organization:
  acceptedDomains: [contoso.com]
connectors:
  - name: Contoso on-premises
    direction: inbound
    type: onPremises
    senderIPAddresses: [192.0.2.0/24]
  - name: To Fabrikam Bank
    direction: outbound
    type: partner
    recipientDomains: [fabrikam.com]
EOF
# simulate exits 1 when decisions change, which they do here.
run "simulate" sh -c "\"$bin\" simulate --config \"$policy\" \"$log\" > /dev/null; true"
rm -f "$policy"
