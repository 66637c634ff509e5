/*
 * test_table.c — warehouse tables (common/table*.c): number parsing, CSV quoting, JSON Lines,
 * schema files and inference, partition listing and row order, bad rows.
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr/table.h"
#include "tsr/time.h"

static char wh[256];

static void write_file(const char *rel, const char *text) {
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", wh, rel);
    /* mkdir -p of the parent */
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(wh) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_test_table_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    ck_assert_int_eq(system(cmd), 0);
}

static int64_t day(const char *ds) {
    int64_t d;
    ck_assert_int_eq(tsr_ds_parse(ds, &d), 0);
    return d;
}

START_TEST(test_parse_numbers) {
    int64_t l;
    double d;
    int b;
    ck_assert_int_eq(tsr_parse_long("123", 3, &l), 0);
    ck_assert_int_eq(l, 123);
    ck_assert_int_eq(tsr_parse_long("-9223372036854775808", 20, &l), 0);
    ck_assert(l == INT64_MIN);
    ck_assert_int_ne(tsr_parse_long("9223372036854775808", 19, &l), 0);
    ck_assert_int_ne(tsr_parse_long("12a", 3, &l), 0);
    ck_assert_int_ne(tsr_parse_long("-", 1, &l), 0);
    ck_assert_int_ne(tsr_parse_long(" 1", 2, &l), 0);
    ck_assert_int_ne(tsr_parse_long("1.0", 3, &l), 0);
    ck_assert_int_eq(tsr_parse_double("1.5", 3, &d), 0);
    ck_assert(d == 1.5);
    ck_assert_int_eq(tsr_parse_double("-2e3", 4, &d), 0);
    ck_assert(d == -2000.0);
    ck_assert_int_eq(tsr_parse_double(".5", 2, &d), 0);
    ck_assert(d == 0.5);
    ck_assert_int_ne(tsr_parse_double("nan", 3, &d), 0);
    ck_assert_int_ne(tsr_parse_double("1e", 2, &d), 0);
    ck_assert_int_ne(tsr_parse_double(".", 1, &d), 0);
    ck_assert_int_ne(tsr_parse_double("0x10", 4, &d), 0);
    ck_assert_int_eq(tsr_parse_bool("true", 4, &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(tsr_parse_bool("FALSE", 5, &b), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_ne(tsr_parse_bool("yes", 3, &b), 0);
}
END_TEST

/* The fast path must round exactly like strtod. */
START_TEST(test_parse_double_vs_strtod) {
    tsr_rng_t rng = {.s = 77};
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        int kind = (int)tsr_rng_below(&rng, 4);
        if (kind == 0)
            snprintf(buf, sizeof buf, "%.*f", (int)tsr_rng_below(&rng, 8),
                     (tsr_rng_double(&rng) - 0.5) * pow(10, (double)tsr_rng_below(&rng, 12)));
        else if (kind == 1)
            snprintf(buf, sizeof buf, "%.17g", (tsr_rng_double(&rng) - 0.5) * 1e300);
        else if (kind == 2)
            snprintf(buf, sizeof buf, "%llde%d", (long long)tsr_rng_range(&rng, -99999, 99999),
                     (int)tsr_rng_range(&rng, -30, 30));
        else
            snprintf(buf, sizeof buf, "%lld.%03d", (long long)tsr_rng_range(&rng, -1000000, 1000000),
                     (int)tsr_rng_below(&rng, 1000));
        double a = 0, b = strtod(buf, NULL);
        if (tsr_parse_double(buf, strlen(buf), &a) != 0) ck_abort_msg("%s: not parsed", buf);
        if (!(a == b || (isnan(a) && isnan(b)))) ck_abort_msg("%s: %.17g vs %.17g", buf, a, b);
    }
}
END_TEST

START_TEST(test_csv_quoting_and_types) {
    write_file("ns/t/_schema.json", "{\"id\": \"long\", \"name\": \"string\", \"amt\": \"double\", "
                                    "\"ok\": \"boolean\", \"tags\": \"list<string>\"}");
    write_file("ns/t/ds=2024-01-01/part-0.csv",
               "name,id,amt,ok,tags,extra\r\n"
               "\"Smith, J\",1,2.5,true,\"[\"\"a\"\",\"\"b\"\"]\",x\r\n"
               "\"multi\nline\",2,,false,,y\n"
               "\n"
               "\"say \"\"hi\"\"\",3,-1e2,,[],z");
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.t", INT64_MIN, INT64_MAX, &t, &err), 0);
    ck_assert_int_eq(t->has_schema_file, 1);
    ck_assert_int_eq(t->ncols, 5);
    ck_assert_int_eq(t->nfiles, 1);
    tsr_file_reader_t *r;
    ck_assert_int_eq(tsr_file_reader_open(t, 0, NULL, &r, &err), 0);
    tsr_value_t row[5];
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_uint_eq(tsr_file_reader_line(r), 2);
    ck_assert_int_eq(row[0].u.l, 1);
    ck_assert_int_eq(row[1].len, 8);
    ck_assert(memcmp(row[1].u.s, "Smith, J", 8) == 0);
    ck_assert(row[2].u.d == 2.5);
    ck_assert_int_eq(row[3].u.b, 1);
    ck_assert_int_eq(row[4].kind, TSR_LIST);
    ck_assert_int_eq(row[4].len, 2);
    ck_assert(memcmp(row[4].u.items[1].u.s, "b", 1) == 0);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_uint_eq(tsr_file_reader_line(r), 3);
    ck_assert_int_eq(row[1].len, 10);
    ck_assert(memcmp(row[1].u.s, "multi\nline", 10) == 0);
    ck_assert_int_eq(row[2].kind, TSR_NULL);
    ck_assert_int_eq(row[4].kind, TSR_NULL);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_uint_eq(tsr_file_reader_line(r), 6); /* line 5 blank, multi-line row spans 3-4 */
    ck_assert_int_eq(row[1].len, 8);
    ck_assert(memcmp(row[1].u.s, "say \"hi\"", 8) == 0);
    ck_assert(row[2].u.d == -100.0);
    ck_assert_int_eq(row[3].kind, TSR_NULL);
    ck_assert_int_eq(row[4].len, 0);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 0);
    tsr_file_reader_close(r);
    tsr_table_free(t);
}
END_TEST

START_TEST(test_csv_bad_rows_continue) {
    write_file("ns/t/_schema.json", "{\"id\": \"long\", \"v\": \"double\"}");
    write_file("ns/t/ds=2024-01-01/a.csv", "id,v\n1,1.0\nx,2.0\n3\n4,4.0\n5,\"oops\"x\n6,6\n");
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.t", INT64_MIN, INT64_MAX, &t, &err), 0);
    tsr_file_reader_t *r;
    ck_assert_int_eq(tsr_file_reader_open(t, 0, NULL, &r, &err), 0);
    tsr_value_t row[2];
    int64_t ids[8];
    int nok = 0, nbad = 0, rc;
    while ((rc = tsr_file_reader_next(r, row, &err)) != 0) {
        if (rc == 1) {
            ids[nok++] = row[0].u.l;
            continue;
        }
        ck_assert_int_eq(rc, TSR_ECORRUPT);
        nbad++;
        if (nbad == 1) {
            ck_assert_msg(strstr(err.msg, "a.csv:3: column 'id': 'x' is not a long"), "%s",
                          err.msg);
        } else if (nbad == 2) {
            ck_assert_msg(strstr(err.msg, "a.csv:4: expected 2 fields, got 1"), "%s", err.msg);
        } else {
            ck_assert_msg(strstr(err.msg, "a.csv:6: field 2: unexpected character"), "%s",
                          err.msg);
        }
    }
    ck_assert_int_eq(nbad, 3);
    ck_assert_int_eq(nok, 3);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 4);
    ck_assert_int_eq(ids[2], 6);
    tsr_file_reader_close(r);
    tsr_table_free(t);
}
END_TEST

