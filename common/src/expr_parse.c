/*
 * expr_parse.c — tokenizer and recursive-descent parser for the SPEC §2 Spark-SQL subset.
 *
 * Design: the lexer produces one token at a time (one-token lookahead, plus a saved position
 * for the two places that need to peek further: `NOT IN/LIKE/BETWEEN` and `name (`). The
 * parser builds an AST in the caller's arena. Precedence, loosest first (docs/expressions.md):
 *     OR < AND < NOT < predicates (= == != <> < <= > >= IS IN LIKE BETWEEN)
 *        < additive (+ - ||) < multiplicative (* / %) < unary (- +) < primary
 * Function names are checked here (existence and argument count) so config validation can
 * report an unsupported function before any table schema is known.
 *
 * Invariants: every error carries the byte offset of the offending token; syntax errors are
 * rendered as "syntax error at column N: <what>" plus the source line and a caret line, the
 * column counted in UTF-8 code points from 1. Nesting deeper than TSR__MAX_DEPTH is an error,
 * so hostile input cannot exhaust the C stack.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr_int.h"

#define TSR__MAX_DEPTH 200

/* ---------------------------------------------------------------- function table */

static const tsr__func_name_t k_func_names[] = {
    {"IF", TSR__F_IF}, {"COALESCE", TSR__F_COALESCE}, {"NVL", TSR__F_COALESCE},
    {"IFNULL", TSR__F_COALESCE}, {"ABS", TSR__F_ABS}, {"LN", TSR__F_LN}, {"LOG", TSR__F_LOG},
    {"LOG10", TSR__F_LOG10}, {"EXP", TSR__F_EXP}, {"POW", TSR__F_POW},
    {"POWER", TSR__F_POW}, {"SQRT", TSR__F_SQRT}, {"FLOOR", TSR__F_FLOOR},
    {"CEIL", TSR__F_CEIL}, {"CEILING", TSR__F_CEIL}, {"ROUND", TSR__F_ROUND},
    {"GREATEST", TSR__F_GREATEST}, {"LEAST", TSR__F_LEAST}, {"LOWER", TSR__F_LOWER},
    {"LCASE", TSR__F_LOWER}, {"UPPER", TSR__F_UPPER}, {"UCASE", TSR__F_UPPER},
    {"LENGTH", TSR__F_LENGTH}, {"CHAR_LENGTH", TSR__F_LENGTH}, {"SUBSTR", TSR__F_SUBSTR},
    {"SUBSTRING", TSR__F_SUBSTR}, {"CONCAT", TSR__F_CONCAT}, {"TRIM", TSR__F_TRIM},
    {"UNIX_TIMESTAMP", TSR__F_UNIX_TIMESTAMP}, {"FROM_UNIXTIME", TSR__F_FROM_UNIXTIME},
    {"DATE_FORMAT", TSR__F_DATE_FORMAT}, {"TO_DATE", TSR__F_TO_DATE},
};

static const struct {
    const char *name;
    int min, max;
} k_func_info[TSR__F_COUNT_] = {
    [TSR__F_IF] = {"IF", 3, 3},           [TSR__F_COALESCE] = {"COALESCE", 1, -1},
    [TSR__F_ABS] = {"ABS", 1, 1},         [TSR__F_LN] = {"LN", 1, 1},
    [TSR__F_LOG] = {"LOG", 1, 2},         [TSR__F_LOG10] = {"LOG10", 1, 1},
    [TSR__F_EXP] = {"EXP", 1, 1},         [TSR__F_POW] = {"POW", 2, 2},
    [TSR__F_SQRT] = {"SQRT", 1, 1},       [TSR__F_FLOOR] = {"FLOOR", 1, 1},
    [TSR__F_CEIL] = {"CEIL", 1, 1},       [TSR__F_ROUND] = {"ROUND", 1, 2},
    [TSR__F_GREATEST] = {"GREATEST", 2, -1}, [TSR__F_LEAST] = {"LEAST", 2, -1},
    [TSR__F_LOWER] = {"LOWER", 1, 1},     [TSR__F_UPPER] = {"UPPER", 1, 1},
    [TSR__F_LENGTH] = {"LENGTH", 1, 1},   [TSR__F_SUBSTR] = {"SUBSTR", 2, 3},
    [TSR__F_CONCAT] = {"CONCAT", 1, -1},  [TSR__F_TRIM] = {"TRIM", 1, 1},
    [TSR__F_UNIX_TIMESTAMP] = {"UNIX_TIMESTAMP", 1, 2},
    [TSR__F_FROM_UNIXTIME] = {"FROM_UNIXTIME", 1, 2},
    [TSR__F_DATE_FORMAT] = {"DATE_FORMAT", 2, 2}, [TSR__F_TO_DATE] = {"TO_DATE", 1, 2},
};

const char *tsr__func_name(tsr__func_id_t id) { return k_func_info[id].name; }

