/*
 * expr_vm.c — the register VM that evaluates compiled programs over rows.
 *
 * Design: a switch-dispatched loop over 20-byte instructions. Operands are registers or, with
 * TSR__COL set, slots of the caller's row read in place (no per-row column copy). A VM owns a
 * register file initialised from the program's constant registers once, in tsr_vm_new; a run
 * only writes temporaries, so nothing is reloaded per row.
 *
 * Scratch: strings made during a run are bump-allocated from one block. If a run needs more,
 * it takes extra chunks (so earlier strings of the same run stay valid: the block never moves
 * mid-run) and the next run replaces block and chunks with one block twice the size needed.
 * So after warm-up a run allocates nothing; tsr__vm_allocations counts the exceptions.
 *
 * Every type-specialized instruction checks the kinds it expects and writes null otherwise:
 * this is both SQL null propagation and the guard against rows whose values do not match the
 * declared schema.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

#define SCRATCH_MIN 1024

tsr_vm_t *tsr_vm_new(const tsr_program_t *p) {
    tsr_vm_t *vm = tsr_calloc(1, sizeof *vm);
    vm->prog = p;
    vm->nout = p->nout;
    vm->regs = tsr_malloc((p->nregs ? p->nregs : 1) * sizeof *vm->regs);
    if (p->nregs) memcpy(vm->regs, p->init, p->nregs * sizeof *vm->regs);
    vm->scratch_cap = SCRATCH_MIN;
    vm->scratch = tsr_malloc(vm->scratch_cap);
    return vm;
}

static void free_overflow(tsr_vm_t *vm) {
    while (vm->overflow) {
        tsr__scratch_chunk_t *c = vm->overflow;
        vm->overflow = c->next;
        free(c);
    }
}

void tsr_vm_free(tsr_vm_t *vm) {
    if (!vm) return;
    free_overflow(vm);
    free(vm->scratch);
    free(vm->regs);
    free(vm);
}

char *tsr__vm_alloc(tsr_vm_t *vm, size_t n) {
    if (n <= vm->scratch_cap - vm->scratch_used) {
        char *p = vm->scratch + vm->scratch_used;
        vm->scratch_used += n;
        return p;
    }
    vm->overflow_total += n;
    tsr__scratch_chunk_t *c = vm->overflow;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = tsr_malloc(sizeof *c + cap);
        c->cap = cap;
        c->used = 0;
        c->next = vm->overflow;
        vm->overflow = c;
        vm->nallocs++;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

void tsr__vm_shrink(tsr_vm_t *vm, char *p, size_t n, size_t used) {
    if (used > n) return;
    if (p + n == vm->scratch + vm->scratch_used) {
        vm->scratch_used -= n - used;
    } else if (vm->overflow && p + n == vm->overflow->data + vm->overflow->used) {
        vm->overflow->used -= n - used;
        vm->overflow_total -= n - used;
    }
}

/* Start of a run: forget the previous run's strings; fold overflow into one bigger block. */
static void scratch_reset(tsr_vm_t *vm) {
    if (vm->overflow) {
        size_t need = vm->scratch_cap + vm->overflow_total;
        free_overflow(vm);
        free(vm->scratch);
        vm->scratch_cap = need * 2;
        vm->scratch = tsr_malloc(vm->scratch_cap);
        vm->nallocs++;
    }
    vm->scratch_used = 0;
    vm->overflow_total = 0;
}

size_t tsr__vm_scratch_capacity(const tsr_vm_t *vm) {
    size_t n = vm->scratch_cap;
    for (const tsr__scratch_chunk_t *c = vm->overflow; c; c = c->next) n += c->cap;
    return n;
}

size_t tsr__vm_allocations(const tsr_vm_t *vm) { return vm->nallocs; }

/* ---------------------------------------------------------------- the loop */

static inline int cmp_d(double a, double b) {
    if (a < b) return -1;
    if (a > b) return 1;
    if (a == b) return 0;
    return isnan(a) ? (isnan(b) ? 0 : 1) : -1;
}

static inline int cmp_s(const tsr_value_t *a, const tsr_value_t *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int r = n ? memcmp(a->u.s, b->u.s, n) : 0;
    if (r) return r;
    return (a->len > b->len) - (a->len < b->len);
}

