/*
 * datagen.c — `tessera-datagen`: a deterministic generator of warehouse data for the
 * quickstart, the end-to-end tests and the backfill benchmark (SPEC §3 layout).
 *
 * It writes, under --out DIR (the warehouse root):
 *   payments/card_txn/       events: txn_id, user_id, merchant_id, amount, currency, mcc,
 *                            is_online, ts (txn_id is t<n>, n counting rows in row order)
 *   payments/checkouts/      left rows: checkout_id, user_id, merchant_id, cart_value, ts
 *   users/profile_snapshot/  entity snapshots per ds: user_id, country, credit_limit,
 *                            account_age_days, risk_tier, ts
 * each with a _schema.json and one CSV (default) or JSON Lines part file per ds partition.
 *
 * Everything is a pure function of (--seed, sizes): the same arguments give the same bytes.
 * Timestamps are spread over each day, with a share placed exactly on hop edges (5-minute,
 * hour and midnight boundaries) and duplicated, so the edge rules of SPEC §4 are exercised.
 * Keys follow a skewed (Zipf-like) popularity so some keys are hot, as in real traffic.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr/time.h"

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

typedef struct opts {
    const char *out;
    const char *start_ds;
    int days;
    uint64_t events, left, keys, merchants;
    uint64_t seed;
    int jsonl;
    int quiet;
} opts_t;

static void usage(FILE *f) {
    fputs("usage: tessera-datagen --out DIR [--size small|medium|large] [--start-ds YYYY-MM-DD]\n"
          "                       [--days N] [--events N] [--left N] [--keys N] [--seed N]\n"
          "                       [--format csv|jsonl] [--quiet]\n"
          "\n"
          "Writes a deterministic card-transaction warehouse (SPEC section 3 layout) under DIR:\n"
          "  payments.card_txn        events (txn_id, user_id, merchant_id, amount, currency, mcc,\n"
          "                           is_online, ts)\n"
          "  payments.checkouts       left rows (checkout_id, user_id, merchant_id, cart_value, ts)\n"
          "  users.profile_snapshot   daily entity snapshots (user_id, country, credit_limit,\n"
          "                           account_age_days, risk_tier, ts)\n"
          "\n"
          "Sizes (events / left rows / keys / days):\n"
          "  small   100k / 10k / 1k / 10     (default)\n"
          "  medium  1M / 100k / 10k / 30\n"
          "  large   10M / 1M / 100k / 60\n"
          "Explicit --events/--left/--keys/--days override the size.\n",
          f);
}

static int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *c = buf + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static FILE *open_part(const opts_t *o, const char *table, int64_t day, const char *header) {
    char ds[11], dir[4096], path[4200];
    tsr_ds_format(day, ds);
    snprintf(dir, sizeof dir, "%s/%s/ds=%s", o->out, table, ds);
    if (mkdir_p(dir)) {
        fprintf(stderr, "tessera-datagen: cannot create %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    snprintf(path, sizeof path, "%s/part-00000.%s", dir, o->jsonl ? "jsonl" : "csv");
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tessera-datagen: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    if (!o->jsonl) fprintf(f, "%s\n", header);
    return f;
}

static void write_schema(const opts_t *o, const char *table, const char *json) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", o->out, table);
    if (mkdir_p(dir)) {
        fprintf(stderr, "tessera-datagen: cannot create %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    snprintf(path, sizeof path, "%s/_schema.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tessera-datagen: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(f, "%s\n", json);
    fclose(f);
}

/* Skewed key: u^1.5 over [0, n), so low ids are hot (key 0 gets n^(-2/3) of the rows). */
static uint64_t skewed(rng_t *r, uint64_t n) {
    double u = rng_unit(r);
    uint64_t k = (uint64_t)(pow(u, 1.5) * (double)n);
    return k < n ? k : n - 1;
}