void tsr__func_arity(tsr__func_id_t id, int *min, int *max) {
    *min = k_func_info[id].min;
    *max = k_func_info[id].max;
}

int tsr__func_lookup(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof k_func_names / sizeof k_func_names[0]; i++)
        if (strlen(k_func_names[i].name) == n && strncasecmp(k_func_names[i].name, name, n) == 0)
            return (int)k_func_names[i].id;
    return -1;
}

/* ---------------------------------------------------------------- tokens */

typedef enum tok_kind {
    T_EOF, T_IDENT, T_QIDENT, T_INT, T_FLOAT, T_STRING, T_LPAREN, T_RPAREN, T_COMMA,
    T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_CONCAT,
} tok_kind_t;

typedef enum kw {
    KW_NONE, KW_AND, KW_OR, KW_NOT, KW_IS, KW_NULL, KW_IN, KW_LIKE, KW_CASE, KW_WHEN,
    KW_THEN, KW_ELSE, KW_END, KW_TRUE, KW_FALSE, KW_CAST, KW_AS, KW_BETWEEN,
} kw_t;

static const char *const k_keywords[] = {
    [KW_AND] = "AND", [KW_OR] = "OR", [KW_NOT] = "NOT", [KW_IS] = "IS", [KW_NULL] = "NULL",
    [KW_IN] = "IN", [KW_LIKE] = "LIKE", [KW_CASE] = "CASE", [KW_WHEN] = "WHEN",
    [KW_THEN] = "THEN", [KW_ELSE] = "ELSE", [KW_END] = "END", [KW_TRUE] = "TRUE",
    [KW_FALSE] = "FALSE", [KW_CAST] = "CAST", [KW_AS] = "AS", [KW_BETWEEN] = "BETWEEN",
};

typedef struct tok {
    tok_kind_t kind;
    kw_t kw;            /* for T_IDENT spelled as a keyword */
    size_t pos, end;    /* byte range in the source */
    const char *s;      /* T_STRING / T_QIDENT / T_IDENT: unescaped text, NUL-terminated (arena) */
    size_t n;
    int64_t l;
    double d;
    int int_overflow;   /* T_INT that does not fit a long: d holds its value */
} tok_t;

typedef struct parser {
    const char *src;
    size_t len;
    size_t pos;         /* lexer position */
    tok_t tok;          /* current token */
    tsr_arena_t *arena;
    tsr_error_t *err;
    int rc;             /* first error code, 0 while fine */
    int depth;
} parser_t;

