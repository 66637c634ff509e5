/*
 * test_config.c — the config model (common/config*.c): loading Chronon compiled JSON,
 * encodings, dialects, validation errors (each asserted with its JSON path), output-column
 * naming and expansion, derivations, and malformed input.
 *
 * Configs are written inline with single quotes for readability; q() turns them into JSON
 * (a `^` stands for a single quote inside SQL expressions).
 */
#include "tsr_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tsr/config.h"

static char g_json[16384];

/* Single quotes -> double quotes, '^' -> single quote. */
static const char *q(const char *fmt, ...) {
    char tmp[sizeof g_json];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    size_t i = 0;
    for (; tmp[i]; i++) g_json[i] = tmp[i] == '\'' ? '"' : tmp[i] == '^' ? '\'' : tmp[i];
    g_json[i] = '\0';
    return g_json;
}

static tsr_config_t *load_opt(const char *json, const tsr_config_options_t *opt, tsr_diag_t *d,
                              int *rc) {
    tsr_config_t *c = NULL;
    tsr_diag_init(d);
    *rc = tsr_config_load_string(json, strlen(json), "t.json", opt, &c, d);
    return c;
}

/* Loads and asserts success; returns the config (caller frees). */
static tsr_config_t *must_load(const char *json) {
    tsr_diag_t d;
    int rc;
    tsr_config_t *c = load_opt(json, NULL, &d, &rc);
    if (rc != 0) tsr_diag_print(&d, stderr);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(c);
    tsr_diag_free(&d);
    return c;
}

/* Asserts the config is rejected with an error line containing needle. */
static void expect_error_opt(const char *json, const tsr_config_options_t *opt, const char *needle) {
    tsr_diag_t d;
    int rc;
    tsr_config_t *c = load_opt(json, opt, &d, &rc);
    if (!tsr_diag_contains(&d, needle)) {
        fprintf(stderr, "expected error containing [%s], got:\n", needle);
        tsr_diag_print(&d, stderr);
    }
    ck_assert_int_ne(rc, 0);
    ck_assert(tsr_diag_contains(&d, needle));
    tsr_config_free(c);
    tsr_diag_free(&d);
}
static void expect_error(const char *json, const char *needle) { expect_error_opt(json, NULL, needle); }

/* A GroupBy over events ns.t with selects user, amount, cur, merchant; `rest` is appended
 * after keyColumns (aggregations etc.). */
#define GB(rest)                                                                               \
    q("{'metaData':{'name':'team.gb.v1'},"                                                     \
      "'sources':[{'events':{'table':'ns.t','query':{'selects':{'user':'user_id',"            \
      "'amount':'amount','cur':'currency','merchant':'merchant_id'},'timeColumn':'ts'}}}],"   \
      "'keyColumns':['user'],%s}", rest)

static int col_index(const tsr_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_columns; i++)
        if (strcmp(c->columns[i].name, name) == 0) return (int)i;
    return -1;
}

static const char *type_of(const tsr_config_t *c, const char *name, char *buf) {
    int i = col_index(c, name);
    ck_assert_msg(i >= 0, "no column %s", name);
    return tsr_type_name(c->columns[i].type, buf, TSR_TYPE_NAME_MAX);
}

/* ---- encodings ------------------------------------------------------------------------- */

START_TEST(test_enum_encodings) {
    /* Integer and named enums mean the same thing. */
    tsr_config_t *a = must_load(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                                   "'windows':[{'length':7,'timeUnit':1}]}],'accuracy':1"));
    tsr_config_t *b = must_load(GB("'aggregations':[{'inputColumn':'amount','operation':'sum',"
                                   "'windows':[{'length':7,'timeUnit':'DAYS'}]}],'accuracy':'SNAPSHOT'"));
    ck_assert_int_eq(a->group_by->aggs[0].op, TSR_OP_SUM);
    ck_assert_int_eq(b->group_by->aggs[0].op, TSR_OP_SUM);
    ck_assert_int_eq(a->group_by->aggs[0].windows[0].unit, TSR_UNIT_DAYS);
    ck_assert_int_eq(b->group_by->aggs[0].windows[0].unit, TSR_UNIT_DAYS);
    ck_assert_int_eq(a->group_by->accuracy, TSR_ACCURACY_SNAPSHOT);
    ck_assert_int_eq(b->group_by->accuracy, TSR_ACCURACY_SNAPSHOT);
    ck_assert_str_eq(a->columns[2].name, "amount_sum_7d");
    ck_assert_str_eq(b->columns[2].name, "amount_sum_7d");
    tsr_config_free(a);
    tsr_config_free(b);
}
END_TEST

