// libmilter as Debian's libmilter-dev installs it (/usr/include/libmilter/mfapi.h).
// pkg-config's cflags add -I/usr/include/libmilter, but mfapi.h itself includes
// "libmilter/mfdef.h", so the <libmilter/...> form is the one that always resolves.
#ifndef CMILTER_SHIM_H
#define CMILTER_SHIM_H

#include <sys/types.h>
#include <sys/socket.h>
#include <libmilter/mfapi.h>

#endif
