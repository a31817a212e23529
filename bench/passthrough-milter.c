/*
 * passthrough-milter: the smallest useful libmilter milter. It registers every
 * callback a policy milter that sees the envelope and headers needs (connect, helo,
 * envfrom, envrcpt, header, eoh, eom, abort, close, negotiate) and answers
 * CONTINUE/ACCEPT to all of them, so Postfix pays the round trip of each of those
 * stages. It is the baseline the throughput bench compares connector-milter against,
 * and the end-to-end lab's proof that Postfix reaches a milter on a unix socket.
 *
 * Build:  gcc -O2 -Wall -o passthrough-milter passthrough-milter.c -lmilter -lpthread
 * Run:    passthrough-milter [-g GROUP] [-H] [-n] unix:/path/milter.sock|inet:PORT@HOST
 *
 *   -g GROUP  give the unix socket to GROUP (e.g. postfix) so the MTA can connect;
 *             the socket is mode 0660 (libmilter itself never chmods).
 *   -H        add "X-Passthrough-Milter: seen" at end of message, so a test can
 *             see in the delivered message that the milter was consulted. The
 *             bench runs without it.
 *   -n        the fewest round trips the milter protocol allows a milter that sees the
 *             envelope and the headers: no connect, HELO or end-of-headers step at all (the
 *             client's address comes as the {client_addr} macro at MAIL), and no reply to
 *             MAIL or to a header (SMFIP_NR_MAIL, SMFIP_NR_HDR). The MTA waits only at RCPT
 *             and at the end of the message. The bench's floor for what negotiation can save.
 *
 * SECURITY
 *   Runs with the privileges it is started with; it reads nothing but the
 *   milter protocol and keeps no state. For tests and benchmarks only.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

static int add_header = 0;
static int fewest_replies = 0;

static sfsistat pt_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) { return SMFIS_CONTINUE; }
static sfsistat pt_helo(SMFICTX *ctx, char *helo) { return SMFIS_CONTINUE; }
static sfsistat pt_envfrom(SMFICTX *ctx, char **argv)
{
    return fewest_replies ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}
static sfsistat pt_envrcpt(SMFICTX *ctx, char **argv) { return SMFIS_CONTINUE; }
static sfsistat pt_header(SMFICTX *ctx, char *name, char *value)
{
    return fewest_replies ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}
static sfsistat pt_eoh(SMFICTX *ctx) { return SMFIS_CONTINUE; }

static sfsistat pt_eom(SMFICTX *ctx)
{
    if (add_header)
        smfi_addheader(ctx, "X-Passthrough-Milter", "seen");
    return SMFIS_ACCEPT;
}
static sfsistat pt_abort(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat pt_close(SMFICTX *ctx) { return SMFIS_CONTINUE; }

/* Every stage it has a callback for is sent and answered, as for a plain policy milter that
 * sees the envelope and the headers. The stages it has no callback for (DATA, the body,
 * unknown commands) are skipped, as libmilter itself does for a milter without a negotiate
 * callback: asking for them would only make this baseline slower than it need be. */
static sfsistat pt_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    *pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
    *pf1 = (SMFIP_NOBODY | SMFIP_NODATA | SMFIP_NOUNKNOWN) & f1;
    *pf2 = 0;
    *pf3 = 0;
    if (fewest_replies) {
        unsigned long skipped = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NR_MAIL | SMFIP_NR_HDR;
        /* The callbacks answer SMFIS_NOREPLY, which only an MTA that agreed to it may get. */
        if ((f1 & skipped) != skipped || (f0 & SMFIF_SETSYMLIST) == 0) {
            fprintf(stderr, "passthrough-milter: -n: the MTA does not offer protocol 6's no-reply steps\n");
            return SMFIS_REJECT;
        }
        *pf1 |= skipped;
        *pf0 |= SMFIF_SETSYMLIST;
        if (smfi_setsymlist(ctx, SMFIM_ENVFROM, "{client_addr}") != MI_SUCCESS)
            return SMFIS_REJECT;
    }
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    "passthrough-milter",
    SMFI_VERSION,
    SMFIF_ADDHDRS | SMFIF_CHGHDRS,
    pt_connect,
    pt_helo,
    pt_envfrom,
    pt_envrcpt,
    pt_header,
    pt_eoh,
    NULL, /* body: not requested, like connector-milter */
    pt_eom,
    pt_abort,
    pt_close,
    NULL, /* unknown */
    NULL, /* data */
    pt_negotiate,
};

int main(int argc, char **argv)
{
    const char *group = NULL;
    int c;
    while ((c = getopt(argc, argv, "g:Hn")) != -1) {
        switch (c) {
        case 'g': group = optarg; break;
        case 'H': add_header = 1; break;
        case 'n': fewest_replies = 1; break;
        default: goto usage;
        }
    }
    if (optind != argc - 1) {
    usage:
        fprintf(stderr, "usage: %s [-g GROUP] [-H] [-n] unix:/path/milter.sock|inet:PORT@HOST\n", argv[0]);
        return 64;
    }
    const char *conn = argv[optind];
    if (smfi_setconn((char *)conn) == MI_FAILURE) {
        fprintf(stderr, "passthrough-milter: bad connection spec %s\n", conn);
        return 64;
    }
    if (smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "passthrough-milter: smfi_register failed\n");
        return 70;
    }
    umask(0117);
    if (smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "passthrough-milter: cannot open %s\n", conn);
        return 71;
    }
    if (group != NULL && strncmp(conn, "unix:", 5) == 0) {
        struct group *gr = getgrnam(group);
        if (gr == NULL || chown(conn + 5, (uid_t)-1, gr->gr_gid) != 0) {
            fprintf(stderr, "passthrough-milter: cannot give %s to group %s: %s\n", conn + 5,
                    group, gr == NULL ? "no such group" : strerror(errno));
            return 71;
        }
    }
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}