START_TEST(test_boolean_encodings) {
    const char *variants[] = {"1", "true"};
    for (int i = 0; i < 2; i++) {
        tsr_config_t *c = must_load(
            q("{'metaData':{'name':'a.b','online':%s},'sources':[{'events':{'table':'t','isCumulative':%s,"
              "'query':{'selects':{'k':'k','v':'v'}}}}],'keyColumns':['k'],"
              "'aggregations':[{'inputColumn':'v','operation':6}]}", variants[i], variants[i]));
        ck_assert_int_eq(c->group_by->meta.online, 1);
        ck_assert_int_eq(c->group_by->sources[0].is_cumulative, 1);
        tsr_config_free(c);
    }
    tsr_config_t *c = must_load(q("{'metaData':{'name':'a.b','online':false},'sources':[{'events':"
                                  "{'table':'t','query':{'selects':{'k':'k','v':'v'}}}}],"
                                  "'keyColumns':['k'],'aggregations':[{'inputColumn':'v','operation':6}]}"));
    ck_assert_int_eq(c->group_by->meta.online, 0);
    tsr_config_free(c);
    expect_error(q("{'metaData':{'name':'a.b','online':2},'sources':[{'events':{'table':'t'}}],"
                   "'keyColumns':['k'],'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: metaData.online: must be a boolean");
}
END_TEST

START_TEST(test_unknown_fields_and_nulls_ignored) {
    tsr_config_t *c = must_load(q("{'metaData':{'name':'a.b','someNewField':{'x':1},'team':null},"
                                  "'futureThing':[1,2],'sources':[{'events':{'table':'t','topic':null,"
                                  "'query':{'selects':{'k':'k','v':'v'},'whatever':3}}}],"
                                  "'keyColumns':['k'],'aggregations':[{'inputColumn':'v','operation':6}]}"));
    ck_assert_ptr_null(c->group_by->meta.team);
    ck_assert_ptr_null(c->group_by->sources[0].topic);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_selects_keep_json_order) {
    tsr_config_t *c = must_load(q("{'metaData':{'name':'a.b'},'sources':[{'entities':{'snapshotTable':'t',"
                                  "'query':{'selects':{'zeta':'z','k':'k','alpha':'a','mid':'m'}}}}],"
                                  "'keyColumns':['k']}"));
    const tsr_conf_query_t *qq = &c->group_by->sources[0].query;
    ck_assert_int_eq(qq->n_selects, 4);
    ck_assert_str_eq(qq->selects[0].key, "zeta");
    ck_assert_str_eq(qq->selects[2].key, "alpha");
    /* An entity GroupBy without aggregations serves its non-key columns, in select order. */
    ck_assert_int_eq(c->n_columns, 5);
    ck_assert_str_eq(c->columns[0].name, "k");
    ck_assert_str_eq(c->columns[1].name, "ds");
    ck_assert_str_eq(c->columns[2].name, "zeta");
    ck_assert_str_eq(c->columns[3].name, "alpha");
    ck_assert_str_eq(c->columns[4].name, "mid");
    tsr_config_free(c);
}
END_TEST

/* ---- kinds, dialects ---------------------------------------------------------------------- */

START_TEST(test_kind_detection) {
    tsr_config_t *c = must_load(q("{'metaData':{'name':'sq.v1','outputNamespace':'ns'},"
                                  "'query':'SELECT * FROM t WHERE ds BETWEEN ^{{ start_date }}^ AND ^{{ end_date }}^',"
                                  "'startPartition':'2024-01-01'}"));
    ck_assert_int_eq(c->kind, TSR_CONF_STAGING_QUERY);
    ck_assert_str_eq(c->staging_query->start_partition, "2024-01-01");
    ck_assert_int_eq(c->columns_known, 0);
    tsr_config_free(c);
    c = must_load(GB("'aggregations':[{'inputColumn':'amount','operation':6}]"));
    ck_assert_int_eq(c->kind, TSR_CONF_GROUP_BY);
    tsr_config_free(c);
    c = must_load(q("{'metaData':{'name':'j.v1'},'left':{'events':{'table':'t','query':{'selects':"
                    "{'a':'a'}}}},'joinParts':[]}"));
    ck_assert_int_eq(c->kind, TSR_CONF_JOIN);
    tsr_config_free(c);
    expect_error(q("{'metaData':{'name':'x'},'foo':1}"), "t.json: cannot tell the config kind");
}
END_TEST

#define DIALECT_GB(md, op)                                                                     \
    q("{'metaData':{'name':'a.b'%s},'sources':[{'events':{'table':'t','query':{'selects':"     \
      "{'k':'k','v':'v'}}}}],'keyColumns':['k'],'aggregations':[{'inputColumn':'v',"           \
      "'operation':%d,'argMap':{'k':'4'}}]}", md, op)

START_TEST(test_dialect_detection) {
    tsr_config_t *c = must_load(DIALECT_GB(",'executionInfo':{'offlineSchedule':'@daily'}", 18));
    ck_assert_int_eq(c->dialect, TSR_DIALECT_ZIPLINE);
    ck_assert_str_eq(c->dialect_reason, "metaData.executionInfo");
    ck_assert_int_eq(c->group_by->aggs[0].op, TSR_OP_APPROX_FREQUENT_K);
    tsr_config_free(c);

    c = must_load(DIALECT_GB(",'sourceFile':'group_bys/x.py'", 20));
    ck_assert_int_eq(c->dialect, TSR_DIALECT_ZIPLINE);
    ck_assert_int_eq(c->group_by->aggs[0].op, TSR_OP_UNIQUE_TOP_K);
    ck_assert_str_eq(c->columns[2].name, "v_unique_top4");
    tsr_config_free(c);

    c = must_load(DIALECT_GB(",'dependencies':['x']", 18));
    ck_assert_int_eq(c->dialect, TSR_DIALECT_AIRBNB);
    ck_assert_str_eq(c->dialect_reason, "metaData.dependencies");
    ck_assert_int_eq(c->group_by->aggs[0].op, TSR_OP_APPROX_HISTOGRAM_K);
    tsr_config_free(c);

    /* Undecidable -> airbnb. */
    c = must_load(DIALECT_GB("", 19));
    ck_assert_int_eq(c->dialect, TSR_DIALECT_AIRBNB);
    ck_assert_str_eq(c->dialect_reason, "default");
    ck_assert_int_eq(c->group_by->aggs[0].op, TSR_OP_BOUNDED_UNIQUE_COUNT);
    tsr_config_free(c);

    /* 20 does not exist in airbnb's numbering. */
    expect_error(DIALECT_GB("", 20), "t.json: aggregations[0].operation: unknown operation 20");

    /* Explicit override beats the MetaData shape. */
    tsr_config_options_t opt = {TSR_DIALECT_AIRBNB, NULL};
    tsr_diag_t d;
    int rc;
    c = load_opt(DIALECT_GB(",'executionInfo':{}", 19), &opt, &d, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(c->dialect, TSR_DIALECT_AIRBNB);
    ck_assert_str_eq(c->dialect_reason, "--dialect");
    ck_assert_int_eq(c->group_by->aggs[0].op, TSR_OP_BOUNDED_UNIQUE_COUNT);
    tsr_config_free(c);
    tsr_diag_free(&d);

    /* The dialect of an inlined GroupBy's metaData decides when the top level cannot. */
    c = must_load(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':{'selects':"
                    "{'k':'k'}}}},'joinParts':[{'groupBy':{'metaData':{'name':'g','executionInfo':{}},"
                    "'sources':[{'events':{'table':'t','query':{'selects':{'k':'k','v':'v'}}}}],"
                    "'keyColumns':['k'],'aggregations':[{'inputColumn':'v','operation':19,"
                    "'argMap':{'k':'3'}}]}}]}"));
    ck_assert_int_eq(c->dialect, TSR_DIALECT_ZIPLINE);
    ck_assert_int_eq(c->join->parts[0].group_by->aggs[0].op, TSR_OP_APPROX_HEAVY_HITTERS_K);
    tsr_config_free(c);

    tsr_dialect_t dd;
    ck_assert_int_eq(tsr_dialect_parse("zipline", &dd), 0);
    ck_assert_int_eq(dd, TSR_DIALECT_ZIPLINE);
    ck_assert_int_ne(tsr_dialect_parse("spark", &dd), 0);
}
END_TEST

/* ---- validation errors: one test each, asserting the JSON path ----------------------------- */

START_TEST(test_err_unknown_operation) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7},"
                    "{'inputColumn':'amount','operation':42}]"),
                 "t.json: aggregations[1].operation: unknown operation 42");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':'MEDIAN'}]"),
                 "t.json: aggregations[0].operation: unknown operation 'MEDIAN'");
    expect_error(GB("'aggregations':[{'inputColumn':'amount'}]"),
                 "t.json: aggregations[0].operation: required");
}
END_TEST

