/* server/s3/creds.c: credentials the AWS way, and never a secret in a
 * message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "server/s3/s3.h"

static const char file_text[] =
    "# comment\n"
    "; another\n"
    "[default]\n"
    "aws_access_key_id = AKIDDEFAULT\n"
    "aws_secret_access_key = s3cr3t-default\n"
    "region = ignored\n"
    "\n"
    "[profile ci]\r\n"
    "  aws_access_key_id=AKIDCI  \r\n"
    "aws_secret_access_key=s3cr3t=ci\r\n"
    "aws_session_token = tok\r\n"
    "[half]\n"
    "aws_access_key_id = AKIDHALF\n";

static int parse(const char *text, const char *profile, struct cd_s3_creds *c,
                 struct cairn_err *err)
{
    return cd_s3_creds_parse(text, strlen(text), profile, "creds", c, err);
}

static void test_parse_profiles(void **state)
{
    (void)state;
    struct cd_s3_creds c;
    struct cairn_err err = {0};
    assert_int_equal(parse(file_text, "default", &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDDEFAULT");
    assert_string_equal(c.secret_key, "s3cr3t-default");
    assert_string_equal(c.session_token, "");
    assert_int_equal(parse(file_text, "ci", &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDCI");
    assert_string_equal(c.secret_key, "s3cr3t=ci"); /* '=' inside a value */
    assert_string_equal(c.session_token, "tok");
}

static void test_parse_errors_name_no_secret(void **state)
{
    (void)state;
    struct cd_s3_creds c;
    memset(&c, 0x5a, sizeof c);
    struct cairn_err err = {0};
    assert_int_equal(parse(file_text, "nope", &c, &err), CAIRN_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "no profile [nope]"));
    assert_int_equal(parse(file_text, "half", &c, &err), CAIRN_E_NOTFOUND);
    assert_int_equal(parse("[a]\naws_secret_access_key = hunter2\nno equals sign\n", "a", &c,
                           &err),
                     CAIRN_E_PARSE);
    assert_non_null(strstr(err.msg, "creds:3"));
    assert_null(strstr(err.msg, "hunter2"));
    assert_int_equal(parse("[a\n", "a", &c, &err), CAIRN_E_PARSE);
    char big[600];
    int n = snprintf(big, sizeof big, "[a]\naws_access_key_id=x\naws_secret_access_key=");
    memset(big + n, 'S', 300);
    big[n + 300] = '\0';
    assert_int_equal(parse(big, "a", &c, &err), CAIRN_E_TOOBIG);
    assert_null(strstr(err.msg, "SSSS"));
    assert_int_equal((unsigned char)c.access_key[0], 0x5a); /* untouched */
}

static char dir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cairn-s3creds.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    setenv("HOME", dir, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void test_load_precedence(void **state)
{
    (void)state;
    struct cd_s3_creds c;
    struct cairn_err err = {0};
    /* Nothing anywhere: a message that says what to set. */
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), CAIRN_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));

    /* ~/.aws/credentials, profile from AWS_PROFILE. */
    char aws[96];
    snprintf(aws, sizeof aws, "%s/.aws", dir);
    assert_int_equal(mkdir(aws, 0700), 0);
    write_file(".aws/credentials", file_text);
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDDEFAULT");
    setenv("AWS_PROFILE", "ci", 1);
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDCI");
    /* The profile argument beats AWS_PROFILE. */
    assert_int_equal(cd_s3_creds_load(NULL, "default", &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDDEFAULT");

    /* AWS_SHARED_CREDENTIALS_FILE moves the file. */
    const char *other = write_file("other", "[ci]\naws_access_key_id=AKIDOTHER\n"
                                            "aws_secret_access_key=x\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", other, 1);
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDOTHER");

    /* The environment beats the shared file. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDENV");
    assert_string_equal(c.secret_key, "envsecret");
    assert_string_equal(c.session_token, "envtoken");

    /* The file flag beats the environment. */
    const char *flag = write_file("flag", "[ci]\naws_access_key_id=AKIDFLAG\n"
                                          "aws_secret_access_key=y\n");
    assert_int_equal(cd_s3_creds_load(flag, NULL, &c, &err), 0);
    assert_string_equal(c.access_key, "AKIDFLAG");
    assert_string_equal(c.session_token, "");

    /* A key id without a secret is an error, not a fallback. */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(cd_s3_creds_load(NULL, NULL, &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "AWS_SECRET_ACCESS_KEY"));
    assert_int_equal(cd_s3_creds_load("/nonexistent/creds", NULL, &c, &err),
                     CAIRN_E_NOTFOUND);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SESSION_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_profiles),
        cmocka_unit_test(test_parse_errors_name_no_secret),
        cmocka_unit_test_setup_teardown(test_load_precedence, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