/* A time in day d: mostly uniform, 10% exactly on a 5-minute edge, 2% exactly at midnight. */
static int64_t time_in_day(rng_t *r, int64_t day) {
    int64_t base = day * TSR_MS_PER_DAY;
    uint64_t p = rng_below(r, 100);
    if (p < 2) return base;
    if (p < 12) return base + (int64_t)rng_below(r, 288) * 5 * TSR_MS_PER_MINUTE;
    return base + (int64_t)rng_below(r, (uint64_t)TSR_MS_PER_DAY);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static const char *currencies[] = {"USD", "EUR", "GBP", "JPY", "BRL"};
static const char *countries[] = {"US", "DE", "GB", "JP", "BR", "FR", "IN"};

static void gen_events(const opts_t *o, int64_t day0) {
    write_schema(o, "payments/card_txn",
                 "{\"txn_id\": \"string\", \"user_id\": \"string\", \"merchant_id\": \"string\", "
                 "\"amount\": \"double\", "
                 "\"currency\": \"string\", \"mcc\": \"long\", \"is_online\": \"boolean\", "
                 "\"ts\": \"long\"}");
    uint64_t per_day = o->events / (uint64_t)o->days, id = 0;
    int64_t *ts = malloc((per_day + 1) * sizeof(int64_t));
    for (int d = 0; d < o->days; d++) {
        rng_t r = {o->seed * 1000003u + (uint64_t)d};
        uint64_t n = per_day + (d == o->days - 1 ? o->events % (uint64_t)o->days : 0);
        ts = realloc(ts, (n + 1) * sizeof(int64_t));
        for (uint64_t i = 0; i < n; i++) {
            ts[i] = time_in_day(&r, day0 + d);
            if (i && rng_below(&r, 50) == 0) ts[i] = ts[i - 1]; /* duplicate timestamps */
        }
        qsort(ts, n, sizeof(int64_t), cmp_i64);
        FILE *f = open_part(o, "payments/card_txn", day0 + d,
                            "txn_id,user_id,merchant_id,amount,currency,mcc,is_online,ts");
        for (uint64_t i = 0; i < n; i++, id++) {
            uint64_t user = skewed(&r, o->keys), merchant = rng_below(&r, o->merchants);
            double amount = floor(exp(rng_unit(&r) * 7.0) * 100.0) / 100.0;
            const char *cur = currencies[rng_below(&r, 5)];
            int mcc = 5000 + (int)rng_below(&r, 40) * 10;
            int online = rng_below(&r, 3) == 0;
            int null_amount = rng_below(&r, 200) == 0;
            if (o->jsonl) {
                fprintf(f, "{\"txn_id\":\"t%llu\",\"user_id\":\"u%llu\",\"merchant_id\":\"m%llu\","
                           "\"amount\":",
                        (unsigned long long)id, (unsigned long long)user,
                        (unsigned long long)merchant);
                if (null_amount) fputs("null", f);
                else fprintf(f, "%.2f", amount);
                fprintf(f, ",\"currency\":\"%s\",\"mcc\":%d,\"is_online\":%s,\"ts\":%lld}\n", cur,
                        mcc, online ? "true" : "false", (long long)ts[i]);
            } else {
                fprintf(f, "t%llu,u%llu,m%llu,", (unsigned long long)id, (unsigned long long)user,
                        (unsigned long long)merchant);
                if (!null_amount) fprintf(f, "%.2f", amount);
                fprintf(f, ",%s,%d,%s,%lld\n", cur, mcc, online ? "true" : "false",
                        (long long)ts[i]);
            }
        }
        fclose(f);
        if (!o->quiet)
            fprintf(stderr, "tessera-datagen: payments.card_txn day %d/%d: %llu events\n", d + 1,
                    o->days, (unsigned long long)n);
    }
    free(ts);
}

static void gen_left(const opts_t *o, int64_t day0) {
    write_schema(o, "payments/checkouts",
                 "{\"checkout_id\": \"string\", \"user_id\": \"string\", \"merchant_id\": "
                 "\"string\", \"cart_value\": \"double\", \"ts\": \"long\"}");
    uint64_t per_day = o->left / (uint64_t)o->days;
    int64_t *ts = malloc((per_day + 1) * sizeof(int64_t));
    uint64_t id = 0;
    for (int d = 0; d < o->days; d++) {
        rng_t r = {o->seed * 7919u + 17 + (uint64_t)d};
        uint64_t n = per_day + (d == o->days - 1 ? o->left % (uint64_t)o->days : 0);
        ts = realloc(ts, (n + 1) * sizeof(int64_t));
        for (uint64_t i = 0; i < n; i++) ts[i] = time_in_day(&r, day0 + d);
        qsort(ts, n, sizeof(int64_t), cmp_i64);
        FILE *f = open_part(o, "payments/checkouts", day0 + d,
                            "checkout_id,user_id,merchant_id,cart_value,ts");
        for (uint64_t i = 0; i < n; i++, id++) {
            uint64_t user = skewed(&r, o->keys), merchant = rng_below(&r, o->merchants);
            double cart = floor(exp(rng_unit(&r) * 6.0) * 100.0) / 100.0;
            int null_user = rng_below(&r, 500) == 0; /* null keys give null features */
            if (o->jsonl) {
                fprintf(f, "{\"checkout_id\":\"c%llu\",\"user_id\":", (unsigned long long)id);
                if (null_user) fputs("null", f);
                else fprintf(f, "\"u%llu\"", (unsigned long long)user);
                fprintf(f, ",\"merchant_id\":\"m%llu\",\"cart_value\":%.2f,\"ts\":%lld}\n",
                        (unsigned long long)merchant, cart, (long long)ts[i]);
            } else {
                fprintf(f, "c%llu,", (unsigned long long)id);
                if (!null_user) fprintf(f, "u%llu", (unsigned long long)user);
                fprintf(f, ",m%llu,%.2f,%lld\n", (unsigned long long)merchant, cart,
                        (long long)ts[i]);
            }
        }
        fclose(f);
    }
    free(ts);
    if (!o->quiet)
        fprintf(stderr, "tessera-datagen: payments.checkouts: %llu rows\n",
                (unsigned long long)o->left);
}

static void gen_snapshots(const opts_t *o, int64_t day0) {
    write_schema(o, "users/profile_snapshot",
                 "{\"user_id\": \"string\", \"country\": \"string\", \"credit_limit\": "
                 "\"double\", \"account_age_days\": \"long\", \"risk_tier\": \"string\", "
                 "\"ts\": \"long\"}");
    /* one snapshot per day (the state at the end of the day); users appear once they sign up */
    for (int d = 0; d < o->days; d++) {
        FILE *f = open_part(o, "users/profile_snapshot", day0 + d,
                            "user_id,country,credit_limit,account_age_days,risk_tier,ts");
        for (uint64_t u = 0; u < o->keys; u++) {
            rng_t r = {o->seed * 31337u + u};
            int signup = (int)rng_below(&r, (uint64_t)o->days + 30) - 30;
            if (signup > d) continue;
            const char *country = countries[rng_below(&r, 7)];
            double limit = 500.0 * (double)(1 + rng_below(&r, 40));
            rng_t rd = {o->seed * 131u + u * 977u + (uint64_t)d};
            if (rng_below(&rd, 10) == 0) limit += 250.0 * (double)rng_below(&rd, 8);
            const char *tier = rng_below(&rd, 20) == 0 ? "high" : rng_below(&rd, 3) ? "low" : "mid";
            int64_t ts = (day0 + d) * TSR_MS_PER_DAY + (int64_t)rng_below(&rd, TSR_MS_PER_DAY);
            if (o->jsonl)
                fprintf(f,
                        "{\"user_id\":\"u%llu\",\"country\":\"%s\",\"credit_limit\":%.1f,"
                        "\"account_age_days\":%d,\"risk_tier\":\"%s\",\"ts\":%lld}\n",
                        (unsigned long long)u, country, limit, d - signup, tier, (long long)ts);
            else
                fprintf(f, "u%llu,%s,%.1f,%d,%s,%lld\n", (unsigned long long)u, country, limit,
                        d - signup, tier, (long long)ts);
        }
        fclose(f);
    }
    if (!o->quiet) fprintf(stderr, "tessera-datagen: users.profile_snapshot: %d days\n", o->days);
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    opts_t o = {.start_ds = "2024-01-01", .days = 0, .seed = 42};
    uint64_t ev = 0, left = 0, keys = 0, days = 0;
    const char *size = "small";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--quiet") == 0) {
            o.quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tessera-datagen: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--out") == 0) o.out = v;
        else if (strcmp(a, "--size") == 0) size = v;
        else if (strcmp(a, "--start-ds") == 0) o.start_ds = v;
        else if (strcmp(a, "--days") == 0) bad = parse_u64(v, &days) || days == 0 || days > 3650;
        else if (strcmp(a, "--events") == 0) bad = parse_u64(v, &ev);
        else if (strcmp(a, "--left") == 0) bad = parse_u64(v, &left);
        else if (strcmp(a, "--keys") == 0) bad = parse_u64(v, &keys) || keys == 0;
        else if (strcmp(a, "--seed") == 0) bad = parse_u64(v, &o.seed);
        else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "jsonl") == 0) o.jsonl = 1;
            else bad = strcmp(v, "csv") != 0;
        } else {
            fprintf(stderr, "tessera-datagen: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tessera-datagen: bad value for %s: '%s'\n", a, v);
            return 2;
        }
    }
    if (!o.out) {
        fprintf(stderr, "tessera-datagen: --out DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (strcmp(size, "small") == 0) {
        o.events = 100000, o.left = 10000, o.keys = 1000, o.days = 10;
    } else if (strcmp(size, "medium") == 0) {
        o.events = 1000000, o.left = 100000, o.keys = 10000, o.days = 30;
    } else if (strcmp(size, "large") == 0) {
        o.events = 10000000, o.left = 1000000, o.keys = 100000, o.days = 60;
    } else {
        fprintf(stderr, "tessera-datagen: unknown size '%s' (small, medium, large)\n", size);
        return 2;
    }
    if (ev) o.events = ev;
    if (left) o.left = left;
    if (keys) o.keys = keys;
    if (days) o.days = (int)days;
    o.merchants = o.keys / 10 + 1;
    int64_t day0;
    if (tsr_ds_parse(o.start_ds, &day0)) {
        fprintf(stderr, "tessera-datagen: --start-ds '%s' is not YYYY-MM-DD\n", o.start_ds);
        return 2;
    }
    gen_events(&o, day0);
    gen_left(&o, day0);
    gen_snapshots(&o, day0);
    char last[11];
    tsr_ds_format(day0 + o.days - 1, last);
    printf("wrote %llu events, %llu left rows, %llu users, %s .. %s under %s\n",
           (unsigned long long)o.events, (unsigned long long)o.left, (unsigned long long)o.keys,
           o.start_ds, last, o.out);
    return 0;
}
