/* tests/test_file.c: al_read_file (core/file.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../core/alloc.h"
#include "../core/file.h"

static void test_read_file(void **state)
{
    (void)state;
    char path[] = "/tmp/alloy-test-file.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    /* longer than the first 4096-byte buffer, with a NUL inside */
    size_t n = 10000;
    char *want = malloc(n);
    for (size_t i = 0; i < n; i++) want[i] = (char)(i * 31 % 251);
    assert_int_equal(write(fd, want, n), (ssize_t)n);
    close(fd);
    char *got;
    size_t len;
    al_error err = {0};
    assert_int_equal(al_read_file(path, n, "thing", &got, &len, &err), AL_OK);
    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
    assert_int_equal(got[n], '\0');
    al_free(got);
    /* one byte over the limit */
    assert_int_equal(al_read_file(path, n - 1, "thing", &got, &len, &err), AL_ERR_FORMAT);
    assert_null(got);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "the most a thing may have"));
    /* out of memory: clean failure */
    al_alloc_fail_at(2);
    assert_int_equal(al_read_file(path, n, "thing", &got, NULL, &err), AL_ERR_NOMEM);
    al_alloc_fail_at(0);
    assert_null(got);
    unlink(path);
    assert_int_equal(al_read_file(path, n, "thing", &got, &len, &err), AL_ERR_IO);
    assert_non_null(strstr(err.msg, "No such file"));
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_read_file) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