START_TEST(test_csv_unterminated_quote) {
    write_file("ns/t/ds=2024-01-01/a.csv", "id,s\n1,\"abc\n2,x\n");
    tsr_table_t *t;
    tsr_error_t err;
    /* inference reads the file too and reports the malformed quote with the row's line */
    ck_assert_int_eq(tsr_table_open(wh, "ns.t", INT64_MIN, INT64_MAX, &t, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "a.csv:2: unterminated quoted field"), "%s", err.msg);
}
END_TEST

START_TEST(test_jsonl_types_and_errors) {
    write_file("ns/e/_schema.json",
               "{\"k\": \"string\", \"n\": \"long\", \"x\": \"double\", \"m\": \"map<string,long>\"}");
    write_file("ns/e/ds=2024-01-02/p.jsonl",
               "{\"k\": \"a\", \"n\": 5, \"x\": 1, \"m\": {\"p\": 1, \"q\": 2}, \"other\": [1]}\n"
               "   \n"
               "{\"k\": null, \"n\": 9223372036854775807}\n"
               "{\"k\": \"b\", \"n\": \"notanumber\"}\n"
               "not json\n"
               "[1,2]\n"
               "{\"k\": \"c\", \"n\": 7.0, \"x\": 2.5}\n");
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.e", INT64_MIN, INT64_MAX, &t, &err), 0);
    tsr_file_reader_t *r;
    ck_assert_int_eq(tsr_file_reader_open(t, 0, NULL, &r, &err), 0);
    tsr_value_t row[4];
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_int_eq(row[1].u.l, 5);
    ck_assert_int_eq(row[2].kind, TSR_DOUBLE);
    ck_assert(row[2].u.d == 1.0);
    ck_assert_int_eq(row[3].kind, TSR_MAP);
    ck_assert_int_eq(row[3].len, 2);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_uint_eq(tsr_file_reader_line(r), 3);
    ck_assert_int_eq(row[0].kind, TSR_NULL);
    ck_assert(row[1].u.l == INT64_MAX);
    ck_assert_int_eq(row[2].kind, TSR_NULL);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "p.jsonl:4: column 'n'"), "%s", err.msg);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "p.jsonl:5:"), "%s", err.msg);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "p.jsonl:6: expected a JSON object"), "%s", err.msg);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_int_eq(row[1].u.l, 7);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 0);
    tsr_file_reader_close(r);
    tsr_table_free(t);
}
END_TEST