/* Code points in src[from..to), for columns and caret alignment. */
static size_t cp_count(const char *s, size_t from, size_t to) {
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

/* Renders "syntax error at column N: what" + source line + caret line into err. */
static int syntax_error(parser_t *ps, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int syntax_error(parser_t *ps, size_t at, const char *fmt, ...) {
    if (ps->rc) return ps->rc;
    ps->rc = TSR_EPARSE;
    if (!ps->err) return ps->rc;
    if (at > ps->len) at = ps->len;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* A window of at most ~100 bytes around the position, on UTF-8 boundaries. */
    size_t from = 0, to = ps->len;
    if (ps->len > 100) {
        from = at > 50 ? at - 50 : 0;
        while (from > 0 && ((unsigned char)ps->src[from] & 0xC0) == 0x80) from--;
        to = from + 100 < ps->len ? from + 100 : ps->len;
        while (to < ps->len && ((unsigned char)ps->src[to] & 0xC0) == 0x80) to++;
    }
    char line[512];
    size_t o = 0;
    if (from > 0) { memcpy(line, "...", 3); o = 3; }
    for (size_t i = from; i < to && o < sizeof line - 8; i++) {
        unsigned char c = (unsigned char)ps->src[i];
        line[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;   /* keep the caret aligned */
    }
    if (to < ps->len) { memcpy(line + o, "...", 3); o += 3; }
    line[o] = 0;
    size_t spaces = (from > 0 ? 3 : 0) + cp_count(ps->src, from, at);
    char caret[160];
    if (spaces > sizeof caret - 2) spaces = sizeof caret - 2;
    memset(caret, ' ', spaces);
    caret[spaces] = '^';
    caret[spaces + 1] = 0;
    tsr_error_set(ps->err, TSR_EPARSE, "syntax error at column %zu: %s\n  %s\n  %s",
                  cp_count(ps->src, 0, at) + 1, what, line, caret);
    return ps->rc;
}

static kw_t keyword_of(const char *s, size_t n) {
    for (size_t k = 1; k < sizeof k_keywords / sizeof k_keywords[0]; k++)
        if (strlen(k_keywords[k]) == n && strncasecmp(k_keywords[k], s, n) == 0) return (kw_t)k;
    return KW_NONE;
}

/* Reads a quoted run closed by q, where a doubled q stands for one q. */
static int lex_quoted(parser_t *ps, char q, tok_t *t) {
    size_t start = ps->pos;
    size_t i = start + 1;
    /* size the copy by the closing quote, so many literals cost linear memory */
    size_t close = i;
    while (close < ps->len && !(ps->src[close] == q && (close + 1 >= ps->len || ps->src[close + 1] != q)))
        close += ps->src[close] == q ? 2 : 1;
    char *out = tsr_arena_alloc(ps->arena, close - start + 1);
    size_t n = 0;
    for (;;) {
        if (i >= ps->len) {
            return syntax_error(ps, start, q == '`' ? "unterminated quoted identifier"
                                                    : "unterminated string literal");
        }
        if (ps->src[i] == q) {
            if (i + 1 < ps->len && ps->src[i + 1] == q) {
                out[n++] = q;
                i += 2;
                continue;
            }
            i++;
            break;
        }
        out[n++] = ps->src[i++];
    }
    out[n] = 0;
    t->s = out;
    t->n = n;
    ps->pos = i;
    return 0;
}

static int lex_number(parser_t *ps, tok_t *t) {
    size_t i = ps->pos;
    int is_float = 0;
    while (i < ps->len && isdigit((unsigned char)ps->src[i])) i++;
    if (i < ps->len && ps->src[i] == '.') {
        is_float = 1;
        i++;
        while (i < ps->len && isdigit((unsigned char)ps->src[i])) i++;
    }
    if (i < ps->len && (ps->src[i] == 'e' || ps->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < ps->len && (ps->src[j] == '+' || ps->src[j] == '-')) j++;
        if (j < ps->len && isdigit((unsigned char)ps->src[j])) {
            is_float = 1;
            while (j < ps->len && isdigit((unsigned char)ps->src[j])) j++;
            i = j;
        } else {
            return syntax_error(ps, i, "malformed number exponent");
        }
    }
    if (i < ps->len && (isalpha((unsigned char)ps->src[i]) || ps->src[i] == '_'))
        return syntax_error(ps, i, "unexpected character '%c' after number", ps->src[i]);
    char buf[128];
    size_t n = i - ps->pos;
    if (n >= sizeof buf) return syntax_error(ps, ps->pos, "number literal too long");
    memcpy(buf, ps->src + ps->pos, n);
    buf[n] = 0;
    t->d = strtod(buf, NULL);
    if (!is_float) {
        /* decimal digits only: accumulate with an overflow check */
        uint64_t v = 0;
        int over = 0;
        for (size_t k = 0; k < n; k++) {
            unsigned dg = (unsigned)(buf[k] - '0');
            if (v > (UINT64_MAX - dg) / 10) { over = 1; break; }
            v = v * 10 + dg;
        }
        if (over || v > (uint64_t)INT64_MAX) {
            t->int_overflow = 1;
            /* 2^63 is kept exact for the `-9223372036854775808` case */
            t->l = (!over && v == (uint64_t)INT64_MAX + 1) ? INT64_MIN : 0;
        } else {
            t->l = (int64_t)v;
        }
    }
    t->kind = is_float ? T_FLOAT : T_INT;
    ps->pos = i;
    return 0;
}

/* Advances to the next token. */
static int lex(parser_t *ps) {
    tok_t *t = &ps->tok;
    memset(t, 0, sizeof *t);
    while (ps->pos < ps->len && isspace((unsigned char)ps->src[ps->pos])) ps->pos++;
    t->pos = ps->pos;
    if (ps->pos >= ps->len) {
        t->kind = T_EOF;
        t->end = ps->pos;
        return 0;
    }
    const char *s = ps->src;
    size_t i = ps->pos;
    char c = s[i];
    char c2 = i + 1 < ps->len ? s[i + 1] : 0;
    int rc = 0;
    if (isalpha((unsigned char)c) || c == '_') {
        size_t j = i;
        while (j < ps->len && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
        t->kind = T_IDENT;
        t->n = j - i;
        t->s = tsr_arena_strndup(ps->arena, s + i, t->n);
        t->kw = keyword_of(s + i, t->n);
        ps->pos = j;
    } else if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)c2))) {
        rc = lex_number(ps, t);
    } else if (c == '\'' || c == '"') {
        t->kind = T_STRING;
        rc = lex_quoted(ps, c, t);
    } else if (c == '`') {
        t->kind = T_QIDENT;
        rc = lex_quoted(ps, c, t);
        if (!rc && t->n == 0) rc = syntax_error(ps, i, "empty quoted identifier");
    } else {
        ps->pos = i + 1;
        switch (c) {
        case '(': t->kind = T_LPAREN; break;
        case ')': t->kind = T_RPAREN; break;
        case ',': t->kind = T_COMMA; break;
        case '+': t->kind = T_PLUS; break;
        case '-': t->kind = T_MINUS; break;
        case '*': t->kind = T_STAR; break;
        case '/': t->kind = T_SLASH; break;
        case '%': t->kind = T_PERCENT; break;
        case '=':
            t->kind = T_EQ;
            if (c2 == '=') ps->pos++;
            break;
        case '!':
            if (c2 != '=') return syntax_error(ps, i, "unexpected character '!'");
            t->kind = T_NE;
            ps->pos++;
            break;
        case '<':
            if (c2 == '=') { t->kind = T_LE; ps->pos++; }
            else if (c2 == '>') { t->kind = T_NE; ps->pos++; }
            else t->kind = T_LT;
            break;
        case '>':
            if (c2 == '=') { t->kind = T_GE; ps->pos++; }
            else t->kind = T_GT;
            break;
        case '|':
            if (c2 != '|') return syntax_error(ps, i, "unexpected character '|'");
            t->kind = T_CONCAT;
            ps->pos++;
            break;
        default:
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                return syntax_error(ps, i, "unexpected character '%c'", c);
            return syntax_error(ps, i, "unexpected byte 0x%02x", (unsigned char)c);
        }
    }
    t->end = ps->pos;
    return rc;
}

