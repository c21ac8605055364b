/* Layers: OCI layer tarballs written in one pass (tar -> diff_id hash ->
 * compressor -> blob hash -> file) and unpacked into snapshot directories;
 * a writer can also write the unpacked tree as it goes (the mirror), so a
 * layer that is needed unpacked right away is not read back.
 *
 * Written layers are deterministic: entries in the order added (callers add
 * in byte order of path), numeric uid/gid only (no user/group names), no
 * atime/ctime, PAX headers only where needed, and with a source date epoch
 * every mtime is clamped to it. Whiteouts follow the OCI image spec:
 * ".wh.<name>" for a deleted path, ".wh..wh..opq" inside a directory whose
 * lower contents are hidden.
 *
 * Thread-safety: a writer is used by one thread; separate writers and
 * unpacks may run in parallel.
 */
#ifndef CAIRN_CLIENT_LAYER_H
#define CAIRN_CLIENT_LAYER_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum cairn_compression {
    CAIRN_COMPRESS_GZIP,
    CAIRN_COMPRESS_ZSTD,
    CAIRN_COMPRESS_NONE,
};

#define CAIRN_MEDIA_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define CAIRN_MEDIA_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define CAIRN_MEDIA_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
/* Docker's media type (docker save archives), read on import/load. */
#define CAIRN_MEDIA_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* "sha256:" + 64 hex + NUL */
#define CAIRN_DIGEST_STR_LEN 72

struct cairn_layer_desc {
    char digest[CAIRN_DIGEST_STR_LEN];  /* of the blob as stored */
    char diff_id[CAIRN_DIGEST_STR_LEN]; /* of the uncompressed tar */
    int64_t size;                       /* blob bytes */
    const char *media_type;             /* static string, one of above */
};

struct cairn_layer_writer;

/* A member of a gzip layer blob that a later layer may reuse (the member
 * layout of client/store/layer_gzm.h): key names its uncompressed bytes
 * and the codec (layer_pgzip.h), offset and size place it in the blob. */
struct cairn_layer_member {
    uint8_t key[32];
    uint64_t offset;
    uint32_t size;
};

/* Member reuse for a gzip layer (docs/build.md, "Compression"): find
 * names where an earlier blob holds the member with a key (see struct
 * layer_pgzip_reuse in client/store/layer_pgzip.h: thread-safe, 0 on a
 * hit, anything else a miss; every candidate is checked before use, so
 * the blob is byte for byte the one a writer without reuse makes). On a
 * successful cairn_layer_writer_finish the writer fills the rest: the
 * members of the new blob worth recording (malloc'd, owned by the caller:
 * cairn_layer_reuse_clear frees them) and how many members came from
 * earlier blobs. Record the members only once the blob is in the store. */
struct cairn_layer_reuse {
    int (*find)(void *arg, const uint8_t key[32], char *path, size_t cap,
                uint64_t *offset, uint32_t *size);
    void *arg;
    struct cairn_layer_member *members;
    size_t nmembers;
    size_t reused;
};

/* Frees r's members and zeroes the results (find and arg stay). NULL is
 * fine. */
void cairn_layer_reuse_clear(struct cairn_layer_reuse *r);

struct cairn_layer_opts {
    enum cairn_compression compression;
    int64_t source_date_epoch; /* < 0: keep file times */
    /* Called now and then with bytes written so far (a progress line);
     * may be NULL. */
    void (*progress)(void *arg, uint64_t tar_bytes);
    void *progress_arg;
    /* gzip only, may be NULL: where earlier members are found and where
     * the new ones are reported; borrowed until the writer is finished or
     * aborted. */
    struct cairn_layer_reuse *reuse;
};

/* Starts a layer written to a new file in tmpdir (same file system as the
 * store, so the finished blob can be renamed into place). */
int cairn_layer_writer_new(const char *tmpdir,
                           const struct cairn_layer_opts *opts,
                           struct cairn_layer_writer **out,
                           struct cairn_err *err);

/* Metadata of one entry. path is relative to the layer root, no leading
 * "/" or "./", '/'-separated. */
struct cairn_layer_entry {
    const char *path;
    mode_t mode; /* type bits (S_IFREG, S_IFDIR, S_IFLNK) and permissions */
    uid_t uid;
    gid_t gid;
    int64_t mtime; /* seconds */
    const char *link_target; /* symlinks */
};

/* Adds a directory or symlink entry (no content). */
int cairn_layer_add(struct cairn_layer_writer *w,
                    const struct cairn_layer_entry *e, struct cairn_err *err);
/* Adds a regular file whose content is read from fd (size bytes). */
int cairn_layer_add_file(struct cairn_layer_writer *w,
                         const struct cairn_layer_entry *e, int fd,
                         int64_t size, struct cairn_err *err);