START_TEST(test_err_unknown_time_unit) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':1,'timeUnit':1},{'length':3,'timeUnit':7}]}]"),
                 "t.json: aggregations[0].windows[1].timeUnit: unknown time unit 7");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':1,'timeUnit':'WEEKS'}]}]"),
                 "t.json: aggregations[0].windows[0].timeUnit: unknown time unit 'WEEKS'");
}
END_TEST

START_TEST(test_err_missing_key_columns) {
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t'}}],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: keyColumns: required");
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t'}}],'keyColumns':[],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: keyColumns: must list at least one key column");
}
END_TEST

START_TEST(test_err_k_missing) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7},"
                    "{'inputColumn':'amount','operation':6},"
                    "{'inputColumn':'merchant','operation':13,'argMap':{}}]"),
                 "t.json: aggregations[2].argMap.k: required for LAST_K");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':'TOP_K'}]"),
                 "t.json: aggregations[0].argMap.k: required for TOP_K");
}
END_TEST

START_TEST(test_err_k_not_positive_integer) {
    expect_error(GB("'aggregations':[{'inputColumn':'merchant','operation':13,'argMap':{'k':'five'}}]"),
                 "t.json: aggregations[0].argMap.k: must be a positive integer, got 'five'");
    expect_error(GB("'aggregations':[{'inputColumn':'merchant','operation':13,'argMap':{'k':'0'}}]"),
                 "t.json: aggregations[0].argMap.k: must be a positive integer, got '0'");
    expect_error(GB("'aggregations':[{'inputColumn':'merchant','operation':14,'argMap':{'k':'-2'}}]"),
                 "t.json: aggregations[0].argMap.k: must be a positive integer, got '-2'");
    expect_error(GB("'aggregations':[{'inputColumn':'merchant','operation':14,'argMap':{'k':'2.5'}}]"),
                 "t.json: aggregations[0].argMap.k: must be a positive integer, got '2.5'");
    /* HISTOGRAM allows 0 (no truncation). */
    tsr_config_t *c = must_load(GB("'aggregations':[{'inputColumn':'cur','operation':17,'argMap':{'k':'0'}}]"));
    ck_assert_str_eq(c->columns[2].name, "cur_histogram");
    tsr_config_free(c);
}
END_TEST

START_TEST(test_err_window_length) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':0,'timeUnit':1}]}]"),
                 "t.json: aggregations[0].windows[0].length: must be > 0, got 0");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':7,'timeUnit':1},{'length':-3,'timeUnit':0}]}]"),
                 "t.json: aggregations[0].windows[1].length: must be > 0, got -3");
}
END_TEST

START_TEST(test_err_percentiles) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':12,"
                    "'argMap':{'percentiles':'[0.5, 1.5]'}}]"),
                 "t.json: aggregations[0].argMap.percentiles[1]: 1.5 is outside [0, 1]");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':12,"
                    "'argMap':{'percentiles':'[-0.1]'}}]"),
                 "t.json: aggregations[0].argMap.percentiles[0]: -0.1 is outside [0, 1]");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':12,"
                    "'argMap':{'percentiles':'0.5, 0.9'}}]"),
                 "t.json: aggregations[0].argMap.percentiles: must be a non-empty JSON list");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':12,"
                    "'argMap':{'percentiles':'[0.5, ^p99^]'}}]"),
                 "t.json: aggregations[0].argMap.percentiles");
    tsr_config_t *c = must_load(GB("'aggregations':[{'inputColumn':'amount','operation':12,"
                                   "'argMap':{'k':'200','percentiles':'[0.99, 0.95, 0.5]'}}]"));
    const tsr_conf_aggregation_t *a = &c->group_by->aggs[0];
    ck_assert_int_eq(a->k, 200);
    ck_assert_int_eq(a->n_percentiles, 3);
    ck_assert(a->percentiles[0] == 0.99 && a->percentiles[2] == 0.5);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_err_bucket_not_selected) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,'buckets':['cur','country']}]"),
                 "t.json: aggregations[0].buckets[1]: bucket column 'country' is not produced by "
                 "sources[0].events.query.selects");
}
END_TEST

START_TEST(test_err_input_not_selected) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7},"
                    "{'inputColumn':'price','operation':7}]"),
                 "t.json: aggregations[1].inputColumn: input column 'price' is not produced by "
                 "sources[0].events.query.selects");
    /* Key columns too. */
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t','query':"
                   "{'selects':{'v':'v'}}}}],'keyColumns':['user'],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: keyColumns[0]: key column 'user' is not produced by");
    /* Without selects every raw column passes: nothing to check without a schema. */
    tsr_config_t *c = must_load(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t'}}],"
                                  "'keyColumns':['user'],'aggregations':[{'inputColumn':'v','operation':6}]}"));
    ck_assert_int_eq(c->group_by->sources[0].all_raw, 1);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_err_unknown_function) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7}],"
                    "'derivations':[{'name':'x','expression':'FROBNICATE(amount_sum)'}]"),
                 "t.json: derivations[0].expression: ");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7}],"
                    "'derivations':[{'name':'x','expression':'FROBNICATE(amount_sum)'}]"),
                 "FROBNICATE");
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t','query':"
                   "{'selects':{'k':'k','v':'EXPLODE(v)'}}}}],'keyColumns':['k'],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: sources[0].events.query.selects.v: ");
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t','query':"
                   "{'selects':{'k':'k','v':'v'},'wheres':['v > 1','NOSUCHFN(v)']}}}],'keyColumns':['k'],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: sources[0].events.query.wheres[1]: ");
}
END_TEST

