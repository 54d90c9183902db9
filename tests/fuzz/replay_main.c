/* tests/fuzz/replay_main.c: a main() for the fuzz targets without libFuzzer, so that the
 * normal and sanitizer builds replay the seeds and every input a fuzzer ever crashed on
 * (tests/fuzz/regressions/TARGET/) as part of `make test` / `make asan`. Usage:
 * replay FILE... (each file is one input). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) { perror(argv[i]); return 2; }
        size_t cap = 1 << 16, n = 0;
        uint8_t *buf = malloc(cap);
        for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
            n += r;
            if (n == cap) { uint8_t *g = realloc(buf, cap *= 2); if (!g) { free(buf); buf = NULL; } else buf = g; }
        }
        fclose(f);
        if (!buf) { fprintf(stderr, "%s: out of memory\n", argv[i]); return 2; }
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
    }
    printf("replayed %d input(s)\n", argc - 1);
    return 0;
}
