/*
 * expr_compile.c — type checker and code generator: AST -> flat register bytecode.
 *
 * Design: one pass over the AST. Each node compiles to an operand (a register, or a column of
 * the input row read in place) and a static type. Literals become constant registers that the
 * VM loads once. Arithmetic and comparisons are specialized on the static types (ADD_LL,
 * LT_DD, EQ_SS, ...) with long operands converted to double where the other side is double
 * (constants are converted here, at compile time). An operand of type TSR_ANY selects the
 * generic instructions, which decide by the run-time kinds.
 *
 * Branches (CASE, IF, COALESCE) write one result register. Their common type is known only
 * after every branch is compiled, so each branch ends in a MOVE that is patched into CVT_L2D
 * (or a JNN with its convert flag) once the branches' types are unified to double.
 *
 * Invariants: registers are never reused (every node gets fresh ones), so a value computed in
 * one branch can never clobber another; a failed tsr_program_add truncates code and registers
 * back to where they were, leaving the program as before.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

typedef struct comp {
    tsr_program_t *p;
    tsr_error_t *err;
    int rc;
} comp_t;

typedef struct res {
    uint32_t o;         /* operand */
    tsr_type_t t;
} res_t;

/* ---------------------------------------------------------------- schema and program */

int tsr_schema_find(const tsr_schema_t *s, const char *name) {
    if (!s || !name) return -1;
    for (size_t i = 0; i < s->n; i++)
        if (s->names[i] && strcmp(s->names[i], name) == 0) return (int)i;
    return -1;
}

tsr_program_t *tsr_program_new(const tsr_schema_t *input) {
    tsr_program_t *p = tsr_calloc(1, sizeof *p);
    size_t n = input ? input->n : 0;
    p->ncols = n;
    p->col_names = tsr_calloc(n ? n : 1, sizeof *p->col_names);
    p->col_name_ptrs = tsr_calloc(n ? n : 1, sizeof *p->col_name_ptrs);
    p->col_types = tsr_calloc(n ? n : 1, sizeof *p->col_types);
    for (size_t i = 0; i < n; i++) {
        p->col_names[i] = tsr_strdup(input->names[i] ? input->names[i] : "");
        p->col_name_ptrs[i] = p->col_names[i];
        p->col_types[i] = input->types[i];
    }
    p->schema.n = n;
    p->schema.names = p->col_name_ptrs;
    p->schema.types = p->col_types;
    tsr_arena_init(&p->arena, 4096);
    return p;
}

void tsr_program_free(tsr_program_t *p) {
    if (!p) return;
    for (size_t i = 0; i < p->ncols; i++) free(p->col_names[i]);
    free(p->col_names);
    free(p->col_name_ptrs);
    free(p->col_types);
    free(p->code);
    free(p->init);
    free(p->is_const);
    free(p->outputs);
    tsr_arena_free(&p->arena);
    free(p);
}

size_t tsr_program_noutputs(const tsr_program_t *p) { return p->nout; }

tsr_type_t tsr_program_output_type(const tsr_program_t *p, size_t i) {
    return i < p->nout ? p->outputs[i].type : TSR_NULL;
}

/* ---------------------------------------------------------------- emit helpers */

static uint32_t new_regs(comp_t *c, size_t k) {
    tsr_program_t *p = c->p;
    if (p->nregs + k > p->capregs) {
        size_t cap = p->capregs ? p->capregs : 16;
        while (cap < p->nregs + k) cap *= 2;
        p->init = tsr_realloc(p->init, cap * sizeof *p->init);
        p->is_const = tsr_realloc(p->is_const, cap);
        p->capregs = cap;
    }
    uint32_t r = (uint32_t)p->nregs;
    for (size_t i = 0; i < k; i++) {
        p->init[r + i] = tsr_value_null();
        p->is_const[r + i] = 0;
    }
    p->nregs += k;
    return r;
}

static uint32_t const_reg(comp_t *c, tsr_value_t v) {
    uint32_t r = new_regs(c, 1);
    c->p->init[r] = v;
    c->p->is_const[r] = 1;
    return r;
}

static int is_const(comp_t *c, uint32_t o) { return !(o & TSR__COL) && c->p->is_const[o]; }

static uint32_t emit(comp_t *c, int op, int aux, uint32_t dst, uint32_t a, uint32_t b, uint32_t cc) {
    tsr_program_t *p = c->p;
    if (p->ncode == p->capcode) {
        p->capcode = p->capcode ? p->capcode * 2 : 64;
        p->code = tsr_realloc(p->code, p->capcode * sizeof *p->code);
    }
    tsr__insn_t *in = &p->code[p->ncode];
    in->op = (uint16_t)op;
    in->aux = (uint16_t)aux;
    in->dst = dst;
    in->a = a;
    in->b = b;
    in->c = cc;
    return (uint32_t)p->ncode++;
}