static const char *tok_desc(const tok_t *t, char *buf, size_t n) {
    switch (t->kind) {
    case T_EOF: return "end of input";
    case T_IDENT: snprintf(buf, n, "'%.40s'", t->s); return buf;
    case T_QIDENT: return "quoted identifier";
    case T_INT: case T_FLOAT: return "number";
    case T_STRING: return "string literal";
    case T_LPAREN: return "'('";
    case T_RPAREN: return "')'";
    case T_COMMA: return "','";
    default: return "operator";
    }
}

static int is_kw(const parser_t *ps, kw_t k) { return ps->tok.kind == T_IDENT && ps->tok.kw == k; }

static int expect(parser_t *ps, tok_kind_t k, const char *what) {
    if (ps->tok.kind != k) {
        char b[64];
        return syntax_error(ps, ps->tok.pos, "expected %s, got %s", what, tok_desc(&ps->tok, b, sizeof b));
    }
    return lex(ps);
}

static int expect_kw(parser_t *ps, kw_t k) {
    if (!is_kw(ps, k)) {
        char b[64];
        return syntax_error(ps, ps->tok.pos, "expected %s, got %s", k_keywords[k],
                            tok_desc(&ps->tok, b, sizeof b));
    }
    return lex(ps);
}

/* ---------------------------------------------------------------- AST building */

static tsr_expr_ast_t *node(parser_t *ps, tsr__node_kind_t kind, size_t pos, size_t nargs) {
    tsr_expr_ast_t *n = tsr_arena_calloc(ps->arena, sizeof *n);
    n->kind = kind;
    n->pos = (uint32_t)pos;
    n->nargs = nargs;
    if (nargs) n->args = tsr_arena_calloc(ps->arena, nargs * sizeof *n->args);
    return n;
}

/* A growable argument list in the arena (old copies are simply abandoned). */
typedef struct vec {
    tsr_expr_ast_t **v;
    size_t n, cap;
} vec_t;