START_TEST(test_inference) {
    write_file("ns/i/ds=2024-01-01/a.csv", "l,d,b,s,e\n1,1,true,x,\n-2,2.5,false,3,\n");
    write_file("ns/i/ds=2024-01-02/b.csv", "d,l\n1e3,40\n");
    write_file("ns/j/ds=2024-01-01/a.jsonl",
               "{\"a\": 1, \"b\": [1, 2], \"c\": {\"x\": 1.5}, \"d\": true, \"e\": null}\n"
               "{\"a\": 2.5, \"b\": [3], \"c\": {\"y\": 2}, \"d\": false, \"f\": \"s\"}\n"
               "{\"g\": [1], \"h\": 1}\n{\"g\": 2, \"h\": \"x\"}\n");
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.i", INT64_MIN, INT64_MAX, &t, &err), 0);
    ck_assert_int_eq(t->has_schema_file, 0);
    const char *names[] = {"l", "d", "b", "s", "e"};
    tsr_type_t types[] = {TSR_LONG, TSR_DOUBLE, TSR_BOOL, TSR_STRING, TSR_STRING};
    ck_assert_int_eq(t->ncols, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(t->col_names[i], names[i]);
        ck_assert_uint_eq(t->col_types[i], types[i]);
    }
    /* the second file has another column order: the header maps fields to columns */
    tsr_file_reader_t *r;
    tsr_value_t row[5];
    ck_assert_int_eq(tsr_file_reader_open(t, 1, NULL, &r, &err), 0);
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
    ck_assert_int_eq(row[0].u.l, 40);
    ck_assert(row[1].u.d == 1000.0);
    ck_assert_int_eq(row[2].kind, TSR_NULL);
    tsr_file_reader_close(r);
    tsr_table_free(t);

    ck_assert_int_eq(tsr_table_open(wh, "ns.j", INT64_MIN, INT64_MAX, &t, &err), 0);
    const char *jn[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    tsr_type_t jt[] = {TSR_DOUBLE, TSR_TYPE_LIST(TSR_LONG), TSR_TYPE_MAP(TSR_DOUBLE), TSR_BOOL,
                       TSR_STRING, TSR_STRING, TSR_STRING, TSR_STRING};
    ck_assert_int_eq(t->ncols, 8);
    for (int i = 0; i < 8; i++) {
        char a[64], b[64];
        ck_assert_str_eq(t->col_names[i], jn[i]);
        ck_assert_msg(t->col_types[i] == jt[i], "%s: %s vs %s", jn[i],
                      tsr_type_name(t->col_types[i], a, 64), tsr_type_name(jt[i], b, 64));
    }
    tsr_table_free(t);
}
END_TEST

START_TEST(test_listing_order_and_range) {
    write_file("ns/o/_schema.json", "{\"v\": \"long\"}");
    write_file("ns/o/ds=2024-01-03/b.csv", "v\n4\n");
    write_file("ns/o/ds=2024-01-03/a.csv", "v\n3\n");
    write_file("ns/o/ds=2024-01-01/part-1.jsonl", "{\"v\": 1}\n");
    write_file("ns/o/ds=2024-01-01/_SUCCESS", "");
    write_file("ns/o/ds=2024-01-02/.hidden", "");
    write_file("ns/o/ds=2024-01-05/x.csv", "v\n5\n");
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.o", INT64_MIN, INT64_MAX, &t, &err), 0);
    ck_assert_int_eq(t->nfiles, 4);
    ck_assert_int_eq(t->nparts, 4); /* 01-02 has no part file but exists */
    ck_assert(tsr_table_has_partition(t, day("2024-01-02")));
    ck_assert(!tsr_table_has_partition(t, day("2024-01-04")));
    int64_t expect[] = {1, 3, 4, 5};
    for (size_t i = 0; i < t->nfiles; i++) {
        tsr_file_reader_t *r;
        tsr_value_t row[1];
        ck_assert_uint_eq(t->files[i].ordinal, i);
        ck_assert_int_eq(tsr_file_reader_open(t, i, NULL, &r, &err), 0);
        ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
        ck_assert_int_eq(row[0].u.l, expect[i]);
        tsr_file_reader_close(r);
    }
    tsr_table_free(t);
    ck_assert_int_eq(tsr_table_open(wh, "ns.o", day("2024-01-02"), day("2024-01-03"), &t, &err), 0);
    ck_assert_int_eq(t->nfiles, 2);
    ck_assert_int_eq(t->nparts, 2);
    ck_assert_int_eq(t->files[0].day, day("2024-01-03"));
    tsr_table_free(t);
}
END_TEST

START_TEST(test_open_errors) {
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.missing", INT64_MIN, INT64_MAX, &t, &err),
                     TSR_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "ns/missing not found"), "%s", err.msg);
    write_file("ns/p/ds=2024-01-01/a.parquet", "PAR1");
    ck_assert_int_eq(tsr_table_open(wh, "ns.p", INT64_MIN, INT64_MAX, &t, &err),
                     TSR_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "a.parquet: unknown file format"), "%s", err.msg);
    write_file("ns/q/_schema.json", "{\"v\": \"decimalish\"}");
    ck_assert_int_eq(tsr_table_open(wh, "ns.q", INT64_MIN, INT64_MAX, &t, &err), TSR_ECONFIG);
    ck_assert_msg(strstr(err.msg, "column 'v': unknown type"), "%s", err.msg);
    write_file("ns/r/_schema.json", "{\"v\": ");
    ck_assert_int_eq(tsr_table_open(wh, "ns.r", INT64_MIN, INT64_MAX, &t, &err), TSR_ECONFIG);
    ck_assert_msg(strstr(err.msg, "_schema.json:1:"), "%s", err.msg);
    write_file("ns/s/ds=2024-13-01/a.csv", "v\n1\n");
    ck_assert_int_eq(tsr_table_open(wh, "ns.s", INT64_MIN, INT64_MAX, &t, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "ds=2024-13-01: partition name"), "%s", err.msg);
}
END_TEST