static const char *tname(tsr_type_t t, char *buf) {
    if (t == TSR_NULL) return "null";
    if (t == TSR_ANY) return "any";
    return tsr_type_name(t, buf, TSR_TYPE_NAME_MAX);
}

static int type_error(comp_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int type_error(comp_t *c, const char *fmt, ...) {
    if (c->rc) return c->rc;
    c->rc = TSR_ETYPE;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tsr_error_set(c->err, TSR_ETYPE, "%s", msg);
    return c->rc;
}

/* Converts a long operand to double: constants now, others with CVT_L2D. */
static uint32_t to_double(comp_t *c, uint32_t o, tsr_type_t t) {
    if (t != TSR_LONG) return o;
    if (is_const(c, o)) {
        tsr_value_t v = c->p->init[o];
        return const_reg(c, v.kind == TSR_LONG ? tsr_value_double((double)v.u.l) : v);
    }
    uint32_t r = new_regs(c, 1);
    emit(c, TSR__I_CVT_L2D, 0, r, o, 0, 0);
    return r;
}

/* The common type of two branches, or -1 when they have none. */
static int unify(tsr_type_t a, tsr_type_t b, tsr_type_t *out) {
    if (a == TSR_NULL) { *out = b; return 0; }
    if (b == TSR_NULL || a == b) { *out = a; return 0; }
    if (a == TSR_ANY || b == TSR_ANY) { *out = TSR_ANY; return 0; }
    if (tsr_type_is_numeric(a) && tsr_type_is_numeric(b)) { *out = TSR_DOUBLE; return 0; }
    return -1;
}

/* Kind masks for argument checks. */
enum { M_BOOL = 1 << TSR_BOOL, M_LONG = 1 << TSR_LONG, M_DOUBLE = 1 << TSR_DOUBLE,
       M_STRING = 1 << TSR_STRING, M_NUM = M_LONG | M_DOUBLE,
       M_SCALAR = M_BOOL | M_NUM | M_STRING };

static int fits(tsr_type_t t, int mask) {
    if (t == TSR_NULL || t == TSR_ANY) return 1;
    if (tsr_type_kind(t) == TSR_LIST || tsr_type_kind(t) == TSR_MAP) return 0;
    return (mask >> t) & 1;
}

static const char *mask_desc(int mask) {
    switch (mask) {
    case M_BOOL: return "a boolean";
    case M_LONG: return "a long";
    case M_NUM: return "a number";
    case M_STRING: return "a string";
    case M_STRING | M_LONG: return "a string or a long";
    default: return "a scalar";
    }
}

static const char *opname(int op) {
    static const char *const k[] = {
        [TSR__OP_ADD] = "+", [TSR__OP_SUB] = "-", [TSR__OP_MUL] = "*", [TSR__OP_DIV] = "/",
        [TSR__OP_MOD] = "%", [TSR__OP_EQ] = "=", [TSR__OP_NE] = "!=", [TSR__OP_LT] = "<",
        [TSR__OP_LE] = "<=", [TSR__OP_GT] = ">", [TSR__OP_GE] = ">=", [TSR__OP_AND] = "AND",
        [TSR__OP_OR] = "OR", [TSR__OP_CONCAT] = "||", [TSR__OP_NEG] = "-", [TSR__OP_NOT] = "NOT",
    };
    return k[op];
}

/* ---------------------------------------------------------------- node compilers */

static int comp_node(comp_t *c, const tsr_expr_ast_t *n, res_t *r);

static int null_result(comp_t *c, tsr_type_t t, res_t *r) {
    r->o = const_reg(c, tsr_value_null());
    r->t = t;
    return 0;
}

static int comp_arith(comp_t *c, int op, res_t x, res_t y, res_t *r) {
    char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
    if (!fits(x.t, M_NUM) || !fits(y.t, M_NUM))
        return type_error(c, "operator '%s' expects numbers, got %s and %s", opname(op),
                          tname(x.t, b1), tname(y.t, b2));
    if (x.t == TSR_NULL || y.t == TSR_NULL) {
        tsr_type_t other = x.t == TSR_NULL ? y.t : x.t;
        return null_result(c, op == TSR__OP_DIV ? TSR_DOUBLE : other, r);
    }
    if (x.t == TSR_ANY || y.t == TSR_ANY) {
        r->o = new_regs(c, 1);
        r->t = op == TSR__OP_DIV ? TSR_DOUBLE : TSR_ANY;
        emit(c, TSR__I_ARITH_G, op, r->o, x.o, y.o, 0);
        return 0;
    }
    int ins;
    if (x.t == TSR_LONG && y.t == TSR_LONG && op != TSR__OP_DIV) {
        r->t = TSR_LONG;
        ins = op == TSR__OP_ADD ? TSR__I_ADD_LL : op == TSR__OP_SUB ? TSR__I_SUB_LL
            : op == TSR__OP_MUL ? TSR__I_MUL_LL : TSR__I_MOD_LL;
    } else {
        /* Spark's `/` is fractional: long / long is a double */
        x.o = to_double(c, x.o, x.t);
        y.o = to_double(c, y.o, y.t);
        r->t = TSR_DOUBLE;
        ins = op == TSR__OP_ADD ? TSR__I_ADD_DD : op == TSR__OP_SUB ? TSR__I_SUB_DD
            : op == TSR__OP_MUL ? TSR__I_MUL_DD : op == TSR__OP_DIV ? TSR__I_DIV_DD : TSR__I_MOD_DD;
    }
    r->o = new_regs(c, 1);
    emit(c, ins, 0, r->o, x.o, y.o, 0);
    return 0;
}

static int comparable(tsr_type_t a, tsr_type_t b) {
    if (a == TSR_NULL || b == TSR_NULL || a == TSR_ANY || b == TSR_ANY) return 1;
    if (tsr_type_is_numeric(a) && tsr_type_is_numeric(b)) return 1;
    return a == b && tsr_type_is_scalar(a);
}

static int comp_cmp(comp_t *c, int op, res_t x, res_t y, res_t *r) {
    char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
    if (!comparable(x.t, y.t))
        return type_error(c, "operator '%s' cannot compare %s and %s", opname(op), tname(x.t, b1),
                          tname(y.t, b2));
    if (x.t == TSR_NULL || y.t == TSR_NULL) return null_result(c, TSR_BOOL, r);
    int k = op - TSR__OP_EQ, ins;
    if (x.t == TSR_LONG && y.t == TSR_LONG) {
        ins = TSR__I_EQ_LL + k;
    } else if (tsr_type_is_numeric(x.t) && tsr_type_is_numeric(y.t)) {
        x.o = to_double(c, x.o, x.t);
        y.o = to_double(c, y.o, y.t);
        ins = TSR__I_EQ_DD + k;
    } else if (x.t == TSR_STRING && y.t == TSR_STRING) {
        ins = TSR__I_EQ_SS + k;
    } else {
        ins = TSR__I_CMP_G;     /* booleans, or an ANY side */
    }
    r->o = new_regs(c, 1);
    r->t = TSR_BOOL;
    emit(c, ins, ins == TSR__I_CMP_G ? op : 0, r->o, x.o, y.o, 0);
    return 0;
}

static int want_bool(comp_t *c, const char *what, tsr_type_t t) {
    char b[TSR_TYPE_NAME_MAX];
    if (fits(t, M_BOOL)) return 0;
    return type_error(c, "%s expects a boolean, got %s", what, tname(t, b));
}

/* Places already-compiled operands into k consecutive registers (CALL and IN read them so),
 * converting longs to double when conv[i]. Constants are copied in as constants. */
static uint32_t place(comp_t *c, const res_t *v, size_t k, tsr_type_t to) {
    uint32_t base = new_regs(c, k);
    for (size_t i = 0; i < k; i++) {
        int conv = to == TSR_DOUBLE && v[i].t == TSR_LONG;
        if (is_const(c, v[i].o)) {
            tsr_value_t x = c->p->init[v[i].o];
            if (conv && x.kind == TSR_LONG) x = tsr_value_double((double)x.u.l);
            c->p->init[base + i] = x;
            c->p->is_const[base + i] = 1;
        } else {
            emit(c, conv ? TSR__I_CVT_L2D : TSR__I_MOVE, 0, base + (uint32_t)i, v[i].o, 0, 0);
        }
    }
    return base;
}

/* Emits "if cond is not true, jump (target patched later)". When cond was computed by the
 * instruction just emitted (a comparison or IS NULL whose register nothing else reads, as
 * every node's register has one reader), that instruction becomes a fused compare-and-branch
 * and saves a dispatch per row. */
static uint32_t emit_jnt(comp_t *c, uint32_t cond) {
    tsr_program_t *p = c->p;
    if (p->ncode > 0 && !(cond & TSR__COL)) {
        tsr__insn_t *last = &p->code[p->ncode - 1];
        if (last->dst == cond) {
            int op = last->op;
            if (op >= TSR__I_EQ_LL && op <= TSR__I_GE_LL) op = TSR__I_EQ_JLL + (op - TSR__I_EQ_LL);
            else if (op >= TSR__I_EQ_DD && op <= TSR__I_GE_DD) op = TSR__I_EQ_JDD + (op - TSR__I_EQ_DD);
            else if (op >= TSR__I_EQ_SS && op <= TSR__I_GE_SS) op = TSR__I_EQ_JSS + (op - TSR__I_EQ_SS);
            else if (op == TSR__I_ISNULL) op = TSR__I_JISNULL;
            else if (op == TSR__I_NOTNULL) op = TSR__I_JNOTNULL;
            else op = -1;
            if (op >= 0) {
                last->op = (uint16_t)op;
                return (uint32_t)p->ncode - 1;
            }
        }
    }
    return emit(c, TSR__I_JNT, 0, 0, cond, 0, 0);
}

static void patch_jump(comp_t *c, uint32_t pc, uint32_t target) {
    tsr__insn_t *in = &c->p->code[pc];
    if (in->op == TSR__I_JNT || in->op == TSR__I_JUMP) in->b = target;
    else in->c = target;
}

/* A pending branch result: the MOVE (or MOVEJ, JNN) at pc wrote a value of type t. */
typedef struct branch {
    uint32_t pc;
    tsr_type_t t;
} branch_t;

/* Unifies the branches' types and patches long branches to convert when the result is double. */
static int finish_branches(comp_t *c, const char *what, branch_t *br, size_t nb, tsr_type_t *out) {
    tsr_type_t t = TSR_NULL;
    for (size_t i = 0; i < nb; i++) {
        tsr_type_t u;
        if (unify(t, br[i].t, &u) != 0) {
            char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
            return type_error(c, "%s branches have incompatible types: %s and %s", what,
                              tname(t, b1), tname(br[i].t, b2));
        }
        t = u;
    }
    if (t == TSR_DOUBLE) {
        for (size_t i = 0; i < nb; i++) {
            if (br[i].t != TSR_LONG) continue;
            tsr__insn_t *in = &c->p->code[br[i].pc];
            if (is_const(c, in->a)) in->a = to_double(c, in->a, TSR_LONG);  /* at compile time */
            else if (in->op == TSR__I_MOVE) in->op = TSR__I_CVT_L2D;
            else in->aux = 1;   /* MOVEJ, JNN: convert while moving */
        }
    }
    *out = t;
    return 0;
}

static int comp_case(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    size_t i = 0, nb = 0;
    res_t x = {0};
    if (n->has_operand && comp_node(c, n->args[i++], &x)) return c->rc;
    size_t npairs = (n->nargs - n->has_operand - n->has_else) / 2;
    branch_t *br = tsr_calloc(npairs + 1, sizeof *br);
    uint32_t *ends = tsr_calloc(npairs + 1, sizeof *ends);
    uint32_t dst = new_regs(c, 1);
    for (size_t k = 0; k < npairs; k++, i += 2) {
        res_t w, t;
        if (comp_node(c, n->args[i], &w)) goto fail;
        if (n->has_operand) {
            res_t eq;
            if (comp_cmp(c, TSR__OP_EQ, x, w, &eq)) goto fail;
            w = eq;
        } else if (want_bool(c, "CASE WHEN", w.t)) {
            goto fail;
        }
        uint32_t jnt = emit_jnt(c, w.o);
        if (comp_node(c, n->args[i + 1], &t)) goto fail;
        br[nb].pc = ends[k] = emit(c, TSR__I_MOVEJ, 0, dst, t.o, 0, 0);
        br[nb++].t = t.t;
        patch_jump(c, jnt, (uint32_t)c->p->ncode);
    }
    res_t e;
    if (n->has_else) {
        if (comp_node(c, n->args[i], &e)) goto fail;
    } else {
        e.o = const_reg(c, tsr_value_null());
        e.t = TSR_NULL;
    }
    br[nb].pc = emit(c, TSR__I_MOVE, 0, dst, e.o, 0, 0);
    br[nb++].t = e.t;
    for (size_t k = 0; k < npairs; k++) patch_jump(c, ends[k], (uint32_t)c->p->ncode);
    if (finish_branches(c, "CASE", br, nb, &r->t)) goto fail;
    r->o = dst;
    free(br);
    free(ends);
    return 0;
fail:
    free(br);
    free(ends);
    return c->rc;
}

static int comp_if(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    res_t cond, a, b;
    branch_t br[2];
    if (comp_node(c, n->args[0], &cond)) return c->rc;
    if (want_bool(c, "IF condition", cond.t)) return c->rc;
    uint32_t dst = new_regs(c, 1);
    uint32_t jnt = emit_jnt(c, cond.o);
    if (comp_node(c, n->args[1], &a)) return c->rc;
    uint32_t jend = br[0].pc = emit(c, TSR__I_MOVEJ, 0, dst, a.o, 0, 0);
    br[0].t = a.t;
    patch_jump(c, jnt, (uint32_t)c->p->ncode);
    if (comp_node(c, n->args[2], &b)) return c->rc;
    br[1].pc = emit(c, TSR__I_MOVE, 0, dst, b.o, 0, 0);
    br[1].t = b.t;
    patch_jump(c, jend, (uint32_t)c->p->ncode);
    r->o = dst;
    return finish_branches(c, "IF", br, 2, &r->t);
}

/* COALESCE(a, b, c): a chain of "if not null, take it and leave"; later arguments are not
 * evaluated once one is non-null. */
static int comp_coalesce(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    branch_t *br = tsr_calloc(n->nargs, sizeof *br);
    uint32_t *jumps = tsr_calloc(n->nargs, sizeof *jumps);
    uint32_t dst = new_regs(c, 1);
    for (size_t i = 0; i < n->nargs; i++) {
        res_t a;
        if (comp_node(c, n->args[i], &a)) goto fail;    /* any type, lists and maps too */
        if (i + 1 < n->nargs) {
            br[i].pc = jumps[i] = emit(c, TSR__I_JNN, 0, dst, a.o, 0, 0);
        } else {
            br[i].pc = emit(c, TSR__I_MOVE, 0, dst, a.o, 0, 0);
        }
        br[i].t = a.t;
    }
    for (size_t i = 0; i + 1 < n->nargs; i++) c->p->code[jumps[i]].b = (uint32_t)c->p->ncode;
    if (finish_branches(c, "COALESCE", br, n->nargs, &r->t)) goto fail;
    r->o = dst;
    free(br);
    free(jumps);
    return 0;
fail:
    free(br);
    free(jumps);
    return c->rc;
}

static int check_arg(comp_t *c, int fid, size_t nargs, size_t i, tsr_type_t t, int mask) {
    if (fits(t, mask)) return 0;
    char b[TSR_TYPE_NAME_MAX], where[48] = "";
    if (nargs > 1) snprintf(where, sizeof where, " as argument %zu", i + 1);
    return type_error(c, "%s expects %s%s, got %s", tsr__func_name((tsr__func_id_t)fid),
                      mask_desc(mask), where, tname(t, b));
}

/* Validates a literal date pattern at compile time (a bad run-time pattern gives null). */
static int check_pattern(comp_t *c, int fid, const tsr_expr_ast_t *a) {
    if (a->kind != TSR__N_STRING) return 0;
    size_t bad;
    if (tsr__dt_check(a->v.str.s, a->v.str.n, &bad) == 0) return 0;
    c->rc = TSR_ECONFIG;
    tsr_error_set(c->err, TSR_ECONFIG, "%s: unsupported date pattern '%.80s' (at '%c'); "
                  "supported letters: y M d H h m s S a E and 'quoted text'",
                  tsr__func_name((tsr__func_id_t)fid), a->v.str.s, a->v.str.s[bad]);
    return c->rc;
}

static int comp_call(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    int fid = n->op;
    if (fid == TSR__F_IF) return comp_if(c, n, r);
    if (fid == TSR__F_COALESCE) return comp_coalesce(c, n, r);
    size_t k = n->nargs;
    res_t *v = tsr_calloc(k, sizeof *v);
    tsr_type_t conv = TSR_NULL, t = TSR_NULL;
    for (size_t i = 0; i < k; i++)
        if (comp_node(c, n->args[i], &v[i])) goto fail;
    switch (fid) {
    case TSR__F_ABS:
        if (check_arg(c, fid, k, 0, v[0].t, M_NUM)) goto fail;
        t = v[0].t == TSR_NULL ? TSR_LONG : v[0].t;
        break;
    case TSR__F_LN: case TSR__F_LOG: case TSR__F_LOG10: case TSR__F_EXP: case TSR__F_POW:
    case TSR__F_SQRT:
        for (size_t i = 0; i < k; i++)
            if (check_arg(c, fid, k, i, v[i].t, M_NUM)) goto fail;
        t = TSR_DOUBLE;     /* the functions read longs and doubles alike: no conversion */
        break;
    case TSR__F_FLOOR: case TSR__F_CEIL:
        if (check_arg(c, fid, k, 0, v[0].t, M_NUM)) goto fail;
        t = TSR_LONG;
        break;
    case TSR__F_ROUND:
        if (check_arg(c, fid, k, 0, v[0].t, M_NUM)) goto fail;
        if (k > 1 && check_arg(c, fid, k, 1, v[1].t, M_LONG)) goto fail;
        t = v[0].t == TSR_NULL ? TSR_DOUBLE : v[0].t;
        break;
    case TSR__F_GREATEST: case TSR__F_LEAST:
        for (size_t i = 0; i < k; i++) {
            tsr_type_t u;
            char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
            if (check_arg(c, fid, k, i, v[i].t, M_SCALAR)) goto fail;
            if (unify(t, v[i].t, &u) != 0) {
                type_error(c, "%s arguments have incompatible types: %s and %s",
                           tsr__func_name((tsr__func_id_t)fid), tname(t, b1), tname(v[i].t, b2));
                goto fail;
            }
            t = u;
        }
        conv = t;
        break;
    case TSR__F_LOWER: case TSR__F_UPPER: case TSR__F_TRIM:
        if (check_arg(c, fid, k, 0, v[0].t, M_STRING)) goto fail;
        t = TSR_STRING;
        break;
    case TSR__F_LENGTH:
        if (check_arg(c, fid, k, 0, v[0].t, M_STRING)) goto fail;
        t = TSR_LONG;
        break;
    case TSR__F_SUBSTR:
        if (check_arg(c, fid, k, 0, v[0].t, M_STRING)) goto fail;
        for (size_t i = 1; i < k; i++)
            if (check_arg(c, fid, k, i, v[i].t, M_LONG)) goto fail;
        t = TSR_STRING;
        break;
    case TSR__F_CONCAT:
        for (size_t i = 0; i < k; i++)
            if (check_arg(c, fid, k, i, v[i].t, M_SCALAR)) goto fail;
        t = TSR_STRING;
        break;
    case TSR__F_UNIX_TIMESTAMP:
        if (check_arg(c, fid, k, 0, v[0].t, M_STRING)) goto fail;
        if (k > 1 && (check_arg(c, fid, k, 1, v[1].t, M_STRING) || check_pattern(c, fid, n->args[1])))
            goto fail;
        t = TSR_LONG;
        break;
    case TSR__F_FROM_UNIXTIME:
        if (check_arg(c, fid, k, 0, v[0].t, M_NUM)) goto fail;
        if (k > 1 && (check_arg(c, fid, k, 1, v[1].t, M_STRING) || check_pattern(c, fid, n->args[1])))
            goto fail;
        t = TSR_STRING;
        break;
    case TSR__F_DATE_FORMAT: case TSR__F_TO_DATE:
        if (check_arg(c, fid, k, 0, v[0].t, M_STRING | M_LONG)) goto fail;
        if (k > 1 && (check_arg(c, fid, k, 1, v[1].t, M_STRING) || check_pattern(c, fid, n->args[1])))
            goto fail;
        t = TSR_STRING;
        break;
    default:
        type_error(c, "function %s cannot be compiled", tsr__func_name((tsr__func_id_t)fid));
        goto fail;
    }
    uint32_t base = place(c, v, k, conv);
    r->o = new_regs(c, 1);
    r->t = t;
    emit(c, TSR__I_CALL, fid, r->o, base, (uint32_t)k, 0);
    free(v);
    return 0;
fail:
    free(v);
    return c->rc;
}

static int comp_in(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    size_t k = n->nargs - 1;
    res_t x;
    res_t *v = tsr_calloc(k, sizeof *v);
    if (comp_node(c, n->args[0], &x)) goto fail;
    for (size_t i = 0; i < k; i++) {
        if (comp_node(c, n->args[i + 1], &v[i])) goto fail;
        if (!comparable(x.t, v[i].t)) {
            char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
            type_error(c, "IN cannot compare %s with %s", tname(x.t, b1), tname(v[i].t, b2));
            goto fail;
        }
    }
    uint32_t base = place(c, v, k, TSR_NULL);
    r->o = new_regs(c, 1);
    r->t = TSR_BOOL;
    emit(c, TSR__I_IN, n->negated, r->o, x.o, (uint32_t)k, base);
    free(v);
    return 0;
fail:
    free(v);
    return c->rc;
}

static int comp_cast(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    res_t x;
    if (comp_node(c, n->args[0], &x)) return c->rc;
    tsr_type_t to = n->cast_type;
    r->t = to;
    if (x.t == to) {
        r->o = x.o;
        return 0;
    }
    int src_ok = tsr_type_is_scalar(to) ? (x.t == TSR_NULL || x.t == TSR_ANY || tsr_type_is_scalar(x.t))
                                        : (x.t == TSR_NULL || x.t == TSR_ANY);
    if (!src_ok) {
        char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
        return type_error(c, "CAST cannot convert %s to %s", tname(x.t, b1), tname(to, b2));
    }
    if (x.t == TSR_NULL) return null_result(c, to, r);
    r->o = new_regs(c, 1);
    emit(c, TSR__I_CAST, 0, r->o, x.o, 0, to);
    return 0;
}

static int comp_node(comp_t *c, const tsr_expr_ast_t *n, res_t *r) {
    char b1[TSR_TYPE_NAME_MAX], b2[TSR_TYPE_NAME_MAX];
    res_t x, y;
    switch (n->kind) {
    case TSR__N_NULL: return null_result(c, TSR_NULL, r);
    case TSR__N_BOOL:
        r->o = const_reg(c, tsr_value_bool(n->v.b));
        r->t = TSR_BOOL;
        return 0;
    case TSR__N_LONG:
        r->o = const_reg(c, tsr_value_long(n->v.l));
        r->t = TSR_LONG;
        return 0;
    case TSR__N_DOUBLE:
        r->o = const_reg(c, tsr_value_double(n->v.d));
        r->t = TSR_DOUBLE;
        return 0;
    case TSR__N_STRING: {
        char *s = tsr_arena_strndup(&c->p->arena, n->v.str.s, n->v.str.n);
        r->o = const_reg(c, tsr_value_string(s, n->v.str.n));
        r->t = TSR_STRING;
        return 0;
    }
    case TSR__N_COLUMN: {
        int i = tsr_schema_find(&c->p->schema, n->v.str.s);
        if (i < 0) {
            c->rc = TSR_ECONFIG;
            tsr_error_set(c->err, TSR_ECONFIG, "unknown column '%.200s'", n->v.str.s);
            return c->rc;
        }
        r->o = TSR__COL | (uint32_t)i;
        r->t = c->p->col_types[i];
        return 0;
    }
    case TSR__N_UNARY:
        if (comp_node(c, n->args[0], &x)) return c->rc;
        if (n->op == TSR__OP_NOT) {
            if (want_bool(c, "NOT", x.t)) return c->rc;
            r->o = new_regs(c, 1);
            r->t = TSR_BOOL;
            emit(c, TSR__I_NOT, 0, r->o, x.o, 0, 0);
            return 0;
        }
        if (!fits(x.t, M_NUM))
            return type_error(c, "operator '-' expects a number, got %s", tname(x.t, b1));
        if (x.t == TSR_NULL) return null_result(c, TSR_NULL, r);
        if (is_const(c, x.o) && x.t == TSR_DOUBLE) {   /* -1.5 is a literal */
            r->o = const_reg(c, tsr_value_double(-c->p->init[x.o].u.d));
            r->t = TSR_DOUBLE;
            return 0;
        }
        if (is_const(c, x.o) && x.t == TSR_LONG) {
            r->o = const_reg(c, tsr_value_long((int64_t)(0 - (uint64_t)c->p->init[x.o].u.l)));
            r->t = TSR_LONG;
            return 0;
        }
        r->o = new_regs(c, 1);
        r->t = x.t;
        if (x.t == TSR_ANY) emit(c, TSR__I_ARITH_G, TSR__OP_NEG, r->o, x.o, x.o, 0);
        else emit(c, x.t == TSR_LONG ? TSR__I_NEG_L : TSR__I_NEG_D, 0, r->o, x.o, 0, 0);
        return 0;
    case TSR__N_BINARY:
        if (comp_node(c, n->args[0], &x) || comp_node(c, n->args[1], &y)) return c->rc;
        switch (n->op) {
        case TSR__OP_ADD: case TSR__OP_SUB: case TSR__OP_MUL: case TSR__OP_DIV: case TSR__OP_MOD:
            return comp_arith(c, n->op, x, y, r);
        case TSR__OP_AND: case TSR__OP_OR:
            if (!fits(x.t, M_BOOL) || !fits(y.t, M_BOOL))
                return type_error(c, "%s expects boolean operands, got %s and %s", opname(n->op),
                                  tname(x.t, b1), tname(y.t, b2));
            r->o = new_regs(c, 1);
            r->t = TSR_BOOL;
            emit(c, n->op == TSR__OP_AND ? TSR__I_AND : TSR__I_OR, 0, r->o, x.o, y.o, 0);
            return 0;
        case TSR__OP_CONCAT: {
            if (!fits(x.t, M_SCALAR) || !fits(y.t, M_SCALAR))
                return type_error(c, "operator '||' expects scalars, got %s and %s", tname(x.t, b1),
                                  tname(y.t, b2));
            res_t v[2] = {x, y};
            uint32_t base = place(c, v, 2, TSR_NULL);
            r->o = new_regs(c, 1);
            r->t = TSR_STRING;
            emit(c, TSR__I_CALL, TSR__F_CONCAT, r->o, base, 2, 0);
            return 0;
        }
        default:
            return comp_cmp(c, n->op, x, y, r);
        }
    case TSR__N_CALL: return comp_call(c, n, r);
    case TSR__N_CASE: return comp_case(c, n, r);
    case TSR__N_IN: return comp_in(c, n, r);
    case TSR__N_LIKE:
        if (comp_node(c, n->args[0], &x) || comp_node(c, n->args[1], &y)) return c->rc;
        if (!fits(x.t, M_STRING) || !fits(y.t, M_STRING))
            return type_error(c, "LIKE expects strings, got %s and %s", tname(x.t, b1), tname(y.t, b2));
        r->o = new_regs(c, 1);
        r->t = TSR_BOOL;
        emit(c, TSR__I_LIKE, n->negated, r->o, x.o, y.o, 0);
        return 0;
    case TSR__N_ISNULL:
        if (comp_node(c, n->args[0], &x)) return c->rc;
        r->o = new_regs(c, 1);
        r->t = TSR_BOOL;
        emit(c, n->negated ? TSR__I_NOTNULL : TSR__I_ISNULL, 0, r->o, x.o, 0, 0);
        return 0;
    case TSR__N_BETWEEN: {
        res_t lo, hi, ge, le;
        if (comp_node(c, n->args[0], &x) || comp_node(c, n->args[1], &lo) ||
            comp_node(c, n->args[2], &hi))
            return c->rc;
        if (comp_cmp(c, TSR__OP_GE, x, lo, &ge) || comp_cmp(c, TSR__OP_LE, x, hi, &le)) return c->rc;
        r->o = new_regs(c, 1);
        r->t = TSR_BOOL;
        emit(c, TSR__I_AND, 0, r->o, ge.o, le.o, 0);
        if (n->negated) {
            uint32_t o = new_regs(c, 1);
            emit(c, TSR__I_NOT, 0, o, r->o, 0, 0);
            r->o = o;
        }
        return 0;
    }
    case TSR__N_CAST: return comp_cast(c, n, r);
    }
    return type_error(c, "internal: unknown node kind %d", (int)n->kind);
}

int tsr_program_add(tsr_program_t *p, const char *src, tsr_type_t *type, tsr_error_t *err) {
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_expr_ast_t *ast;
    int rc = tsr_expr_parse(src, &arena, &ast, err);
    if (rc) {
        tsr_arena_free(&arena);
        return rc;
    }
    comp_t c = {.p = p, .err = err};
    size_t ncode0 = p->ncode, nregs0 = p->nregs;
    res_t r;
    if (comp_node(&c, ast, &r) != 0) {
        p->ncode = ncode0;
        p->nregs = nregs0;
        tsr_arena_free(&arena);
        return c.rc;
    }
    tsr_arena_free(&arena);
    if (p->nout == p->capout) {
        p->capout = p->capout ? p->capout * 2 : 8;
        p->outputs = tsr_realloc(p->outputs, p->capout * sizeof *p->outputs);
    }
    tsr__output_t *o = &p->outputs[p->nout];
    o->start = (uint32_t)ncode0;
    o->end = (uint32_t)p->ncode;
    o->result = r.o;
    o->type = r.t;
    if (type) *type = r.t;
    return (int)p->nout++;
}

/* ---------------------------------------------------------------- listing */

static const char *const k_op_names[] = {
#define TSR__OP_NAME(name) #name,
    TSR__OPCODES(TSR__OP_NAME)
#undef TSR__OP_NAME
};

static void dump_opnd(tsr_buf_t *out, uint32_t o) {
    if (o & TSR__COL) tsr_buf_printf(out, "col%u", o & ~TSR__COL);
    else tsr_buf_printf(out, "r%u", o);
}

void tsr__program_dump(const tsr_program_t *p, tsr_buf_t *out) {
    for (size_t i = 0; i < p->nregs; i++) {
        if (!p->is_const[i]) continue;
        tsr_buf_printf(out, "r%zu = ", i);
        tsr_value_to_json(&p->init[i], out);
        tsr_buf_putc(out, '\n');
    }
    for (size_t k = 0; k < p->nout; k++) {
        const tsr__output_t *o = &p->outputs[k];
        tsr_buf_printf(out, "output %zu:\n", k);
        for (uint32_t pc = o->start; pc < o->end; pc++) {
            const tsr__insn_t *in = &p->code[pc];
            tsr_buf_printf(out, "  %4u %-8s aux=%u r%u ", pc, k_op_names[in->op], in->aux, in->dst);
            dump_opnd(out, in->a);
            tsr_buf_printf(out, " %u %u\n", in->b, in->c);
        }
        tsr_buf_puts(out, "  result ");
        dump_opnd(out, o->result);
        tsr_buf_putc(out, '\n');
    }
}
