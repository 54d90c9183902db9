/* cmd/cli.c: printing and argument helpers shared by the subcommands. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_report(const al_error *err)
{
    fprintf(stderr, "alloy: error: %s\n", err->msg[0] ? err->msg : al_status_str(err->code));
    return al_status_exit_code(err->code);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "alloy %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'alloy %s --help')\n", cmd);
    return 1;
}

bool cli_is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0) || !isfinite(v)) return false;
    char unit[8] = {0};
    size_t k = 0;
    for (; *end && k < sizeof unit - 1; end++) if (!isspace((unsigned char)*end)) unit[k++] = (char)toupper((unsigned char)*end);
    if (*end) return false;
    static const struct { const char *u; double m; } units[] = {
        {"", 1}, {"B", 1}, {"K", 1e3}, {"KB", 1e3}, {"M", 1e6}, {"MB", 1e6}, {"G", 1e9}, {"GB", 1e9},
        {"T", 1e12}, {"TB", 1e12}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0},
        {"TIB", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].u) == 0) {
            double b = v * units[i].m;
            if (b >= 1.8e19) return false;
            *out = (uint64_t)b;
            return true;
        }
    return false;
}

const char *cli_human_bytes(char *buf, size_t n, uint64_t b)
{
    static const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    if (i == 0) snprintf(buf, n, "%llu B", (unsigned long long)b);
    else snprintf(buf, n, "%.2f %s", v, u[i]);
    return buf;
}

const char *cli_human_count(char *buf, size_t n, uint64_t c)
{
    static const char *u[] = {"", "K", "M", "B", "T"};
    double v = (double)c;
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    if (i == 0) snprintf(buf, n, "%llu", (unsigned long long)c);
    else snprintf(buf, n, "%.2f%s", v, u[i]);
    return buf;
}