static void vec_push(parser_t *ps, vec_t *a, tsr_expr_ast_t *x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        tsr_expr_ast_t **v = tsr_arena_alloc(ps->arena, cap * sizeof *v);
        if (a->n) memcpy(v, a->v, a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static tsr_expr_ast_t *from_vec(parser_t *ps, tsr__node_kind_t kind, size_t pos, vec_t *a) {
    tsr_expr_ast_t *n = node(ps, kind, pos, 0);
    n->args = a->v;
    n->nargs = a->n;
    return n;
}

static tsr_expr_ast_t *binary(parser_t *ps, int op, size_t pos, tsr_expr_ast_t *l, tsr_expr_ast_t *r) {
    tsr_expr_ast_t *n = node(ps, TSR__N_BINARY, pos, 2);
    n->op = op;
    n->args[0] = l;
    n->args[1] = r;
    return n;
}

static tsr_expr_ast_t *parse_expr(parser_t *ps);
static tsr_expr_ast_t *parse_add(parser_t *ps);
static tsr_expr_ast_t *parse_unary(parser_t *ps);

static tsr_expr_ast_t *parse_case(parser_t *ps) {
    size_t pos = ps->tok.pos;
    if (lex(ps)) return NULL;
    vec_t a = {0};
    tsr_expr_ast_t *n;
    int has_operand = 0;
    if (!is_kw(ps, KW_WHEN)) {
        tsr_expr_ast_t *x = parse_expr(ps);
        if (!x) return NULL;
        vec_push(ps, &a, x);
        has_operand = 1;
    }
    if (!is_kw(ps, KW_WHEN)) {
        expect_kw(ps, KW_WHEN);
        return NULL;
    }
    while (is_kw(ps, KW_WHEN)) {
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *w = parse_expr(ps);
        if (!w || expect_kw(ps, KW_THEN)) return NULL;
        tsr_expr_ast_t *t = parse_expr(ps);
        if (!t) return NULL;
        vec_push(ps, &a, w);
        vec_push(ps, &a, t);
    }
    int has_else = 0;
    if (is_kw(ps, KW_ELSE)) {
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *e = parse_expr(ps);
        if (!e) return NULL;
        vec_push(ps, &a, e);
        has_else = 1;
    }
    if (!is_kw(ps, KW_END)) {
        char b[64];
        syntax_error(ps, ps->tok.pos, "expected WHEN, ELSE or END, got %s", tok_desc(&ps->tok, b, sizeof b));
        return NULL;
    }
    if (lex(ps)) return NULL;
    n = from_vec(ps, TSR__N_CASE, pos, &a);
    n->has_operand = (uint8_t)has_operand;
    n->has_else = (uint8_t)has_else;
    return n;
}

/* CAST(x AS type): the type text runs to the ')' that closes the CAST. */
static tsr_expr_ast_t *parse_cast(parser_t *ps) {
    size_t pos = ps->tok.pos;
    if (lex(ps) || expect(ps, T_LPAREN, "'(' after CAST")) return NULL;
    tsr_expr_ast_t *x = parse_expr(ps);
    if (!x) return NULL;
    if (!is_kw(ps, KW_AS)) {
        expect_kw(ps, KW_AS);
        return NULL;
    }
    size_t tstart = ps->tok.end, i = tstart;
    int depth = 0;
    while (i < ps->len && !(ps->src[i] == ')' && depth == 0)) {
        if (ps->src[i] == '(') depth++;
        if (ps->src[i] == ')') depth--;
        i++;
    }
    if (i >= ps->len) {
        syntax_error(ps, ps->len, "expected ')' to close CAST");
        return NULL;
    }
    while (tstart < i && isspace((unsigned char)ps->src[tstart])) tstart++;
    char *text = tsr_arena_strndup(ps->arena, ps->src + tstart, i - tstart);
    tsr_type_t t;
    if (tsr_type_parse(text, &t) != 0) {
        /* DECIMAL(10,2) and VARCHAR(20): the precision does not matter to us */
        char *paren = strchr(text, '(');
        if (paren) *paren = 0;
        if (!paren || tsr_type_parse(text, &t) != 0 || !tsr_type_is_scalar(t)) {
            if (paren) *paren = '(';
            syntax_error(ps, tstart, "unknown type '%.60s' in CAST", text);
            return NULL;
        }
    }
    ps->pos = i + 1;
    if (lex(ps)) return NULL;
    tsr_expr_ast_t *n = node(ps, TSR__N_CAST, pos, 1);
    n->args[0] = x;
    n->cast_type = t;
    return n;
}

static tsr_expr_ast_t *parse_call(parser_t *ps, const tok_t *name) {
    int fid = tsr__func_lookup(name->s, name->n);
    if (fid < 0) {
        if (!ps->rc) {
            ps->rc = TSR_ECONFIG;
            tsr_error_set(ps->err, TSR_ECONFIG, "unknown function '%.60s' (at column %zu)", name->s,
                          cp_count(ps->src, 0, name->pos) + 1);
        }
        return NULL;
    }
    if (lex(ps)) return NULL;   /* the '(' */
    vec_t a = {0};
    if (ps->tok.kind != T_RPAREN) {
        for (;;) {
            tsr_expr_ast_t *x = parse_expr(ps);
            if (!x) return NULL;
            vec_push(ps, &a, x);
            if (ps->tok.kind == T_COMMA) {
                if (lex(ps)) return NULL;
                continue;
            }
            if (ps->tok.kind != T_RPAREN) {
                char b[64];
                syntax_error(ps, ps->tok.pos, "expected ',' or ')' in call to %s, got %s",
                             tsr__func_name((tsr__func_id_t)fid), tok_desc(&ps->tok, b, sizeof b));
                return NULL;
            }
            break;
        }
    }
    if (lex(ps)) return NULL;
    int mn, mx;
    tsr__func_arity((tsr__func_id_t)fid, &mn, &mx);
    if ((int)a.n < mn || (mx >= 0 && (int)a.n > mx)) {
        const char *fn = tsr__func_name((tsr__func_id_t)fid);
        char want[48];
        if (mx < 0) snprintf(want, sizeof want, "at least %d argument%s", mn, mn == 1 ? "" : "s");
        else if (mn == mx) snprintf(want, sizeof want, "%d argument%s", mn, mn == 1 ? "" : "s");
        else if (mx == mn + 1) snprintf(want, sizeof want, "%d or %d arguments", mn, mx);
        else snprintf(want, sizeof want, "%d to %d arguments", mn, mx);
        ps->rc = TSR_ECONFIG;
        tsr_error_set(ps->err, TSR_ECONFIG, "%s expects %s, got %zu (at column %zu)", fn, want, a.n,
                      cp_count(ps->src, 0, name->pos) + 1);
        return NULL;
    }
    tsr_expr_ast_t *n = from_vec(ps, TSR__N_CALL, name->pos, &a);
    n->op = fid;
    return n;
}

static tsr_expr_ast_t *parse_primary(parser_t *ps) {
    tok_t t = ps->tok;
    tsr_expr_ast_t *n;
    char b[64];
    switch (t.kind) {
    case T_INT:
        if (lex(ps)) return NULL;
        if (t.int_overflow) {
            n = node(ps, TSR__N_DOUBLE, t.pos, 0);
            n->v.d = t.d;
        } else {
            n = node(ps, TSR__N_LONG, t.pos, 0);
            n->v.l = t.l;
        }
        return n;
    case T_FLOAT:
        if (lex(ps)) return NULL;
        n = node(ps, TSR__N_DOUBLE, t.pos, 0);
        n->v.d = t.d;
        return n;
    case T_STRING:
        if (lex(ps)) return NULL;
        n = node(ps, TSR__N_STRING, t.pos, 0);
        n->v.str.s = t.s;
        n->v.str.n = t.n;
        return n;
    case T_QIDENT:
        if (lex(ps)) return NULL;
        n = node(ps, TSR__N_COLUMN, t.pos, 0);
        n->v.str.s = t.s;
        n->v.str.n = t.n;
        return n;
    case T_LPAREN: {
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *x = parse_expr(ps);
        if (!x) return NULL;
        if (ps->tok.kind != T_RPAREN) {
            syntax_error(ps, ps->tok.pos, "expected ')' to close the '(' at column %zu, got %s",
                         cp_count(ps->src, 0, t.pos) + 1, tok_desc(&ps->tok, b, sizeof b));
            return NULL;
        }
        if (lex(ps)) return NULL;
        return x;
    }
    case T_IDENT:
        switch (t.kw) {
        case KW_NULL:
            if (lex(ps)) return NULL;
            return node(ps, TSR__N_NULL, t.pos, 0);
        case KW_TRUE:
        case KW_FALSE:
            if (lex(ps)) return NULL;
            n = node(ps, TSR__N_BOOL, t.pos, 0);
            n->v.b = t.kw == KW_TRUE;
            return n;
        case KW_CASE: return parse_case(ps);
        case KW_CAST: return parse_cast(ps);
        case KW_NONE: break;
        default:
            syntax_error(ps, t.pos, "unexpected keyword %s (quote a column of that name with backticks)",
                         k_keywords[t.kw]);
            return NULL;
        }
        if (lex(ps)) return NULL;
        if (ps->tok.kind == T_LPAREN) return parse_call(ps, &t);
        n = node(ps, TSR__N_COLUMN, t.pos, 0);
        n->v.str.s = t.s;
        n->v.str.n = t.n;
        return n;
    default:
        syntax_error(ps, t.pos, "expected an expression, got %s", tok_desc(&t, b, sizeof b));
        return NULL;
    }
}

static tsr_expr_ast_t *parse_unary(parser_t *ps) {
    if (ps->tok.kind == T_MINUS || ps->tok.kind == T_PLUS) {
        tok_t t = ps->tok;
        if (++ps->depth > TSR__MAX_DEPTH) {
            syntax_error(ps, t.pos, "expression nested too deeply");
            return NULL;
        }
        if (lex(ps)) return NULL;
        /* -9223372036854775808 is a long, as in Spark */
        if (t.kind == T_MINUS && ps->tok.kind == T_INT && ps->tok.int_overflow && ps->tok.l == INT64_MIN) {
            if (lex(ps)) return NULL;
            tsr_expr_ast_t *n = node(ps, TSR__N_LONG, t.pos, 0);
            n->v.l = INT64_MIN;
            ps->depth--;
            return n;
        }
        tsr_expr_ast_t *x = parse_unary(ps);
        ps->depth--;
        if (!x) return NULL;
        if (t.kind == T_PLUS) return x;
        tsr_expr_ast_t *n = node(ps, TSR__N_UNARY, t.pos, 1);
        n->op = TSR__OP_NEG;
        n->args[0] = x;
        return n;
    }
    return parse_primary(ps);
}

static tsr_expr_ast_t *parse_mul(parser_t *ps) {
    tsr_expr_ast_t *l = parse_unary(ps);
    while (l) {
        int op;
        switch (ps->tok.kind) {
        case T_STAR: op = TSR__OP_MUL; break;
        case T_SLASH: op = TSR__OP_DIV; break;
        case T_PERCENT: op = TSR__OP_MOD; break;
        default: return l;
        }
        size_t pos = ps->tok.pos;
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *r = parse_unary(ps);
        if (!r) return NULL;
        l = binary(ps, op, pos, l, r);
    }
    return l;
}

static tsr_expr_ast_t *parse_add(parser_t *ps) {
    tsr_expr_ast_t *l = parse_mul(ps);
    while (l) {
        int op;
        switch (ps->tok.kind) {
        case T_PLUS: op = TSR__OP_ADD; break;
        case T_MINUS: op = TSR__OP_SUB; break;
        case T_CONCAT: op = TSR__OP_CONCAT; break;
        default: return l;
        }
        size_t pos = ps->tok.pos;
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *r = parse_mul(ps);
        if (!r) return NULL;
        l = binary(ps, op, pos, l, r);
    }
    return l;
}

static tsr_expr_ast_t *parse_pred(parser_t *ps) {
    tsr_expr_ast_t *l = parse_add(ps);
    while (l) {
        size_t pos = ps->tok.pos;
        int op = -1;
        switch (ps->tok.kind) {
        case T_EQ: op = TSR__OP_EQ; break;
        case T_NE: op = TSR__OP_NE; break;
        case T_LT: op = TSR__OP_LT; break;
        case T_LE: op = TSR__OP_LE; break;
        case T_GT: op = TSR__OP_GT; break;
        case T_GE: op = TSR__OP_GE; break;
        default: break;
        }
        if (op >= 0) {
            if (lex(ps)) return NULL;
            tsr_expr_ast_t *r = parse_add(ps);
            if (!r) return NULL;
            l = binary(ps, op, pos, l, r);
            continue;
        }
        if (is_kw(ps, KW_IS)) {
            if (lex(ps)) return NULL;
            int neg = 0;
            if (is_kw(ps, KW_NOT)) {
                neg = 1;
                if (lex(ps)) return NULL;
            }
            if (expect_kw(ps, KW_NULL)) return NULL;
            tsr_expr_ast_t *n = node(ps, TSR__N_ISNULL, pos, 1);
            n->args[0] = l;
            n->negated = (uint8_t)neg;
            l = n;
            continue;
        }
        int neg = 0;
        if (is_kw(ps, KW_NOT)) {
            neg = 1;
            if (lex(ps)) return NULL;
            if (!is_kw(ps, KW_IN) && !is_kw(ps, KW_LIKE) && !is_kw(ps, KW_BETWEEN)) {
                char b[64];
                syntax_error(ps, ps->tok.pos, "expected IN, LIKE or BETWEEN after NOT, got %s",
                             tok_desc(&ps->tok, b, sizeof b));
                return NULL;
            }
        }
        if (is_kw(ps, KW_IN)) {
            if (lex(ps) || expect(ps, T_LPAREN, "'(' after IN")) return NULL;
            vec_t a = {0};
            vec_push(ps, &a, l);
            for (;;) {
                tsr_expr_ast_t *x = parse_expr(ps);
                if (!x) return NULL;
                vec_push(ps, &a, x);
                if (ps->tok.kind == T_COMMA) {
                    if (lex(ps)) return NULL;
                    continue;
                }
                if (expect(ps, T_RPAREN, "',' or ')' in IN list")) return NULL;
                break;
            }
            l = from_vec(ps, TSR__N_IN, pos, &a);
            l->negated = (uint8_t)neg;
        } else if (is_kw(ps, KW_LIKE)) {
            if (lex(ps)) return NULL;
            tsr_expr_ast_t *r = parse_add(ps);
            if (!r) return NULL;
            tsr_expr_ast_t *n = node(ps, TSR__N_LIKE, pos, 2);
            n->args[0] = l;
            n->args[1] = r;
            n->negated = (uint8_t)neg;
            l = n;
        } else if (is_kw(ps, KW_BETWEEN)) {
            if (lex(ps)) return NULL;
            tsr_expr_ast_t *lo = parse_add(ps);
            if (!lo || expect_kw(ps, KW_AND)) return NULL;
            tsr_expr_ast_t *hi = parse_add(ps);
            if (!hi) return NULL;
            tsr_expr_ast_t *n = node(ps, TSR__N_BETWEEN, pos, 3);
            n->args[0] = l;
            n->args[1] = lo;
            n->args[2] = hi;
            n->negated = (uint8_t)neg;
            l = n;
        } else {
            return l;
        }
    }
    return l;
}

static tsr_expr_ast_t *parse_not(parser_t *ps) {
    if (is_kw(ps, KW_NOT)) {
        size_t pos = ps->tok.pos;
        if (++ps->depth > TSR__MAX_DEPTH) {
            syntax_error(ps, pos, "expression nested too deeply");
            return NULL;
        }
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *x = parse_not(ps);
        ps->depth--;
        if (!x) return NULL;
        tsr_expr_ast_t *n = node(ps, TSR__N_UNARY, pos, 1);
        n->op = TSR__OP_NOT;
        n->args[0] = x;
        return n;
    }
    return parse_pred(ps);
}

static tsr_expr_ast_t *parse_and(parser_t *ps) {
    tsr_expr_ast_t *l = parse_not(ps);
    while (l && is_kw(ps, KW_AND)) {
        size_t pos = ps->tok.pos;
        if (lex(ps)) return NULL;
        tsr_expr_ast_t *r = parse_not(ps);
        if (!r) return NULL;
        l = binary(ps, TSR__OP_AND, pos, l, r);
    }
    return l;
}

static tsr_expr_ast_t *parse_expr(parser_t *ps) {
    if (++ps->depth > TSR__MAX_DEPTH) {
        syntax_error(ps, ps->tok.pos, "expression nested too deeply");
        return NULL;
    }
    tsr_expr_ast_t *l = parse_and(ps);
    while (l && is_kw(ps, KW_OR)) {
        size_t pos = ps->tok.pos;
        if (lex(ps)) { l = NULL; break; }
        tsr_expr_ast_t *r = parse_and(ps);
        if (!r) { l = NULL; break; }
        l = binary(ps, TSR__OP_OR, pos, l, r);
    }
    ps->depth--;
    return l;
}

/* The AST's height, walked with an explicit stack: left-deep chains such as 1+1+...+1 are
 * built by loops, not recursion, so the parser's depth counter does not bound them, while the
 * compiler recurses over the tree. Returns the first node found deeper than TSR__MAX_HEIGHT,
 * or NULL. */
#define TSR__MAX_HEIGHT 1000
static const tsr_expr_ast_t *too_deep(const tsr_expr_ast_t *root) {
    typedef struct { const tsr_expr_ast_t *n; size_t depth; } item_t;
    size_t cap = 64, top = 0;
    item_t *st = tsr_malloc(cap * sizeof *st);
    const tsr_expr_ast_t *bad = NULL;
    st[top++] = (item_t){root, 1};
    while (top && !bad) {
        item_t it = st[--top];
        if (it.depth > TSR__MAX_HEIGHT) {
            bad = it.n;
            break;
        }
        for (size_t i = 0; i < it.n->nargs; i++) {
            if (top == cap) {
                cap *= 2;
                st = tsr_realloc(st, cap * sizeof *st);
            }
            st[top++] = (item_t){it.n->args[i], it.depth + 1};
        }
    }
    free(st);
    return bad;
}

int tsr_expr_parse(const char *src, tsr_arena_t *arena, tsr_expr_ast_t **out, tsr_error_t *err) {
    parser_t ps = {.src = src ? src : "", .arena = arena, .err = err};
    ps.len = strlen(ps.src);
    *out = NULL;
    if (lex(&ps)) return ps.rc;
    if (ps.tok.kind == T_EOF) return syntax_error(&ps, ps.tok.pos, "empty expression");
    tsr_expr_ast_t *ast = parse_expr(&ps);
    if (!ast) return ps.rc ? ps.rc : syntax_error(&ps, ps.tok.pos, "invalid expression");
    if (ps.tok.kind != T_EOF) {
        char b[64];
        return syntax_error(&ps, ps.tok.pos, "unexpected %s after the expression",
                            tok_desc(&ps.tok, b, sizeof b));
    }
    const tsr_expr_ast_t *deep = too_deep(ast);
    if (deep)
        return syntax_error(&ps, deep->pos, "expression too deeply nested (more than %d levels)",
                            TSR__MAX_HEIGHT);
    *out = ast;
    return 0;
}

/* ---------------------------------------------------------------- AST queries */

typedef struct seen {
    const char **names;
    size_t n, cap;
} seen_t;

static void columns_walk(const tsr_expr_ast_t *a, seen_t *seen, tsr_expr_column_cb cb, void *ud) {
    if (a->kind == TSR__N_COLUMN) {
        for (size_t i = 0; i < seen->n; i++)
            if (strcmp(seen->names[i], a->v.str.s) == 0) return;
        if (seen->n == seen->cap) {
            seen->cap = seen->cap ? seen->cap * 2 : 8;
            seen->names = tsr_realloc(seen->names, seen->cap * sizeof *seen->names);
        }
        seen->names[seen->n++] = a->v.str.s;
        cb(ud, a->v.str.s);
        return;
    }
    for (size_t i = 0; i < a->nargs; i++) columns_walk(a->args[i], seen, cb, ud);
}

void tsr_expr_columns(const tsr_expr_ast_t *ast, tsr_expr_column_cb cb, void *ud) {
    if (!ast) return;
    seen_t seen = {0};
    columns_walk(ast, &seen, cb, ud);
    free(seen.names);
}

int tsr_expr_is_column(const tsr_expr_ast_t *ast, const char **name) {
    if (!ast || ast->kind != TSR__N_COLUMN) return 0;
    if (name) *name = ast->v.str.s;
    return 1;
}