static inline int cmp_test(int k, int c) {
    switch (k) {
    case 0: return c == 0;
    case 1: return c != 0;
    case 2: return c < 0;
    case 3: return c <= 0;
    case 4: return c > 0;
    default: return c >= 0;
    }
}

static inline void set_long(tsr_value_t *d, int64_t x) {
    d->kind = TSR_LONG;
    d->len = 0;
    d->u.l = x;
}
static inline void set_double(tsr_value_t *d, double x) {
    d->kind = TSR_DOUBLE;
    d->len = 0;
    d->u.d = x;
}
static inline void set_bool(tsr_value_t *d, int x) {
    d->kind = TSR_BOOL;
    d->len = 0;
    d->u.b = x;
}
static inline void set_null(tsr_value_t *d) {
    d->kind = TSR_NULL;
    d->len = 0;
    d->u.l = 0;
}

/* Generic arithmetic for TSR_ANY operands: longs stay long (except `/`), mixes are double. */
static void arith_g(int op, const tsr_value_t *a, const tsr_value_t *b, tsr_value_t *d) {
    int an = a->kind == TSR_LONG || a->kind == TSR_DOUBLE;
    int bn = b->kind == TSR_LONG || b->kind == TSR_DOUBLE;
    if (op == TSR__OP_NEG) {
        if (a->kind == TSR_LONG) set_long(d, (int64_t)(0 - (uint64_t)a->u.l));
        else if (a->kind == TSR_DOUBLE) set_double(d, -a->u.d);
        else set_null(d);
        return;
    }
    if (!an || !bn) {
        set_null(d);
        return;
    }
    if (a->kind == TSR_LONG && b->kind == TSR_LONG && op != TSR__OP_DIV) {
        uint64_t x = (uint64_t)a->u.l, y = (uint64_t)b->u.l;
        switch (op) {
        case TSR__OP_ADD: set_long(d, (int64_t)(x + y)); return;
        case TSR__OP_SUB: set_long(d, (int64_t)(x - y)); return;
        case TSR__OP_MUL: set_long(d, (int64_t)(x * y)); return;
        default:
            if (b->u.l == 0) set_null(d);
            else if (b->u.l == -1) set_long(d, 0);
            else set_long(d, a->u.l % b->u.l);
            return;
        }
    }
    double x = a->kind == TSR_LONG ? (double)a->u.l : a->u.d;
    double y = b->kind == TSR_LONG ? (double)b->u.l : b->u.d;
    switch (op) {
    case TSR__OP_ADD: set_double(d, x + y); return;
    case TSR__OP_SUB: set_double(d, x - y); return;
    case TSR__OP_MUL: set_double(d, x * y); return;
    case TSR__OP_DIV:
        if (y == 0) set_null(d);
        else set_double(d, x / y);
        return;
    default:
        if (y == 0) set_null(d);
        else set_double(d, fmod(x, y));
        return;
    }
}

static void eval_in(const tsr__insn_t *in, const tsr_value_t *x, const tsr_value_t *items, tsr_value_t *d) {
    if (x->kind == TSR_NULL) {
        set_null(d);
        return;
    }
    int saw_null = 0;
    for (uint32_t i = 0; i < in->b; i++) {
        int c;
        if (items[i].kind == TSR_NULL) saw_null = 1;
        else if (tsr__cmp3(x, &items[i], &c) && c == 0) {
            set_bool(d, !in->aux);
            return;
        }
    }
    if (saw_null) set_null(d);
    else set_bool(d, in->aux);
}

#define OPND(o) ((o) & TSR__COL ? &row[(o) & ~TSR__COL] : &R[(o)])

