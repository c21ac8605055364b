/* Fuzz target for client/store/layer_read.c's unpack: any input must unpack
 * or fail cleanly (no crash, no leak, nothing written outside the
 * destination).
 *
 * Seeds must not be binary files, so an input is one of two things:
 * - "R" followed by raw blob bytes (gzip, zstd or tar; the fuzzer finds
 *   its way from the text seeds to these);
 * - a text recipe that this target turns into a tar first: a first line
 *   "tar", "gz" or "zst", then one entry per line, "<t> <name> [<arg>]"
 *   with t one of f (file, arg = content), d (directory), l (symlink,
 *   arg = target), h (hard link, arg = target).
 * After each run the destination is removed, and a sentinel directory next
 * to it must still be empty. */
#include "client/store/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Builds the tar a recipe describes into path; 0 on success. */
static int recipe_to_blob(char *text, const char *path)
{
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (line == NULL)
        return -1;
    struct archive *a = archive_write_new();
    if (a == NULL)
        return -1;
    archive_write_set_format_pax_restricted(a);
    if (strcmp(line, "gz") == 0)
        archive_write_add_filter_gzip(a);
    else if (strcmp(line, "zst") == 0)
        archive_write_add_filter_zstd(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        archive_write_free(a);
        return -1;
    }
    struct archive_entry *ae = archive_entry_new();
    while (ae != NULL && (line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *sp = NULL;
        char *t = strtok_r(line, " ", &sp);
        char *name = strtok_r(NULL, " ", &sp);
        char *arg = strtok_r(NULL, "", &sp);
        if (t == NULL || name == NULL)
            continue;
        archive_entry_clear(ae);
        archive_entry_copy_pathname(ae, name);
        size_t len = 0;
        switch (t[0]) {
        case 'd':
            archive_entry_set_mode(ae, S_IFDIR | 0755);
            break;
        case 'l':
            archive_entry_set_mode(ae, S_IFLNK | 0777);
            archive_entry_copy_symlink(ae, arg ? arg : "");
            break;
        case 'h':
            archive_entry_set_mode(ae, S_IFREG | 0644);
            archive_entry_copy_hardlink(ae, arg ? arg : "");
            break;
        default:
            archive_entry_set_mode(ae, S_IFREG | 0644);
            len = arg ? strlen(arg) : 0;
            break;
        }
        archive_entry_set_size(ae, (la_int64_t)len);
        if (archive_write_header(a, ae) >= ARCHIVE_WARN && len > 0)
            archive_write_data(a, arg, len);
    }
    archive_entry_free(ae);
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > (1 << 20))
        return 0;
    char root[] = "/tmp/cairn-fuzz-layer-XXXXXX";
    if (mkdtemp(root) == NULL)
        return 0;
    char blob[64], dest[64], fence[64];
    snprintf(blob, sizeof blob, "%s/blob", root);
    snprintf(dest, sizeof dest, "%s/dest", root);
    snprintf(fence, sizeof fence, "%s/fence", root);
    mkdir(dest, 0755);
    mkdir(fence, 0755);
    int ok = -1;
    if (data[0] == 'R') {
        FILE *f = fopen(blob, "wb");
        if (f != NULL) {
            ok = fwrite(data + 1, 1, size - 1, f) == size - 1 ? 0 : -1;
            fclose(f);
        }
    } else {
        char *text = malloc(size + 1);
        if (text != NULL) {
            memcpy(text, data, size);
            text[size] = '\0';
            ok = recipe_to_blob(text, blob);
            free(text);
        }
    }
    if (ok == 0) {
        struct cairn_err err;
        struct cairn_layer_desc d;
        cairn_layer_unpack(blob, dest, NULL, &err);
        cairn_layer_digest_file(blob, &d, &err);
    }
    /* Nothing may land beside dest: the fence stays empty. */
    DIR *dir = opendir(fence);
    if (dir != NULL) {
        struct dirent *de;
        while ((de = readdir(dir)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                abort();
        closedir(dir);
    }
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