/* Writes <dir>/ns/t/_schema.json. */
static void write_schema(const char *dir, const char *json) {
    char p[512];
    snprintf(p, sizeof p, "%s/ns", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/ns/t", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/ns/t/_schema.json", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(json, f);
    fclose(f);
}

START_TEST(test_err_unknown_column_with_schema) {
    char dir[] = "/tmp/tsr_conf_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    write_schema(dir, "{\"user_id\":\"string\",\"amount\":\"double\",\"currency\":\"string\","
                      "\"ts\":\"long\"}");
    tsr_config_options_t opt = {TSR_DIALECT_AUTO, dir};
    /* merchant_id is not in the schema. */
    expect_error_opt(GB("'aggregations':[{'inputColumn':'amount','operation':7}]"), &opt,
                     "t.json: sources[0].events.query.selects.merchant: ");
    expect_error_opt(GB("'aggregations':[{'inputColumn':'amount','operation':7}]"), &opt,
                     "merchant_id");
    /* With a complete schema the types are precise. */
    write_schema(dir, "{\"user_id\":\"string\",\"amount\":\"double\",\"currency\":\"string\","
                      "\"merchant_id\":\"string\",\"ts\":\"long\"}");
    tsr_diag_t d;
    int rc;
    tsr_config_t *c = load_opt(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                                  "'windows':[{'length':7,'timeUnit':1}]},"
                                  "{'inputColumn':'amount','operation':6},"
                                  "{'inputColumn':'amount','operation':8},"
                                  "{'inputColumn':'merchant','operation':13,'argMap':{'k':'3'}},"
                                  "{'inputColumn':'amount','operation':12},"
                                  "{'inputColumn':'amount','operation':7,'buckets':['cur']}]"),
                               &opt, &d, &rc);
    if (rc) tsr_diag_print(&d, stderr);
    ck_assert_int_eq(rc, 0);
    char b[TSR_TYPE_NAME_MAX];
    ck_assert_str_eq(type_of(c, "user", b), "string");
    ck_assert_str_eq(type_of(c, "amount_sum_7d", b), "double");
    ck_assert_str_eq(type_of(c, "amount_count", b), "long");
    ck_assert_str_eq(type_of(c, "amount_average", b), "double");
    ck_assert_str_eq(type_of(c, "merchant_last3", b), "list<string>");
    ck_assert_str_eq(type_of(c, "amount_approx_percentile", b), "list<double>");
    ck_assert_str_eq(type_of(c, "amount_sum_by_cur", b), "map<string,double>");
    tsr_config_free(c);
    tsr_diag_free(&d);
    /* A type error found by the aggregation kernel, with the aggregation's path. */
    expect_error_opt(GB("'aggregations':[{'inputColumn':'cur','operation':7}]"), &opt,
                     "t.json: aggregations[0]: ");
    /* timeColumn must yield a long. */
    expect_error_opt(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'ns.t','query':"
                       "{'selects':{'user':'user_id','amount':'amount'},'timeColumn':'currency'}}}],"
                       "'keyColumns':['user'],'aggregations':[{'inputColumn':'amount','operation':6}]}"),
                     &opt, "t.json: sources[0].events.query.timeColumn: must yield epoch milliseconds");
    /* No timeColumn: events default to `ts`, which this table lacks. */
    write_schema(dir, "{\"user_id\":\"string\",\"amount\":\"double\",\"event_time\":\"long\"}");
    expect_error_opt(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'ns.t','query':"
                       "{'selects':{'user':'user_id','amount':'amount'}}}}],"
                       "'keyColumns':['user'],'aggregations':[{'inputColumn':'amount','operation':6}]}"),
                     &opt, "t.json: sources[0].events.query.timeColumn: absent, and the source has no ts column");
    /* Without selects, the schema's columns pass through and are checked. */
    expect_error_opt(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'ns.t','query':"
                       "{'timeColumn':'event_time'}}}],'keyColumns':['user'],"
                       "'aggregations':[{'inputColumn':'amount','operation':6}]}"),
                     &opt, "t.json: keyColumns[0]: key column 'user' is not produced by sources[0] (table schema)");
    /* A broken schema file is reported against the table. */
    write_schema(dir, "{\"user_id\":\"strang\"}");
    expect_error_opt(GB("'aggregations':[{'inputColumn':'amount','operation':7}]"), &opt,
                     "t.json: sources[0].events.table: ");
    char p[512];
    snprintf(p, sizeof p, "%s/ns/t/_schema.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/ns/t", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/ns", dir);
    rmdir(p);
    rmdir(dir);
}
END_TEST

/* A Join: left checkout events (buyer, merchant, amount), part 0 keyed by user (mapped from
 * buyer), part 1 keyed by merchant. */
#define JOIN(part0_extra, rest)                                                                \
    q("{'metaData':{'name':'risk.checkout.v1'},"                                               \
      "'left':{'events':{'table':'ck.events','query':{'selects':{'buyer':'buyer','merchant':"  \
      "'merchant','amount':'amount','ts':'ts'},'timeColumn':'ts'}}},"                         \
      "'joinParts':[{'groupBy':{'metaData':{'name':'pay.user_txn.v1'},'sources':[{'events':"   \
      "{'table':'pay.txn','query':{'selects':{'user':'user_id','amount':'amount'}}}}],"        \
      "'keyColumns':['user'],'aggregations':[{'inputColumn':'amount','operation':7,"           \
      "'windows':[{'length':7,'timeUnit':1}]},{'inputColumn':'amount','operation':6}]}%s},"   \
      "{'groupBy':{'metaData':{'name':'pay.merchant.v1'},'sources':[{'events':{'table':"       \
      "'pay.txn','query':{'selects':{'merchant':'merchant_id','amount':'amount'}}}}],"         \
      "'keyColumns':['merchant'],'aggregations':[{'inputColumn':'amount','operation':8}]}}]%s}", \
      part0_extra, rest)

