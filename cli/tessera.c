/*
 * tessera.c — placeholder replaced by the CLI dispatcher (validate, columns, ...).
 */
#include <stdio.h>
int main(void) { puts("tessera"); return 0; }