/* Random CSV rows written with RFC 4180 quoting read back identical. */
START_TEST(test_csv_roundtrip_random) {
    tsr_rng_t rng = {.s = 1234 + (uint64_t)_i};
    enum { ROWS = 300 };
    static char cells[ROWS][3][32];
    FILE *f;
    char path[512];
    write_file("ns/rt/_schema.json", "{\"a\": \"string\", \"b\": \"string\", \"c\": \"long\"}");
    write_file("ns/rt/ds=2024-01-01/x.csv", "");
    snprintf(path, sizeof path, "%s/ns/rt/ds=2024-01-01/x.csv", wh);
    f = fopen(path, "w");
    fputs("a,b,c\n", f);
    const char alphabet[] = "ab,\"\n x\r";
    for (int i = 0; i < ROWS; i++) {
        for (int c = 0; c < 2; c++) {
            int n = 1 + (int)tsr_rng_below(&rng, 10);
            for (int k = 0; k < n; k++)
                cells[i][c][k] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)];
            cells[i][c][n] = '\0';
            fputc('"', f);
            for (int k = 0; k < n; k++) {
                if (cells[i][c][k] == '"') fputc('"', f);
                fputc(cells[i][c][k], f);
            }
            fputs("\",", f);
        }
        fprintf(f, "%d%s", i, tsr_rng_below(&rng, 2) ? "\r\n" : "\n");
    }
    fclose(f);
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, "ns.rt", INT64_MIN, INT64_MAX, &t, &err), 0);
    tsr_file_reader_t *r;
    ck_assert_int_eq(tsr_file_reader_open(t, 0, NULL, &r, &err), 0);
    tsr_value_t row[3];
    for (int i = 0; i < ROWS; i++) {
        ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
        for (int c = 0; c < 2; c++) {
            ck_assert_uint_eq(row[c].len, strlen(cells[i][c]));
            ck_assert(memcmp(row[c].u.s, cells[i][c], row[c].len) == 0);
        }
        ck_assert_int_eq(row[2].u.l, i);
    }
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 0);
    tsr_file_reader_close(r);
    tsr_table_free(t);
}
END_TEST

