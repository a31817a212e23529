// See CMilterShim.h for why each wrapper exists.
#include "CMilterShim.h"

#include <syslog.h>

void cm_syslog(int priority, const char *message)
{
    syslog(priority, "%s", message);
}
