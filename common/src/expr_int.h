/*
 * expr_int.h — what the expression engine's files share (parser, compiler, VM, functions,
 * date patterns). Nothing here is for other modules, except the introspection helpers at the
 * end, which tests use.
 *
 * Layers (one file each):
 *   expr_parse.c   tokens -> AST, the function table's names and arities, caret errors.
 *   expr_compile.c type checking and code generation into a tsr_program_t.
 *   expr_vm.c      the register VM: tsr_vm_t, the interpreter loop, the scratch buffer.
 *   expr_func.c    built-in functions (CALL targets), CAST, LIKE, number/string helpers.
 *   expr_time.c    Spark/Java date patterns: format and parse, UTC.
 *
 * Invariants:
 *   1. An operand is a register index, or TSR__COL | column index: column operands read the
 *      caller's row directly and are never written.
 *   2. Registers flagged constant in the program hold literal values that the VM copies in
 *      once at tsr_vm_new and no instruction writes afterwards.
 *   3. Type-specialized instructions (ADD_LL, LT_DD, ...) check their operands' run-time
 *      kinds and produce null on any mismatch, so null propagation and bad rows (a string in a
 *      column declared long) cost the same single test and never crash.
 *   4. Strings produced during a run live in the VM scratch; the scratch never moves during a
 *      run (it overflows into extra chunks, merged into one larger block at the next run).
 */
#ifndef TSR_EXPR_INT_H
#define TSR_EXPR_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/expr.h"

/* ---------------------------------------------------------------- AST */

typedef enum tsr__node_kind {
    TSR__N_NULL, TSR__N_BOOL, TSR__N_LONG, TSR__N_DOUBLE, TSR__N_STRING, TSR__N_COLUMN,
    TSR__N_UNARY,   /* op: TSR__OP_NEG or TSR__OP_NOT; args[0] */
    TSR__N_BINARY,  /* op: TSR__OP_*; args[0], args[1] */
    TSR__N_CALL,    /* op: tsr__func_id; args */
    TSR__N_CASE,    /* args: [operand] (w t)* [else]; flags has_operand, has_else */
    TSR__N_IN,      /* args[0] IN (args[1..]); negated */
    TSR__N_LIKE,    /* args[0] LIKE args[1]; negated */
    TSR__N_ISNULL,  /* args[0] IS [NOT] NULL; negated */
    TSR__N_BETWEEN, /* args[0] BETWEEN args[1] AND args[2]; negated */
    TSR__N_CAST,    /* CAST(args[0] AS cast_type) */
} tsr__node_kind_t;

typedef enum tsr__binop {
    TSR__OP_ADD, TSR__OP_SUB, TSR__OP_MUL, TSR__OP_DIV, TSR__OP_MOD,
    TSR__OP_EQ, TSR__OP_NE, TSR__OP_LT, TSR__OP_LE, TSR__OP_GT, TSR__OP_GE,
    TSR__OP_AND, TSR__OP_OR, TSR__OP_CONCAT, TSR__OP_NEG, TSR__OP_NOT,
} tsr__binop_t;

struct tsr_expr_ast {
    tsr__node_kind_t kind;
    int op;                 /* operator or function id */
    uint32_t pos;           /* byte offset of the node's first token in the source */
    uint8_t negated, has_operand, has_else;
    tsr_type_t cast_type;
    union {
        int64_t l;
        double d;
        int b;
        struct { const char *s; size_t n; } str;  /* string literal or column name (NUL-terminated) */
    } v;
    struct tsr_expr_ast **args;
    size_t nargs;
};

/* ---------------------------------------------------------------- functions */