START_TEST(test_err_derivation_unknown_feature) {
    expect_error(JOIN(",'keyMapping':{'buyer':'user'}",
                      ",'derivations':[{'name':'ok','expression':'amount'},"
                      "{'name':'ratio','expression':'amount / pay_user_txn_v1_amount_sum_30d'}]"),
                 "t.json: derivations[1].expression: ");
    expect_error(JOIN(",'keyMapping':{'buyer':'user'}",
                      ",'derivations':[{'name':'ratio','expression':'amount / pay_user_txn_v1_amount_sum_30d'}]"),
                 "pay_user_txn_v1_amount_sum_30d");
}
END_TEST

START_TEST(test_err_join_key_not_in_left) {
    expect_error(JOIN("", ""),
                 "t.json: joinParts[0].groupBy.keyColumns[0]: key 'user' is not a column of the "
                 "Join's left and has no keyMapping");
    /* A keyMapping whose left column does not exist. */
    expect_error(JOIN(",'keyMapping':{'buyer_id':'user'}", ""),
                 "t.json: joinParts[0].keyMapping.buyer_id: left column 'buyer_id' (mapped to key "
                 "user) is not produced by the left source");
    /* A keyMapping onto something that is not a key. */
    expect_error(JOIN(",'keyMapping':{'buyer':'user','merchant':'shop'}", ""),
                 "t.json: joinParts[0].keyMapping.merchant: 'shop' is not a key column of GroupBy "
                 "pay.user_txn.v1");
}
END_TEST

START_TEST(test_err_duplicate_output_columns) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7},"
                    "{'inputColumn':'amount','operation':'SUM'}]"),
                 "t.json: aggregations[1]: duplicate output column 'amount_sum' (also from "
                 "aggregations[0])");
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7}],"
                    "'derivations':[{'name':'a','expression':'amount_sum'},"
                    "{'name':'a','expression':'amount_sum * 2'}]"),
                 "t.json: derivations[1].name: duplicate output column 'a'");
    expect_error(JOIN(",'keyMapping':{'buyer':'user'}",
                      ",'derivations':[{'name':'amount','expression':'pay_merchant_v1_amount_average'}]"),
                 "t.json: derivations[0].name: duplicate output column 'amount' (a left column, ts or ds)");
    /* A base duplicate copied by `*` is reported once, not again for the derived list. */
    {
        tsr_diag_t d;
        int rc;
        tsr_config_t *c = load_opt(GB("'aggregations':[{'inputColumn':'amount','operation':7},"
                                      "{'inputColumn':'amount','operation':7}],"
                                      "'derivations':[{'name':'*','expression':'*'}]"),
                                   NULL, &d, &rc);
        ck_assert_int_eq(rc, TSR_ECONFIG);
        ck_assert_int_eq(d.n, 1);
        tsr_config_free(c);
        tsr_diag_free(&d);
    }
    /* A derivation named like a key column. */
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7}],"
                    "'derivations':[{'name':'user','expression':'amount_sum'}]"),
                 "t.json: derivations[0].name: duplicate output column 'user' (a key column)");
    /* Two parts of the same GroupBy without prefixes collide. */
    expect_error(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':{'selects':{'k':'k'}}}},"
                   "'joinParts':[{'groupBy':{'metaData':{'name':'g'},'sources':[{'events':{'table':'t2',"
                   "'query':{'selects':{'k':'k','v':'v'}}}}],'keyColumns':['k'],'aggregations':"
                   "[{'inputColumn':'v','operation':6}]}},{'groupBy':{'metaData':{'name':'g'},"
                   "'sources':[{'events':{'table':'t2','query':{'selects':{'k':'k','v':'v'}}}}],"
                   "'keyColumns':['k'],'aggregations':[{'inputColumn':'v','operation':6}]}}]}"),
                 "t.json: joinParts[1]: duplicate output column 'g_v_count' (also from joinParts[0])");
}
END_TEST

START_TEST(test_err_hourly_window_snapshot) {
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':1,'timeUnit':1},{'length':6,'timeUnit':0}]}],'accuracy':1"),
                 "t.json: aggregations[0].windows[1].timeUnit: HOURS windows need TEMPORAL accuracy");
    /* Unset accuracy without a topic resolves to SNAPSHOT, so minutes are rejected too. */
    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7,"
                    "'windows':[{'length':30,'timeUnit':2}]}]"),
                 "t.json: aggregations[0].windows[0].timeUnit: MINUTES windows need TEMPORAL accuracy");
}
END_TEST

START_TEST(test_errors_all_collected) {
    tsr_diag_t d;
    int rc;
    tsr_config_t *c = load_opt(GB("'aggregations':[{'inputColumn':'amount','operation':99},"
                                  "{'inputColumn':'amount','operation':13},"
                                  "{'inputColumn':'amount','operation':7,'windows':[{'length':0,'timeUnit':1}]},"
                                  "{'inputColumn':'nope','operation':7}]"),
                               NULL, &d, &rc);
    ck_assert_int_eq(rc, TSR_ECONFIG);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_ge(d.n, 4);
    ck_assert(tsr_diag_contains(&d, "aggregations[0].operation"));
    ck_assert(tsr_diag_contains(&d, "aggregations[1].argMap.k"));
    ck_assert(tsr_diag_contains(&d, "aggregations[2].windows[0].length"));
    ck_assert(tsr_diag_contains(&d, "aggregations[3].inputColumn"));
    tsr_config_free(c);
    tsr_diag_free(&d);
}
END_TEST

START_TEST(test_unsupported_features) {
    expect_error(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':{'selects':{'k':'k'}}}},"
                   "'joinParts':[],'labelPart':{'labels':[]}}"),
                 "t.json: labelPart: unsupported: label parts (labelPart)");
    expect_error(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':{'selects':{'k':'k'}}}},"
                   "'joinParts':[],'bootstrapParts':[{'table':'b'}]}"),
                 "t.json: bootstrapParts: unsupported: bootstrap parts (bootstrapParts)");
    expect_error(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':{'selects':{'k':'k'}}}},"
                   "'joinParts':[],'onlineExternalParts':[{'source':{'metadata':{'name':'svc'}}}]}"),
                 "t.json: onlineExternalParts[0].source: unsupported: external source 'svc'");
    expect_error(q("{'metaData':{'name':'sq'},'query':'select 1','setups':['CREATE FUNCTION f']}"),
                 "t.json: setups: unsupported: staging query setups");
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t','topic':'pubsub://x',"
                   "'query':{'selects':{'k':'k','v':'v'}}}}],'keyColumns':['k'],"
                   "'aggregations':[{'inputColumn':'v','operation':6}]}"),
                 "t.json: sources[0].events.topic: unsupported: topic scheme 'pubsub://'");
    expect_error(q("{'metaData':{'name':'a.b'},'sources':[{'entities':{'snapshotTable':'t','query':"
                   "{'selects':{'k':'k','v':'v'}}}}],'keyColumns':['k'],'accuracy':0,"
                   "'aggregations':[{'inputColumn':'v','operation':3}]}"),
                 "t.json: accuracy: unsupported: TEMPORAL accuracy for an entity source");
}
END_TEST