/* Adds a regular file with content from memory (heredoc COPY). */
int cairn_layer_add_data(struct cairn_layer_writer *w,
                         const struct cairn_layer_entry *e, const void *data,
                         size_t len, struct cairn_err *err);
/* Feeds n bytes of an uncompressed layer made elsewhere, kept byte for
 * byte (cairn import keeps the tar it is given, so its diff_id is
 * Docker's): the whole layer is then the concatenation of the bytes fed,
 * no entry can be added (nor before the first call), and finish hashes
 * and compresses it as any layer, in the same one pass. */
int cairn_layer_add_raw(struct cairn_layer_writer *w, const void *p, size_t n,
                        struct cairn_err *err);
/* Adds ".wh.<name>" for path (deleted), or ".wh..wh..opq" inside dir. */
int cairn_layer_add_whiteout(struct cairn_layer_writer *w, const char *path,
                             struct cairn_err *err);
int cairn_layer_add_opaque(struct cairn_layer_writer *w, const char *dir,
                           struct cairn_err *err);

/* Adds everything under an overlayfs upper directory, in byte order of
 * path: overlay whiteouts (char device 0/0) become ".wh." entries, a
 * directory with the trusted.overlay.opaque=y xattr gets ".wh..wh..opq",
 * hard links inside the tree become tar hard links. Paths listed in skip
 * (relative, NULL-terminated, may be NULL) are left out (mount points the
 * sandbox created). Sockets are left out (tar cannot hold them);
 * overlayfs' own xattrs (trusted.overlay.*, user.overlay.*) are dropped;
 * an upper directory that needs its lower layers (metacopy or redirect
 * xattrs) fails with CAIRN_E_UNSUPPORTED. */
int cairn_layer_add_upper(struct cairn_layer_writer *w, const char *upperdir,
                          const char *const *skip, struct cairn_err *err);
/* cairn_layer_add_upper, and then, once every entry is in the layer,
 * turns upperdir itself into the tree cairn_layer_unpack would make from
 * the finished layer, so that the store can adopt it as the layer's
 * snapshot (cairn_store_snapshot_adopt) instead of unpacking the blob
 * again and deleting the upper directory: overlayfs' attributes go
 * (trusted.overlay.opaque=y stays on opaque directories), every entry but
 * the whiteouts gets the tar's mtime (whole seconds, clamped to the
 * source date epoch) and an atime of now, the root gets mode 0755. Only
 * metadata changes. *settled is true when that is done; false when the
 * upper directory holds something the layer leaves out (a socket, a path
 * of skip) or a change failed (the layer is not affected: the caller
 * removes upperdir as before). Nothing may write under upperdir
 * meanwhile; the caller may read it (mount it as a lower layer) once the
 * call returns. */
int cairn_layer_add_upper_settle(struct cairn_layer_writer *w,
                                 const char *upperdir,
                                 const char *const *skip, bool *settled,
                                 struct cairn_err *err);

/* ADD's archive rule (Docker's): *yes is set when the file at path is a
 * tar archive with at least one entry, plain or compressed with gzip,
 * bzip2, xz or zstd. Anything else (unreadable, zip, a lone .gz) is not,
 * and ADD copies it as a file. Always returns 0. */
int cairn_layer_is_archive(const char *path, bool *yes);

/* How the entries of an archive go into a layer. */
struct cairn_layer_extract {
    const char *dest; /* layer path the archive root maps to; "" = root */
    bool chown;       /* true: every entry gets uid:gid (ADD --chown) */
    uid_t uid;
    gid_t gid;
    /* Called before each entry is added with its layer path and mode, so
     * the caller can add missing parent directories. Returns 0 to add the
     * entry, 1 to leave it out (a directory already in the layer), or a
     * negative error (err set), which stops the extraction. May be NULL. */
    int (*entry)(void *arg, const char *path, mode_t mode,
                 struct cairn_err *err);
    void *arg;
};

/* Adds every entry of the tar archive at path (see cairn_layer_is_archive
 * for the compressions) under x->dest, as Docker's ADD extracts it:
 * modes, times (clamped to the source date epoch), xattrs, symlinks, hard
 * links and devices as in the archive, owners from the archive unless
 * x->chown. Entries escaping dest ("..", a relative symlink target or
 * hard link leaving it, a path through a symlink the archive made), hard
 * links whose target is not a file an earlier entry of the archive made
 * (the entries written follow the unpack rules, client/store/layer_rules.h, so
 * the layer can be unpacked), names starting with ".wh." and 0/0
 * character devices (both mean deletion in a layer) are refused with
 * CAIRN_E_CORRUPT naming the archive and the entry; sockets are skipped.
 * A corrupt
 * or truncated archive is CAIRN_E_CORRUPT. After an error the layer is
 * incomplete: the caller aborts w. */