typedef enum tsr__func_id {
    TSR__F_IF, TSR__F_COALESCE, TSR__F_ABS, TSR__F_LN, TSR__F_LOG, TSR__F_LOG10, TSR__F_EXP,
    TSR__F_POW, TSR__F_SQRT, TSR__F_FLOOR, TSR__F_CEIL, TSR__F_ROUND, TSR__F_GREATEST,
    TSR__F_LEAST, TSR__F_LOWER, TSR__F_UPPER, TSR__F_LENGTH, TSR__F_SUBSTR, TSR__F_CONCAT,
    TSR__F_TRIM, TSR__F_UNIX_TIMESTAMP, TSR__F_FROM_UNIXTIME, TSR__F_DATE_FORMAT,
    TSR__F_TO_DATE, TSR__F_COUNT_
} tsr__func_id_t;

typedef struct tsr__func_name {
    const char *name;       /* as accepted in source (case-insensitive) */
    tsr__func_id_t id;
} tsr__func_name_t;

/* Canonical (upper-case) name of a function id, and its accepted argument counts
 * (max -1 = unbounded). */
const char *tsr__func_name(tsr__func_id_t id);
void tsr__func_arity(tsr__func_id_t id, int *min, int *max);
/* Looks a name up case-insensitively (aliases included); -1 when unknown. */
int tsr__func_lookup(const char *name, size_t n);

/* ---------------------------------------------------------------- bytecode */

#define TSR__COL 0x80000000u

#define TSR__CMP_OPS(X, T) X(EQ_##T) X(NE_##T) X(LT_##T) X(LE_##T) X(GT_##T) X(GE_##T)

#define TSR__OPCODES(X)                                                                    \
    X(MOVE)        /* dst = a */                                                           \
    X(JUMP)        /* pc = b */                                                            \
    X(JNT)         /* if a is not a true boolean: pc = b */                                \
    X(JNN)         /* if a is not null: dst = a, pc = b (COALESCE chains) */               \
    X(MOVEJ)       /* dst = a, pc = c: a branch's result and its jump to the end */         \
    X(CVT_L2D)     /* dst = (double)a, null unless a is long */                            \
    X(ADD_LL) X(SUB_LL) X(MUL_LL) X(MOD_LL) X(NEG_L)                                       \
    X(ADD_DD) X(SUB_DD) X(MUL_DD) X(DIV_DD) X(MOD_DD) X(NEG_D)                             \
    X(ARITH_G)     /* aux = TSR__OP_*: run-time dispatch on kinds (TSR_ANY operands) */    \
    TSR__CMP_OPS(X, LL) TSR__CMP_OPS(X, DD) TSR__CMP_OPS(X, SS)                            \
    /* fused compare-and-branch: if not (a op b) [false or null]: pc = c */                \
    TSR__CMP_OPS(X, JLL) TSR__CMP_OPS(X, JDD) TSR__CMP_OPS(X, JSS)                         \
    X(JISNULL) X(JNOTNULL) /* if not (a IS [NOT] NULL): pc = c */                          \
    X(CMP_G)       /* aux = TSR__OP_EQ..GE, any comparable kinds */                        \
    X(AND) X(OR) X(NOT) X(ISNULL) X(NOTNULL)                                               \
    X(IN)          /* dst = a IN (regs c .. c+b) ; aux = negated */                        \
    X(LIKE)        /* dst = a LIKE b ; aux = negated */                                    \
    X(CAST)        /* dst = CAST(a AS aux) */                                              \
    X(CALL)        /* dst = func aux over registers a .. a+b */

typedef enum tsr__opcode {
#define TSR__OP_ENUM(name) TSR__I_##name,
    TSR__OPCODES(TSR__OP_ENUM)
#undef TSR__OP_ENUM
    TSR__I_COUNT_
} tsr__opcode_t;

typedef struct tsr__insn {
    uint16_t op;
    uint16_t aux;
    uint32_t dst, a, b, c;
} tsr__insn_t;

typedef struct tsr__output {
    uint32_t start, end;    /* code range */
    uint32_t result;        /* operand holding the value */
    tsr_type_t type;
} tsr__output_t;

struct tsr_program {
    size_t ncols;
    char **col_names;           /* owned copies */
    tsr_type_t *col_types;
    const char **col_name_ptrs; /* for the schema view */
    tsr_schema_t schema;

