// Fixed-arity wrappers for the C variadic functions Swift cannot call.
// Only the Milter module imports this (and CMilter); everything else goes through it.
#ifndef CMILTERSHIM_H
#define CMILTERSHIM_H

#include <libmilter/mfapi.h>

/// syslog(3) is variadic. This writes `message` verbatim: it is passed as an argument to
/// "%s", never as the format, so a '%' in a logged value cannot be read as a conversion.
void cm_syslog(int priority, const char *message);

/// smfi_setmlreply(3) is variadic and NULL-terminated. This passes `count` lines (1...32,
/// libmilter's own limit) from an array. Returns MI_FAILURE for a count out of range.
/// The caller must already have escaped '%' as "%%" and removed CR/LF from every line.
int cm_setmlreply(SMFICTX *ctx, const char *rcode, const char *xcode,
                  const char *const *lines, int count);

#endif
