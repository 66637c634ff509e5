/*
 * expr.h — the expression engine: a Spark-SQL subset (SPEC §2, docs/expressions.md)
 * compiled once per config and evaluated per row without heap allocation in the common case.
 *
 * Pipeline: source text -> tokens -> AST (tsr_expr_parse) -> type-checked, compiled program
 * (tsr_program_add) -> evaluation by a tsr_vm_t over a row of tsr_value_t (tsr_vm_run).
 *
 * Rows. A tsr_schema_t names and types the columns of an input row; a row is an array of
 * tsr_value_t in schema order. A column typed TSR_ANY is checked at run time (values carry
 * their kind), so configs whose tables have no schema yet still validate and run.
 *
 * Errors. Parse errors say the 1-based column (in UTF-8 code points) and show the text with
 * a caret line:
 *     syntax error at column 18: expected ')' to close the '(' at column 10, got end of input
 *       amount * (1 + fee
 *                        ^
 * (the caret points at the offending character or the end of input; a long source is shown
 * as a window around it). Unknown functions and columns, wrong argument counts and type
 * errors name the function or column. The formats are listed in docs/expressions.md.
 *
 * Null semantics are SQL's: null propagates through operators and functions, division or
 * modulo by zero gives null, AND/OR are three-valued, a failed CAST gives null,
 * COALESCE/IF/CASE/IS NULL handle null explicitly.
 */
#ifndef TSR_EXPR_H
#define TSR_EXPR_H

#include <stddef.h>

#include "tsr/error.h"
#include "tsr/value.h"

typedef struct tsr_schema {
    size_t n;
    const char *const *names;   /* borrowed */
    const tsr_type_t *types;    /* borrowed */
} tsr_schema_t;

/* Index of a column by exact name, or -1. */
int tsr_schema_find(const tsr_schema_t *s, const char *name);

/* ---- Syntax only (no schema): used by config validation before table schemas are known. */

typedef struct tsr_expr_ast tsr_expr_ast_t;

/* Parses src; checks that every function exists and has an accepted number of arguments.
 * On success *out is an AST allocated in arena (borrowed until the arena is freed).
 * Returns 0, TSR_EPARSE (syntax, with column and caret) or TSR_ECONFIG (unknown function or
 * wrong argument count, naming the function). */
int tsr_expr_parse(const char *src, tsr_arena_t *arena, tsr_expr_ast_t **out, tsr_error_t *err);

/* Calls cb once per distinct column name the expression references (in order of first use). */
typedef void (*tsr_expr_column_cb)(void *ud, const char *name);
void tsr_expr_columns(const tsr_expr_ast_t *ast, tsr_expr_column_cb cb, void *ud);

/* 1 when the AST is a bare column reference (a rename); *name then points at it. */
int tsr_expr_is_column(const tsr_expr_ast_t *ast, const char **name);

/* ---- Compiled programs: many expressions over one input schema share one program. */

typedef struct tsr_program tsr_program_t;

/* The schema is copied; the program owns its memory. */
tsr_program_t *tsr_program_new(const tsr_schema_t *input);
void tsr_program_free(tsr_program_t *p);

/* Type-checks and compiles src as the program's next output. Returns the output's index
 * (0, 1, ...) and its type in *type, or a negative TSR_E* code with err set: TSR_EPARSE,
 * TSR_ECONFIG (unknown column or function, naming it), TSR_ETYPE (e.g. "LOWER expects a
 * string, got long"). A failed add leaves the program as it was. */
int tsr_program_add(tsr_program_t *p, const char *src, tsr_type_t *type, tsr_error_t *err);

size_t tsr_program_noutputs(const tsr_program_t *p);
tsr_type_t tsr_program_output_type(const tsr_program_t *p, size_t i);

/* A VM holds the registers and scratch space of one evaluating thread. A program may be
 * shared by many VMs (one per thread); a VM is used by one thread at a time. */
typedef struct tsr_vm tsr_vm_t;

/* The VM evaluates the outputs the program has now: add every output before creating VMs.
 * p is borrowed until tsr_vm_free. */
tsr_vm_t *tsr_vm_new(const tsr_program_t *p);
void tsr_vm_free(tsr_vm_t *vm);

/* Evaluates every output over row (tsr_program's schema order) into out[0..noutputs).
 * Strings, lists and maps in out may borrow from row or from the VM's scratch: they are valid
 * until the next tsr_vm_run on this VM, or until row's memory changes. A value whose run-time
 * kind does not fit the operation (possible only with TSR_ANY columns) evaluates to null.
 * Allocates only when the scratch must grow (a longer string than any before). */
void tsr_vm_run(tsr_vm_t *vm, const tsr_value_t *row, tsr_value_t *out);

/* Evaluates only output i. */
void tsr_vm_run_one(tsr_vm_t *vm, size_t i, const tsr_value_t *row, tsr_value_t *out);

/* Truthiness for WHERE clauses: 1 only for a non-null true boolean. */
static inline int tsr_value_truthy(const tsr_value_t *v) {
    return v->kind == TSR_BOOL && v->u.b;
}

#endif