START_TEST(test_malformed_json) {
    tsr_diag_t d;
    int rc;
    tsr_config_t *c = load_opt("{\n  \"metaData\": {\"name\": \"x\"},\n  \"keyColumns\": [\"a\",]\n}", NULL,
                               &d, &rc);
    ck_assert_int_eq(rc, TSR_EPARSE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(d.n, 1);
    ck_assert(tsr_diag_contains(&d, "t.json:3:"));
    ck_assert(tsr_diag_contains(&d, "malformed JSON"));
    tsr_diag_free(&d);
    c = load_opt("[1,2]", NULL, &d, &rc);
    ck_assert_int_eq(rc, TSR_EPARSE);
    tsr_diag_free(&d);
    c = load_opt("", NULL, &d, &rc);
    ck_assert_int_eq(rc, TSR_EPARSE);
    tsr_diag_free(&d);
    /* Duplicate keys would silently drop a select: rejected. */
    c = load_opt("{\"metaData\":{\"name\":\"a\"},\"sources\":[],\"keyColumns\":[\"k\"],\"keyColumns\":[]}",
                 NULL, &d, &rc);
    ck_assert_int_eq(rc, TSR_EPARSE);
    tsr_diag_free(&d);
    /* A directory is not a config. */
    ck_assert_int_eq(tsr_config_load("/tmp", NULL, &c, &d), TSR_EINVAL);
    ck_assert(tsr_diag_contains(&d, "/tmp: is a directory"));
    tsr_diag_free(&d);
    /* A missing file. */
    ck_assert_int_eq(tsr_config_load("/nonexistent/x.v1", NULL, &c, &d), TSR_ENOTFOUND);
    ck_assert(tsr_diag_contains(&d, "/nonexistent/x.v1: cannot open"));
    tsr_diag_free(&d);
}
END_TEST

/* ---- naming and expansion ----------------------------------------------------------------- */

START_TEST(test_naming_buckets_outer_windows_inner) {
    tsr_config_t *c = must_load(q("{'metaData':{'name':'a.b'},'sources':[{'events':{'table':'t','topic':'t',"
                                  "'query':{'selects':{'k':'k','v':'v','c':'c','d':'d'}}}}],'keyColumns':['k'],"
                                  "'aggregations':[{'inputColumn':'v','operation':7,'buckets':['c','d'],"
                                  "'windows':[{'length':1,'timeUnit':0},{'length':7,'timeUnit':1},"
                                  "{'length':15,'timeUnit':2}]},"
                                  "{'inputColumn':'v','operation':13,'argMap':{'k':'5'}},"
                                  "{'inputColumn':'v','operation':14,'argMap':{'k':'3'}},"
                                  "{'inputColumn':'v','operation':15,'argMap':{'k':'10'}},"
                                  "{'inputColumn':'v','operation':16,'argMap':{'k':'2'}},"
                                  "{'inputColumn':'v','operation':'APPROX_UNIQUE_COUNT'}]}"));
    const char *want[] = {"k", "ds",
                          "v_sum_1h_by_c", "v_sum_7d_by_c", "v_sum_15m_by_c",
                          "v_sum_1h_by_d", "v_sum_7d_by_d", "v_sum_15m_by_d",
                          "v_last5", "v_first3", "v_top10", "v_bottom2", "v_approx_unique_count"};
    ck_assert_int_eq(c->n_columns, sizeof want / sizeof *want);
    for (size_t i = 0; i < c->n_columns; i++) ck_assert_str_eq(c->columns[i].name, want[i]);
    ck_assert_int_eq(c->group_by->accuracy, TSR_ACCURACY_TEMPORAL); /* a topic -> TEMPORAL */
    /* Each aggregation column knows its aggregation, window and bucket. */
    const tsr_conf_group_by_t *g = c->group_by;
    ck_assert_int_eq(g->n_parts, c->n_columns - 2);
    ck_assert_str_eq(g->parts[4].name, "v_sum_7d_by_d");
    ck_assert_int_eq(g->parts[4].agg, 0);
    ck_assert_int_eq(g->parts[4].window, 1);
    ck_assert_int_eq(g->parts[4].bucket, 1);
    ck_assert_str_eq(g->parts[6].name, "v_last5");
    ck_assert_int_eq(g->parts[6].agg, 1);
    ck_assert_int_eq(g->parts[6].window, -1);
    ck_assert_int_eq(g->parts[6].bucket, -1);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_clean_names) {
    char buf[64];
    ck_assert_str_eq(tsr_conf_clean_name("team.card-txn v1/x", buf, sizeof buf), "team_card_txn_v1_x");
    ck_assert_str_eq(tsr_conf_clean_name("ok_Name9", buf, sizeof buf), "ok_Name9");
    ck_assert_str_eq(tsr_conf_clean_name("abcdef", buf, 4), "abc");
    tsr_config_t *c = must_load(q("{'metaData':{'name':'sample-team.gb.v1'},'sources':[{'events':"
                                  "{'table':'t','query':{'selects':{'k':'k','v':'v'}}}}],'keyColumns':['k'],"
                                  "'aggregations':[{'inputColumn':'v','operation':6}]}"));
    ck_assert_str_eq(c->group_by->meta.clean_name, "sample_team_gb_v1");
    tsr_config_free(c);
}
END_TEST

START_TEST(test_join_columns_and_prefixes) {
    tsr_config_t *c = must_load(JOIN(",'keyMapping':{'buyer':'user'},'prefix':'buyer'", ""));
    /* Left columns (its own ts select is not repeated), ts, ds, then parts in order. */
    const char *want[] = {"buyer", "merchant", "amount", "ts", "ds",
                          "buyer_pay_user_txn_v1_amount_sum_7d", "buyer_pay_user_txn_v1_amount_count",
                          "pay_merchant_v1_amount_average"};
    ck_assert_int_eq(c->n_columns, sizeof want / sizeof *want);
    for (size_t i = 0; i < c->n_columns; i++) ck_assert_str_eq(c->columns[i].name, want[i]);
    ck_assert_str_eq(c->join->parts[0].column_prefix, "buyer_pay_user_txn_v1_");
    ck_assert_str_eq(c->join->parts[1].column_prefix, "pay_merchant_v1_");
    char b[TSR_TYPE_NAME_MAX];
    ck_assert_str_eq(type_of(c, "ts", b), "long");
    ck_assert_str_eq(type_of(c, "ds", b), "string");
    ck_assert_str_eq(type_of(c, "buyer_pay_user_txn_v1_amount_count", b), "long");
    ck_assert_str_eq(type_of(c, "pay_merchant_v1_amount_average", b), "double");
    tsr_config_free(c);

    /* zipline useLongNames = 0: the keys replace the GroupBy name. */
    c = must_load(JOIN(",'keyMapping':{'buyer':'user'},'useLongNames':0", ""));
    ck_assert_int_ge(col_index(c, "user_amount_sum_7d"), 0);
    ck_assert_int_ge(col_index(c, "pay_merchant_v1_amount_average"), 0);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_derivation_star_rules) {
    /* `*` in place, minus rename sources; renames; expressions; identity pass-through of ds. */
    tsr_config_t *c = must_load(JOIN(",'keyMapping':{'buyer':'user'}",
                                     ",'derivations':[{'name':'ratio','expression':'amount / "
                                     "pay_merchant_v1_amount_average'},{'name':'*','expression':'*'},"
                                     "{'name':'user_sum_7d','expression':'pay_user_txn_v1_amount_sum_7d'},"
                                     "{'name':'ds','expression':'ds'}]"));
    const char *want[] = {"buyer", "merchant", "amount", "ts", "ds",
                          "ratio", "pay_user_txn_v1_amount_count", "pay_merchant_v1_amount_average",
                          "user_sum_7d"};
    ck_assert_int_eq(c->n_columns, sizeof want / sizeof *want);
    for (size_t i = 0; i < c->n_columns; i++) ck_assert_str_eq(c->columns[i].name, want[i]);
    tsr_config_free(c);

    /* Without `*` only the derived columns remain. */
    c = must_load(JOIN(",'keyMapping':{'buyer':'user'}",
                       ",'derivations':[{'name':'s','expression':'pay_user_txn_v1_amount_sum_7d'}]"));
    ck_assert_int_eq(c->n_columns, 6);
    ck_assert_str_eq(c->columns[5].name, "s");
    tsr_config_free(c);

    /* GroupBy derivations follow the same rule and may use keys. */
    c = must_load(GB("'aggregations':[{'inputColumn':'amount','operation':7},{'inputColumn':'amount',"
                     "'operation':6}],'derivations':[{'name':'*','expression':'*'},"
                     "{'name':'total','expression':'amount_sum'}]"));
    ck_assert_int_eq(c->n_columns, 4);
    ck_assert_str_eq(c->columns[2].name, "amount_count");
    ck_assert_str_eq(c->columns[3].name, "total");
    tsr_config_free(c);

    expect_error(GB("'aggregations':[{'inputColumn':'amount','operation':7}],"
                    "'derivations':[{'name':'*','expression':'amount_sum'}]"),
                 "t.json: derivations[0].expression: must be '*' when name is '*'");
}
END_TEST

START_TEST(test_contextual_external_part) {
    tsr_config_t *c = must_load(q("{'metaData':{'name':'j'},'left':{'events':{'table':'t','query':"
                                  "{'selects':{'k':'k'}}}},'joinParts':[],'onlineExternalParts':[{'source':"
                                  "{'metadata':{'name':'contextual'},'keySchema':{'kind':13,'params':"
                                  "[{'name':'req','dataType':{'kind':7}}]},'valueSchema':{'kind':13,"
                                  "'params':[{'name':'req','dataType':{'kind':7}},{'name':'n','dataType':"
                                  "{'kind':4}}]}}}]}"));
    ck_assert_int_eq(c->n_columns, 5);
    ck_assert_str_eq(c->columns[3].name, "ext_contextual_req");
    ck_assert_str_eq(c->columns[4].name, "ext_contextual_n");
    ck_assert_int_eq(c->columns[4].type, TSR_LONG);
    tsr_config_free(c);
}
END_TEST

START_TEST(test_join_source_chaining) {
    /* A GroupBy over a Join's output: its selects compile against the Join's columns. */
    const char *parent = "{'metaData':{'name':'p.j'},'left':{'events':{'table':'t','query':{'selects':"
                         "{'u':'u','v':'v'},'timeColumn':'ts'}}},'joinParts':[{'groupBy':{'metaData':"
                         "{'name':'g'},'sources':[{'events':{'table':'t','query':{'selects':{'u':'u',"
                         "'v':'v'}}}}],'keyColumns':['u'],'aggregations':[{'inputColumn':'v',"
                         "'operation':7}]}}]}";
    char buf[4096];
    snprintf(buf, sizeof buf, "{'metaData':{'name':'c'},'sources':[{'joinSource':{'join':%s,"
                              "'query':{'selects':{'u':'u','total':'g_v_sum'}}}}],'keyColumns':['u'],"
                              "'aggregations':[{'inputColumn':'total','operation':3}]}", parent);
    tsr_config_t *c = must_load(q("%s", buf));
    ck_assert_int_eq(c->group_by->sources[0].kind, TSR_SOURCE_JOIN);
    ck_assert_str_eq(c->columns[2].name, "total_last");
    tsr_config_free(c);
    snprintf(buf, sizeof buf, "{'metaData':{'name':'c'},'sources':[{'joinSource':{'join':%s,"
                              "'query':{'selects':{'u':'u','total':'no_such_feature'}}}}],"
                              "'keyColumns':['u'],'aggregations':[{'inputColumn':'total','operation':3}]}",
             parent);
    expect_error(q("%s", buf), "t.json: sources[0].joinSource.query.selects.total: ");
}
END_TEST


/* ---- robustness: random damage to a real config never crashes ----------------------------- */

typedef struct slot {
    json_t *parent;
    const char *key;    /* object member, or NULL for an array element */
    size_t index;
} slot_t;

static void collect_slots(json_t *node, slot_t *slots, size_t *n, size_t cap) {
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(node)) {
        json_object_foreach(node, key, v) {
            if (*n < cap) slots[(*n)++] = (slot_t){node, key, 0};
            collect_slots(v, slots, n, cap);
        }
    } else if (json_is_array(node)) {
        json_array_foreach(node, i, v) {
            if (*n < cap) slots[(*n)++] = (slot_t){node, NULL, i};
            collect_slots(v, slots, n, cap);
        }
    }
}

