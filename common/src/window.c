/*
 * window.c — window lengths and suffixes. The window rule itself is inline in window.h,
 * next to the comment that states it.
 */
#include "tsr/window.h"

#include <stdio.h>

int64_t tsr_window_ms(int64_t length, tsr_time_unit_t unit) {
    int64_t per;
    switch (unit) {
    case TSR_UNIT_MINUTES: per = TSR_MS_PER_MINUTE; break;
    case TSR_UNIT_HOURS: per = TSR_MS_PER_HOUR; break;
    case TSR_UNIT_DAYS: per = TSR_MS_PER_DAY; break;
    default: return -1;
    }
    if (length <= 0 || length > INT64_MAX / per / 4) return -1;
    return length * per;
}

char *tsr_window_suffix(int64_t length, tsr_time_unit_t unit, char *out, int n) {
    const char *u = unit == TSR_UNIT_MINUTES ? "m" : unit == TSR_UNIT_HOURS ? "h" : "d";
    snprintf(out, (size_t)n, "%lld%s", (long long)length, u);
    return out;
}