int cairn_layer_add_archive(struct cairn_layer_writer *w, const char *path,
                            const struct cairn_layer_extract *x,
                            struct cairn_err *err);

/* Also writes every entry added from now on into dir, an existing empty
 * directory (dir itself is not touched), as cairn_layer_unpack would make
 * it from the finished layer: same paths, types, modes, owners, mtimes
 * (clamped like the tar's) and symlink targets; entries without an atime
 * get the time the mirror started, as an unpack gives them. A COPY then
 * needs no second pass over its files to get its snapshot.
 *
 * Only entries added with cairn_layer_add, cairn_layer_add_file and
 * cairn_layer_add_data are mirrored. Whiteouts, opaque markers, archives
 * and upper directories, a parent that is missing or a symlink, a
 * directory in the way of a file, or any failure to write the tree drop
 * the mirror silently (the layer itself is never affected):
 * cairn_layer_writer_mirror_end then reports it incomplete, and the
 * caller discards dir and unpacks the layer when it needs the tree. Must
 * be called before the first entry; w borrows nothing from dir. */
int cairn_layer_writer_mirror(struct cairn_layer_writer *w, const char *dir,
                              struct cairn_err *err);
/* Ends the mirror before cairn_layer_writer_finish: gives the directories
 * their modes and times (deepest first, as the unpack does) and sets
 * *complete when dir now holds exactly the tree of the layer's entries.
 * false also when no mirror was started or it was dropped. Returns 0, or
 * CAIRN_E_INVAL for NULL arguments. */
int cairn_layer_writer_mirror_end(struct cairn_layer_writer *w, bool *complete);

/* Finishes the tar and compressor. On success *desc is filled and
 * *blob_path (malloc'd) names the finished blob file in tmpdir, which the
 * caller renames into the store or unlinks. Frees w in every case. */
int cairn_layer_writer_finish(struct cairn_layer_writer *w,
                              struct cairn_layer_desc *desc, char **blob_path,
                              struct cairn_err *err);
/* Discards the layer (removes the temporary file) and frees w. Accepts
 * NULL. */
void cairn_layer_writer_abort(struct cairn_layer_writer *w);

/* Unpacks the layer blob at blob_path (gzip, zstd or plain tar, detected
 * from the content) into dest, an empty directory, as an overlayfs lower
 * layer: ".wh.x" becomes a 0/0 char device x, ".wh..wh..opq" sets
 * trusted.overlay.opaque=y on its directory. Owners, modes, times, xattrs
 * and hard links are restored. Entries the unpack rules refuse
 * (client/store/layer_rules.h: absolute paths, "..", symlinked parents, hard
 * links to nothing this layer made, ...) are refused with CAIRN_E_CORRUPT
 * naming the entry. When
 * diff_id is not NULL, the uncompressed stream is hashed and a mismatch
 * is CAIRN_E_DIGEST. Truncated or corrupt blobs are CAIRN_E_CORRUPT; disk
 * trouble (ENOSPC, EIO, ...) keeps its negative errno. An owner, mode or
 * xattr that cannot be restored is an error, not a warning. On failure
 * dest holds a partial tree for the caller to remove. */
int cairn_layer_unpack(const char *blob_path, const char *dest,
                       const char *diff_id, struct cairn_err *err);

/* What a layer blob from elsewhere (a shared cache) must be. */
struct cairn_layer_expect {
    const char *digest;     /* "sha256:<hex>" of the blob */
    const char *diff_id;    /* "sha256:<hex>" of the uncompressed tar */
    const char *media_type; /* CAIRN_MEDIA_LAYER_*: gzip, zstd or plain */
    int64_t size;           /* blob bytes */
    int64_t max_tar;        /* cap on the uncompressed bytes; <= 0: none */
};

/* Verifies the layer blob read from fd (borrowed, read to its end unless
 * a check fails first; the caller closes it) in one pass, one
 * decompression, before anything uses it: its magic bytes are those of
 * want->media_type and it decodes with that codec; every tar entry
 * follows the unpack rules (client/store/layer_rules.h: the same code the
 * unpacker runs); the tar has at least one entry (a step that changed
 * nothing has no layer); its digest and size are want's, its
 * uncompressed stream hashes to want->diff_id and is at most
 * want->max_tar bytes (checked as it decompresses: a bomb stops there).
 * Reading stops at want->size bytes. A refusal is CAIRN_E_CORRUPT,
 * CAIRN_E_DIGEST or CAIRN_E_TOOBIG with a sentence naming the blob and,
 * for an entry, the entry and the rule; a read error keeps its errno. */
int cairn_layer_verify_fd(int fd, const struct cairn_layer_expect *want,
                          struct cairn_err *err);

/* Computes both digests of an existing blob file (import/load). */
int cairn_layer_digest_file(const char *blob_path,
                            struct cairn_layer_desc *desc,
                            struct cairn_err *err);

#endif