static json_t *random_value(tsr_rng_t *r) {
    switch (tsr_rng_below(r, 13)) {
    case 0: return json_null();
    case 1: return json_integer(0);
    case 2: return json_integer(-1);
    case 3: return json_integer((json_int_t)tsr_rng_range(r, 1, 30));
    case 4: return json_integer(INT64_MAX);
    case 5: return json_string("");
    case 6: return json_string("*");
    case 7: return json_string("[0.5,");
    case 8: return json_string("amount + ");
    case 9: return json_array();
    case 10: return json_object();
    case 11: return json_true();
    default: return json_real(1.5);
    }
}

START_TEST(test_random_damage_never_crashes) {
    const char *src = getenv("TSR_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/joins/payments/checkout_features.v1", src ? src : ".");
    json_error_t je;
    json_t *orig = json_load_file(path, 0, &je);
    ck_assert_msg(orig != NULL, "cannot load %s", path);
    tsr_rng_t rng = {20261126};
    static slot_t slots[4096];
    size_t n_ok = 0, n_bad = 0;
    for (int iter = 0; iter < 400; iter++) {
        json_t *doc = json_deep_copy(orig);
        int edits = 1 + (int)tsr_rng_below(&rng, 3);
        for (int e = 0; e < edits; e++) {
            size_t n = 0;
            collect_slots(doc, slots, &n, sizeof slots / sizeof *slots);
            if (!n) break;
            slot_t *sl = &slots[tsr_rng_below(&rng, n)];
            int del = tsr_rng_below(&rng, 4) == 0;
            if (sl->key) {
                char key[256];
                snprintf(key, sizeof key, "%s", sl->key);
                if (del) json_object_del(sl->parent, key);
                else json_object_set_new(sl->parent, key, random_value(&rng));
            } else {
                if (del) json_array_remove(sl->parent, sl->index);
                else json_array_set_new(sl->parent, sl->index, random_value(&rng));
            }
        }
        char *text = json_dumps(doc, JSON_PRESERVE_ORDER);
        tsr_diag_t d;
        int rc;
        tsr_config_t *c = load_opt(text, NULL, &d, &rc);
        if (rc == 0) {
            ck_assert_int_eq(d.n, 0);
            ck_assert_int_gt(c->n_columns, 0);
            n_ok++;
        } else {
            ck_assert_int_gt(d.n, 0);   /* a failure always says why */
            n_bad++;
        }
        tsr_config_free(c);
        tsr_diag_free(&d);
        free(text);
        json_decref(doc);
    }
    json_decref(orig);
    ck_assert_int_gt(n_bad, 0);
}
END_TEST

