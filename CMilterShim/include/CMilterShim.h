// Fixed-arity wrappers for the C variadic functions Swift cannot call.
// Only the Milter module imports this; everything else goes through it.
#ifndef CMILTERSHIM_H
#define CMILTERSHIM_H

/// syslog(3) is variadic. This writes `message` verbatim: it is passed as an argument to
/// "%s", never as the format, so a '%' in a logged value cannot be read as a conversion.
void cm_syslog(int priority, const char *message);

#endif
