/* cmd/main.c: placeholder entry point; subcommands arrive with cmd/cmd_*.c. */
#include <stdio.h>
int main(void) { fputs("alloy: no subcommands yet\n", stderr); return 1; }