/* An events source's topic as Kafka names it: scheme and arguments dropped. */
START_TEST(test_topic_name) {
    char b[32];
    ck_assert_str_eq(tsr_conf_topic_name("payments.card_txn", b, sizeof b), "payments.card_txn");
    ck_assert_str_eq(tsr_conf_topic_name("kafka://payments.card_txn", b, sizeof b), "payments.card_txn");
    ck_assert_str_eq(tsr_conf_topic_name("kafka://t/serde=json/x=1", b, sizeof b), "t");
    ck_assert_ptr_null(tsr_conf_topic_name("", b, sizeof b));
    ck_assert_ptr_null(tsr_conf_topic_name(NULL, b, sizeof b));
    ck_assert_ptr_null(tsr_conf_topic_name("kafka://", b, sizeof b));
    ck_assert_ptr_null(tsr_conf_topic_name("kafka://a-topic-name-longer-than-the-buffer", b, sizeof b));
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_enum_encodings);
    tcase_add_test(tc, test_boolean_encodings);
    tcase_add_test(tc, test_unknown_fields_and_nulls_ignored);
    tcase_add_test(tc, test_selects_keep_json_order);
    tcase_add_test(tc, test_kind_detection);
    tcase_add_test(tc, test_dialect_detection);
    tcase_add_test(tc, test_err_unknown_operation);
    tcase_add_test(tc, test_err_unknown_time_unit);
    tcase_add_test(tc, test_err_missing_key_columns);
    tcase_add_test(tc, test_err_k_missing);
    tcase_add_test(tc, test_err_k_not_positive_integer);
    tcase_add_test(tc, test_err_window_length);
    tcase_add_test(tc, test_err_percentiles);
    tcase_add_test(tc, test_err_bucket_not_selected);
    tcase_add_test(tc, test_err_input_not_selected);
    tcase_add_test(tc, test_err_unknown_function);
    tcase_add_test(tc, test_err_unknown_column_with_schema);
    tcase_add_test(tc, test_err_derivation_unknown_feature);
    tcase_add_test(tc, test_err_join_key_not_in_left);
    tcase_add_test(tc, test_err_duplicate_output_columns);
    tcase_add_test(tc, test_err_hourly_window_snapshot);
    tcase_add_test(tc, test_errors_all_collected);
    tcase_add_test(tc, test_unsupported_features);
    tcase_add_test(tc, test_malformed_json);
    tcase_add_test(tc, test_naming_buckets_outer_windows_inner);
    tcase_add_test(tc, test_clean_names);
    tcase_add_test(tc, test_join_columns_and_prefixes);
    tcase_add_test(tc, test_derivation_star_rules);
    tcase_add_test(tc, test_contextual_external_part);
    tcase_add_test(tc, test_join_source_chaining);
    tcase_add_test(tc, test_random_damage_never_crashes);
    tcase_add_test(tc, test_topic_name);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(config_suite()); }
