-- connector-milter at the milter protocol level, with libmilter's own test driver.
-- Run by MiltertestTests with -D sock=SOCKET against the lab policy.

local function check(ok, what)
    if not ok then error(what) end
end

local function session(client, address)
    local conn = mt.connect(sock, 40, 0.25)
    check(conn ~= nil, "cannot connect to " .. sock)
    check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiation failed")
    check(mt.conninfo(conn, client, address) == nil, "conninfo")
    check(mt.getreply(conn) == SMFIR_CONTINUE, "connect not continued")
    return conn
end

-- Negotiation: header changes asked for; HELO and the body skipped (the TLS facts are
-- asked for at MAIL); no reply awaited at connect, HELO, MAIL or a header: only RCPT and
-- end of message are answered.
local conn = session("unknown.example", "198.18.0.9")
check(mt.test_action(conn, SMFIF_ADDHDRS), "SMFIF_ADDHDRS not requested")
check(mt.test_action(conn, SMFIF_CHGHDRS), "SMFIF_CHGHDRS not requested")
check(mt.test_option(conn, SMFIP_NOBODY), "the body is not skipped")
check(mt.test_option(conn, SMFIP_NOHELO), "HELO is not skipped")
check(not mt.test_option(conn, SMFIP_NOCONNECT), "connect is skipped: the client address would be lost")
check(not mt.test_option(conn, SMFIP_NOMAIL), "MAIL is skipped: the TLS facts would be lost")
check(not mt.test_option(conn, SMFIP_NOHDRS), "headers are skipped: forged connector headers would stay")
check(mt.test_option(conn, SMFIP_NR_CONN), "a reply is awaited at connect")
check(mt.test_option(conn, SMFIP_NR_HELO), "a reply is awaited at HELO")
check(mt.test_option(conn, SMFIP_NR_MAIL), "a reply is awaited at MAIL")
check(mt.test_option(conn, SMFIP_NR_HDR), "a reply is awaited for each header")
check(not mt.test_option(conn, SMFIP_NR_RCPT), "RCPT is not answered: no verdict could be given")

-- A relay attempt is refused with a custom reply; a local recipient is not.
check(mt.mailfrom(conn, "<a@b.example>") == nil, "mail")
check(mt.rcptto(conn, "<c@d.example>") == nil, "rcpt")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "relay not refused with a reply code")
check(mt.rcptto(conn, "<user@contoso.com>") == nil, "rcpt 2")
check(mt.getreply(conn) == SMFIR_CONTINUE, "local recipient refused")

-- A forged connector header is deleted at end of message and the real ones added.
check(mt.header(conn, "X-Connector-Inbound", "Contoso on-premises") == nil, "header")
check(mt.eom(conn) == nil, "eom")
check(mt.eom_check(conn, MT_HDRDELETE, "X-Connector-Inbound"), "forged header not deleted")
check(mt.eom_check(conn, MT_HDRADD, "X-Connector-Inbound", "none"), "X-Connector-Inbound not added")
check(mt.eom_check(conn, MT_HDRADD, "X-Connector-Direction", "incoming"), "X-Connector-Direction not added")
mt.disconnect(conn)

-- TLS facts asked for at MAIL count even without a HELO after STARTTLS.
conn = session("relay.contoso.com", "198.18.0.20")
-- No HELO: the milter asked the MTA not to send it.
check(mt.macro(conn, SMFIC_MAIL, "{tls_version}", "TLSv1.3", "{cert_subject}", "relay.contoso.com") == nil, "macro")
check(mt.mailfrom(conn, "<ceo@contoso.com>") == nil, "mail")
check(mt.rcptto(conn, "<partner@other.example>") == nil, "rcpt")
check(mt.getreply(conn) == SMFIR_CONTINUE, "verified on-premises relay refused")
mt.disconnect(conn)

-- A connection closed before any command (xxfi_close without xxfi_connect's work),
-- and one dropped mid-message: the daemon must serve the next one.
conn = mt.connect(sock, 40, 0.25)
check(conn ~= nil, "reconnect")
mt.disconnect(conn, false)
conn = session("unknown.example", "198.18.0.9")
check(mt.mailfrom(conn, "<a@b.example>") == nil, "mail")
mt.disconnect(conn, false)
conn = session("unknown.example", "2001:db8::9")
check(mt.mailfrom(conn, "<>") == nil, "mail")
check(mt.rcptto(conn, "<c@d.example>") == nil, "rcpt")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "relay from IPv6 not refused")
mt.disconnect(conn)
mt.echo("protocol checks passed")