#define CMP_CASES(T, KIND, CMPEXPR)                                                           \
    case TSR__I_EQ_##T: case TSR__I_NE_##T: case TSR__I_LT_##T:                               \
    case TSR__I_LE_##T: case TSR__I_GT_##T: case TSR__I_GE_##T: {                             \
        const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);                                 \
        if (a->kind == KIND && b->kind == KIND) {                                             \
            int c_ = CMPEXPR;                                                                 \
            set_bool(&R[in->dst], cmp_test(in->op - TSR__I_EQ_##T, c_));                      \
        } else {                                                                              \
            set_null(&R[in->dst]);                                                            \
        }                                                                                     \
        break;                                                                                \
    }

#define JCMP_CASES(T, KIND, CMPEXPR)                                                          \
    case TSR__I_EQ_J##T: case TSR__I_NE_J##T: case TSR__I_LT_J##T:                            \
    case TSR__I_LE_J##T: case TSR__I_GT_J##T: case TSR__I_GE_J##T: {                          \
        const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);                                 \
        if (!(a->kind == KIND && b->kind == KIND && cmp_test(in->op - TSR__I_EQ_J##T, CMPEXPR))) \
            pc = in->c;                                                                       \
        break;                                                                                \
    }

#define LL_OP(NAME, EXPR)                                                                     \
    case TSR__I_##NAME: {                                                                     \
        const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);                                 \
        if (a->kind == TSR_LONG && b->kind == TSR_LONG) {                                     \
            uint64_t x = (uint64_t)a->u.l, y = (uint64_t)b->u.l;                              \
            set_long(&R[in->dst], (int64_t)(EXPR));                                           \
        } else {                                                                              \
            set_null(&R[in->dst]);                                                            \
        }                                                                                     \
        break;                                                                                \
    }

#define DD_OP(NAME, EXPR)                                                                     \
    case TSR__I_##NAME: {                                                                     \
        const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);                                 \
        if (a->kind == TSR_DOUBLE && b->kind == TSR_DOUBLE) {                                 \
            double x = a->u.d, y = b->u.d;                                                    \
            set_double(&R[in->dst], EXPR);                                                    \
        } else {                                                                              \
            set_null(&R[in->dst]);                                                            \
        }                                                                                     \
        break;                                                                                \
    }