/* Random bytes never crash the readers; every call returns a defined result. */
START_TEST(test_fuzz_files) {
    tsr_rng_t rng = {.s = 99 + (uint64_t)_i};
    const char alphabet[] = "ab1,\"\n\r{}[]:.-e ";
    char buf[400];
    for (int iter = 0; iter < 150; iter++) {
        size_t n = tsr_rng_below(&rng, sizeof buf - 1);
        for (size_t k = 0; k < n; k++) buf[k] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)];
        buf[n] = '\0';
        const char *ext = iter % 2 ? "csv" : "jsonl";
        char rel[64], name[32];
        snprintf(name, sizeof name, "ns.f%d", iter);
        snprintf(rel, sizeof rel, "ns/f%d/ds=2024-01-01/a.%s", iter, ext);
        write_file(rel, buf);
        tsr_table_t *t;
        tsr_error_t err;
        if (tsr_table_open(wh, name, INT64_MIN, INT64_MAX, &t, &err) != 0) continue;
        tsr_file_reader_t *r;
        if (tsr_file_reader_open(t, 0, NULL, &r, &err) == 0) {
            tsr_value_t row[64];
            ck_assert(t->ncols <= 64);
            int rc, guard = 0;
            while ((rc = tsr_file_reader_next(r, row, &err)) != 0 && guard++ < 1000)
                ck_assert(rc == 1 || rc == TSR_ECORRUPT);
            ck_assert(guard < 1000);
            tsr_file_reader_close(r);
        }
        tsr_table_free(t);
    }
}
END_TEST

/* Output partitions: what is written reads back through the readers, a rerun replaces the
 * partition whole, an abort leaves nothing, and leftover temp folders are cleaned up. */
static void write_out(const char *dir, int64_t d, tsr_file_format_t fmt, int64_t base) {
    const char *cols[] = {"k", "s", "x", "tags"};
    tsr_out_partition_t *p;
    tsr_error_t err;
    ck_assert_int_eq(tsr_out_partition_begin(dir, d, fmt, cols, 4, &p, &err), 0);
    for (int i = 0; i < 3; i++) {
        tsr_value_t items[2] = {tsr_value_string("a,\"b", 4), tsr_value_null()};
        tsr_value_t row[4] = {tsr_value_long(base + i), tsr_value_string("x\ny,\"z\"", 7),
                              i == 1 ? tsr_value_null() : tsr_value_double(i + 0.25),
                              tsr_value_list(items, 2)};
        ck_assert_int_eq(tsr_out_partition_write(p, row, &err), 0);
    }
    ck_assert_uint_eq(tsr_out_partition_rows(p), 3);
    ck_assert_int_eq(tsr_out_partition_commit(p, &err), 0);
}

