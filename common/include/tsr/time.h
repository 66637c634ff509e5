/*
 * time.h — UTC calendar arithmetic on epoch milliseconds, and the `ds` partition date.
 *
 * All times in Tessera are int64 epoch milliseconds, UTC. A `ds` is a UTC date written
 * YYYY-MM-DD; day number d covers [d*DAY, (d+1)*DAY). Civil-date conversion uses Howard
 * Hinnant's days_from_civil / civil_from_days algorithms (proleptic Gregorian, any year).
 * Division is floor division, so times before 1970 behave like times after.
 */
#ifndef TSR_TIME_H
#define TSR_TIME_H

#include <stddef.h>
#include <stdint.h>

#define TSR_MS_PER_SECOND INT64_C(1000)
#define TSR_MS_PER_MINUTE INT64_C(60000)
#define TSR_MS_PER_HOUR INT64_C(3600000)
#define TSR_MS_PER_DAY INT64_C(86400000)

/* floor(a / b) for b > 0, correct for negative a. */
static inline int64_t tsr_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Days since 1970-01-01 for a civil date (month 1..12, day 1..31). */
int64_t tsr_days_from_civil(int64_t y, int m, int d);
void tsr_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* Parses "YYYY-MM-DD" strictly (valid month/day, nothing after) into a day number.
 * Returns 0 or TSR_EPARSE. */
int tsr_ds_parse(const char *s, int64_t *day);
/* Same, for n bytes of s (not NUL-terminated). */
int tsr_ds_parse_n(const char *s, size_t n, int64_t *day);
/* Writes "YYYY-MM-DD" (11 bytes with NUL) for a day number. */
void tsr_ds_format(int64_t day, char out[static 11]);
/* Day number of the date that contains ts. */
static inline int64_t tsr_day_of_ms(int64_t ts) { return tsr_floor_div(ts, TSR_MS_PER_DAY); }
/* B of a batch version id (INT64_MIN: none): ids are B, or B + 1 ms for the served B uploaded
 * again (docs/tile-store.md "Writes"), so B is the id's midnight. Shared by the tile and
 * entity stores. */
static inline int64_t tsr_ver_day(int64_t ver) {
    return ver == INT64_MIN ? INT64_MIN : tsr_day_of_ms(ver) * TSR_MS_PER_DAY;
}

#endif