    tsr__insn_t *code;
    size_t ncode, capcode;
    tsr_value_t *init;          /* initial register file: constants set, the rest null */
    uint8_t *is_const;
    size_t nregs, capregs;
    tsr__output_t *outputs;
    size_t nout, capout;
    tsr_arena_t arena;          /* string constants */
};

/* One overflow chunk of the scratch (see invariant 4). */
typedef struct tsr__scratch_chunk {
    struct tsr__scratch_chunk *next;
    size_t cap, used;
    char data[];
} tsr__scratch_chunk_t;

struct tsr_vm {
    const tsr_program_t *prog;
    size_t nout;                /* outputs that existed at tsr_vm_new */
    tsr_value_t *regs;
    char *scratch;              /* main block */
    size_t scratch_cap, scratch_used;
    tsr__scratch_chunk_t *overflow;
    size_t overflow_total;      /* bytes asked of overflow chunks this run */
    size_t nallocs;             /* heap allocations made by runs (introspection) */
};

/* Scratch bytes for this run; never NULL. Valid until the next run. */
char *tsr__vm_alloc(tsr_vm_t *vm, size_t n);
/* Gives back the tail of the most recent tsr__vm_alloc(n) so only used bytes stay taken. */
void tsr__vm_shrink(tsr_vm_t *vm, char *p, size_t n, size_t used);

/* ---------------------------------------------------------------- run-time helpers */

typedef void (*tsr__func_impl_t)(tsr_vm_t *vm, tsr_value_t *dst, const tsr_value_t *a, uint32_t n);
tsr__func_impl_t tsr__func_impl(tsr__func_id_t id);

/* CAST of one value to a scalar type kind (TSR_LONG/DOUBLE/STRING/BOOL); null on failure. */
tsr_value_t tsr__cast(tsr_vm_t *vm, const tsr_value_t *v, tsr_type_t to);
/* SQL LIKE: % any run, _ one character (UTF-8 code point), backslash escapes. */
int tsr__like(const char *s, size_t n, const char *p, size_t pn);
/* Three-valued comparison of two values of comparable kinds: sets *c to <0, 0, >0 and
 * returns 1, or returns 0 when either is null or the kinds are not comparable. */
int tsr__cmp3(const tsr_value_t *a, const tsr_value_t *b, int *c);
/* Shortest round-trip text of a double ("1.5", "2.0", "1e+20", "NaN", "Infinity"). */
size_t tsr__fmt_double(double d, char out[static 32]);
/* Spark's ROUND half-up on the shortest decimal form of x, to d decimal places. */
double tsr__round_half_up(double x, int64_t d);

/* ---------------------------------------------------------------- date patterns */

#define TSR__TS_DEFAULT_FMT "yyyy-MM-dd HH:mm:ss"
/* 0 when fmt is a supported pattern; else -1 and *bad = offending byte offset. */
int tsr__dt_check(const char *fmt, size_t fn, size_t *bad);
/* Upper bound of the formatted length. */
size_t tsr__dt_max_len(size_t fn);
/* Formats epoch ms; returns bytes written or -1 (bad pattern). */
long tsr__dt_format(const char *fmt, size_t fn, int64_t ms, char *out);
/* Parses s with fmt exactly (whole input), 0 or -1. */
int tsr__dt_parse(const char *s, size_t n, const char *fmt, size_t fn, int64_t *ms);
/* Parses a timestamp or date in the default forms: yyyy-MM-dd[( |T)HH:mm[:ss[.S+]]]. */
int tsr__dt_parse_default(const char *s, size_t n, int64_t *ms);

/* ---------------------------------------------------------------- introspection (tests) */

/* Current scratch capacity in bytes (main block + overflow chunks). */
size_t tsr__vm_scratch_capacity(const tsr_vm_t *vm);
/* Heap allocations tsr_vm_run has made on this VM since tsr_vm_new. */
size_t tsr__vm_allocations(const tsr_vm_t *vm);
/* Appends a readable listing of the program's code (for debugging and tests). */
void tsr__program_dump(const tsr_program_t *p, tsr_buf_t *out);

#endif