static void exec(tsr_vm_t *vm, uint32_t pc, uint32_t end, const tsr_value_t *row) {
    tsr_value_t *R = vm->regs;
    const tsr__insn_t *code = vm->prog->code;
    while (pc < end) {
        const tsr__insn_t *in = &code[pc++];
        switch ((tsr__opcode_t)in->op) {
        case TSR__I_MOVE: R[in->dst] = *OPND(in->a); break;
        case TSR__I_JUMP: pc = in->b; break;
        case TSR__I_JNT: {
            const tsr_value_t *a = OPND(in->a);
            if (!(a->kind == TSR_BOOL && a->u.b)) pc = in->b;
            break;
        }
        case TSR__I_JNN: {
            const tsr_value_t *a = OPND(in->a);
            if (a->kind != TSR_NULL) {
                if (in->aux && a->kind == TSR_LONG) set_double(&R[in->dst], (double)a->u.l);
                else R[in->dst] = *a;
                pc = in->b;
            }
            break;
        }
        case TSR__I_MOVEJ: {
            const tsr_value_t *a = OPND(in->a);
            if (in->aux && a->kind == TSR_LONG) set_double(&R[in->dst], (double)a->u.l);
            else R[in->dst] = *a;
            pc = in->c;
            break;
        }
        case TSR__I_CVT_L2D: {
            const tsr_value_t *a = OPND(in->a);
            if (a->kind == TSR_LONG) set_double(&R[in->dst], (double)a->u.l);
            else if (a->kind == TSR_DOUBLE) R[in->dst] = *a;
            else set_null(&R[in->dst]);
            break;
        }
        LL_OP(ADD_LL, x + y)
        LL_OP(SUB_LL, x - y)
        LL_OP(MUL_LL, x * y)
        case TSR__I_MOD_LL: {
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            if (a->kind == TSR_LONG && b->kind == TSR_LONG && b->u.l != 0)
                set_long(&R[in->dst], b->u.l == -1 ? 0 : a->u.l % b->u.l);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_NEG_L: {
            const tsr_value_t *a = OPND(in->a);
            if (a->kind == TSR_LONG) set_long(&R[in->dst], (int64_t)(0 - (uint64_t)a->u.l));
            else set_null(&R[in->dst]);
            break;
        }
        DD_OP(ADD_DD, x + y)
        DD_OP(SUB_DD, x - y)
        DD_OP(MUL_DD, x * y)
        case TSR__I_DIV_DD: {
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            if (a->kind == TSR_DOUBLE && b->kind == TSR_DOUBLE && b->u.d != 0)
                set_double(&R[in->dst], a->u.d / b->u.d);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_MOD_DD: {
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            if (a->kind == TSR_DOUBLE && b->kind == TSR_DOUBLE && b->u.d != 0)
                set_double(&R[in->dst], fmod(a->u.d, b->u.d));
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_NEG_D: {
            const tsr_value_t *a = OPND(in->a);
            if (a->kind == TSR_DOUBLE) set_double(&R[in->dst], -a->u.d);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_ARITH_G: arith_g(in->aux, OPND(in->a), OPND(in->b), &R[in->dst]); break;
        CMP_CASES(LL, TSR_LONG, (a->u.l > b->u.l) - (a->u.l < b->u.l))
        CMP_CASES(DD, TSR_DOUBLE, cmp_d(a->u.d, b->u.d))
        CMP_CASES(SS, TSR_STRING, cmp_s(a, b))
        JCMP_CASES(LL, TSR_LONG, (a->u.l > b->u.l) - (a->u.l < b->u.l))
        JCMP_CASES(DD, TSR_DOUBLE, cmp_d(a->u.d, b->u.d))
        JCMP_CASES(SS, TSR_STRING, cmp_s(a, b))
        case TSR__I_JISNULL:
            if (OPND(in->a)->kind != TSR_NULL) pc = in->c;
            break;
        case TSR__I_JNOTNULL:
            if (OPND(in->a)->kind == TSR_NULL) pc = in->c;
            break;
        case TSR__I_CMP_G: {
            int c;
            if (tsr__cmp3(OPND(in->a), OPND(in->b), &c)) set_bool(&R[in->dst], cmp_test(in->aux - TSR__OP_EQ, c));
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_AND: {
            /* three-valued: false wins, then null, then true; a non-boolean counts as null */
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            int af = a->kind == TSR_BOOL && !a->u.b, bf = b->kind == TSR_BOOL && !b->u.b;
            int at = a->kind == TSR_BOOL && a->u.b, bt = b->kind == TSR_BOOL && b->u.b;
            if (af || bf) set_bool(&R[in->dst], 0);
            else if (at && bt) set_bool(&R[in->dst], 1);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_OR: {
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            int af = a->kind == TSR_BOOL && !a->u.b, bf = b->kind == TSR_BOOL && !b->u.b;
            int at = a->kind == TSR_BOOL && a->u.b, bt = b->kind == TSR_BOOL && b->u.b;
            if (at || bt) set_bool(&R[in->dst], 1);
            else if (af && bf) set_bool(&R[in->dst], 0);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_NOT: {
            const tsr_value_t *a = OPND(in->a);
            if (a->kind == TSR_BOOL) set_bool(&R[in->dst], !a->u.b);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_ISNULL: set_bool(&R[in->dst], OPND(in->a)->kind == TSR_NULL); break;
        case TSR__I_NOTNULL: set_bool(&R[in->dst], OPND(in->a)->kind != TSR_NULL); break;
        case TSR__I_IN: eval_in(in, OPND(in->a), &R[in->c], &R[in->dst]); break;
        case TSR__I_LIKE: {
            const tsr_value_t *a = OPND(in->a), *b = OPND(in->b);
            if (a->kind == TSR_STRING && b->kind == TSR_STRING)
                set_bool(&R[in->dst], tsr__like(a->u.s, a->len, b->u.s, b->len) != in->aux);
            else set_null(&R[in->dst]);
            break;
        }
        case TSR__I_CAST: R[in->dst] = tsr__cast(vm, OPND(in->a), in->c); break;
        case TSR__I_CALL: tsr__func_impl((tsr__func_id_t)in->aux)(vm, &R[in->dst], &R[in->a], in->b); break;
        case TSR__I_COUNT_: break;
        }
    }
}

void tsr_vm_run(tsr_vm_t *vm, const tsr_value_t *row, tsr_value_t *out) {
    const tsr_program_t *p = vm->prog;
    const tsr_value_t *R = vm->regs;
    scratch_reset(vm);
    if (vm->nout == 0) return;
    /* outputs' code ranges are consecutive: one pass runs them all */
    exec(vm, p->outputs[0].start, p->outputs[vm->nout - 1].end, row);
    for (size_t i = 0; i < vm->nout; i++) out[i] = *OPND(p->outputs[i].result);
}

void tsr_vm_run_one(tsr_vm_t *vm, size_t i, const tsr_value_t *row, tsr_value_t *out) {
    const tsr_program_t *p = vm->prog;
    const tsr_value_t *R = vm->regs;
    if (i >= vm->nout) {
        *out = tsr_value_null();
        return;
    }
    scratch_reset(vm);
    const tsr__output_t *o = &p->outputs[i];
    exec(vm, o->start, o->end, row);
    *out = *OPND(o->result);
}