static void check_out(const char *table, int64_t base) {
    tsr_table_t *t;
    tsr_error_t err;
    ck_assert_int_eq(tsr_table_open(wh, table, INT64_MIN, INT64_MAX, &t, &err), 0);
    ck_assert_int_eq(t->nfiles, 1);
    ck_assert_int_eq(t->ncols, 4);
    ck_assert_uint_eq(t->col_types[0], TSR_LONG);
    ck_assert_uint_eq(t->col_types[2], TSR_DOUBLE);
    tsr_file_reader_t *r;
    ck_assert_int_eq(tsr_file_reader_open(t, 0, NULL, &r, &err), 0);
    tsr_value_t row[4];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 1);
        ck_assert_int_eq(row[0].u.l, base + i);
        ck_assert_uint_eq(row[1].len, 7);
        ck_assert(memcmp(row[1].u.s, "x\ny,\"z\"", 7) == 0);
        if (i == 1) ck_assert_int_eq(row[2].kind, TSR_NULL);
        else ck_assert(row[2].u.d == i + 0.25);
    }
    ck_assert_int_eq(tsr_file_reader_next(r, row, &err), 0);
    tsr_file_reader_close(r);
    tsr_table_free(t);
}

START_TEST(test_output_partitions) {
    char dir[400];
    int64_t d = day("2024-02-01");
    snprintf(dir, sizeof dir, "%s/out/j", wh);
    write_out(dir, d, TSR_FORMAT_JSONL, 10);
    check_out("out.j", 10);
    write_out(dir, d, TSR_FORMAT_JSONL, 20); /* a rerun replaces the partition whole */
    check_out("out.j", 20);
    snprintf(dir, sizeof dir, "%s/out/c", wh);
    write_out(dir, d, TSR_FORMAT_CSV, 30);
    check_out("out.c", 30);
    write_out(dir, d, TSR_FORMAT_CSV, 40);
    check_out("out.c", 40);

    /* an aborted write leaves the published partition untouched and no temp folder */
    const char *cols[] = {"k"};
    tsr_out_partition_t *p;
    tsr_error_t err;
    ck_assert_int_eq(tsr_out_partition_begin(dir, d, TSR_FORMAT_CSV, cols, 1, &p, &err), 0);
    tsr_value_t v = tsr_value_long(1);
    ck_assert_int_eq(tsr_out_partition_write(p, &v, &err), 0);
    tsr_out_partition_abort(p);
    check_out("out.c", 40);
    ck_assert_int_eq(tsr_out_cleanup(dir), 0);
    /* a crashed writer's temp folder is invisible to readers and cleaned up */
    ck_assert_int_eq(tsr_out_partition_begin(dir, d + 1, TSR_FORMAT_CSV, cols, 1, &p, &err), 0);
    ck_assert_int_eq(tsr_out_partition_write(p, &v, &err), 0);
    check_out("out.c", 40);
    ck_assert_int_eq(tsr_out_cleanup(dir), 1);
    tsr_out_partition_abort(p);
}
END_TEST

static Suite *table_suite(void) {
    Suite *s = suite_create("table");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_parse_numbers);
    tcase_add_test(tc, test_parse_double_vs_strtod);
    tcase_add_test(tc, test_csv_quoting_and_types);
    tcase_add_test(tc, test_csv_bad_rows_continue);
    tcase_add_test(tc, test_csv_unterminated_quote);
    tcase_add_test(tc, test_jsonl_types_and_errors);
    tcase_add_test(tc, test_inference);
    tcase_add_test(tc, test_listing_order_and_range);
    tcase_add_test(tc, test_open_errors);
    tcase_add_loop_test(tc, test_csv_roundtrip_random, 0, 4);
    tcase_add_test(tc, test_output_partitions);
    tcase_add_loop_test(tc, test_fuzz_files, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(table_suite()); }
