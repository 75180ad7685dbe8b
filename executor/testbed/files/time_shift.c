/* time(2) for one libvirtd only, shifted by $PAUSECAST_TIME_SHIFT_S seconds: loaded with LD_PRELOAD by
 * executor/testbed/qbg.py, which moves libnl's netlink port-id seed (time(NULL) >> 5) into another
 * 32-second window so that libvirtd's port id is not negative. */
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
time_t time(time_t *out) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    const char *shift = getenv("PAUSECAST_TIME_SHIFT_S");
    time_t t = tv.tv_sec + (shift ? atol(shift) : 0);
    if (out)
        *out = t;
    return t;
}
