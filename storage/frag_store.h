/* The fragment store: one storage node's fragments on its local disk, checked per 64 KiB block. */
#ifndef DFS_STORAGE_FRAG_STORE_H
#define DFS_STORAGE_FRAG_STORE_H

#include "common/crc32c.h"
#include "storage/frag_header.h"

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * On disk, under the data directory given to dfs_frag_store_open:
 *
 *     DATA_DIR/node.id                       the node's id: 32 lower-case hex digits, "\n"
 *     DATA_DIR/fragments/ab/cd/<fragment-id> one file per fragment; ab, cd: its first 4 digits
 *     DATA_DIR/tmp/                          partial writes; all of it is removed at open
 *
 * node.id is created on the first open (written to tmp/, fsynced, renamed, directory fsynced) and
 * never rewritten; a node.id that is not a well-formed id fails the open rather than being
 * replaced, since the node's identity is what the catalog knows it by.
 *
 * Fragment files: a 128-byte header, the data, then a CRC32C per 64 KiB block; the bytes are
 * documented, encoded and decoded in storage/frag_header.h. A file is only ever renamed into
 * fragments/ once it is complete and fsynced: nothing partial is visible there.
 */

/*
 * The system calls the store makes, as a const vtable (STYLE rules 10 and 13) so that tests can
 * inject faults: ENOSPC from pwrite, EIO from fsync, short reads from pread/preadv. Every member
 * has the signature and errno convention of the POSIX call it is named after (openat takes its mode
 * always). The store never calls the plain libc functions behind this table's back.
 */
struct dfs_io_ops {
    int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t offset);
    ssize_t (*preadv)(int fd, const struct iovec *iov, int iovcnt, off_t offset);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t offset);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t offset);
    int (*fsync)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*fstatat)(int dirfd, const char *path, struct stat *st, int flags);
    int (*fstatvfs)(int fd, struct statvfs *st);
    int (*mkdirat)(int dirfd, const char *path, mode_t mode);
    int (*renameat)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
    int (*renameat2)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags);
    int (*unlinkat)(int dirfd, const char *path, int flags);
    int (*flock)(int fd, int operation);
    /* Directory listing: fdopendir takes ownership of fd (closedir closes it). */
    DIR *(*fdopendir)(int fd);
    struct dirent *(*readdir)(DIR *dir);
    int (*closedir)(DIR *dir);
};

/* The real system calls; what a NULL io means. A static table: never freed. */
const struct dfs_io_ops *dfs_io_posix(void);

/*
 * Thread-safety: a dfs_frag_store is shared by any number of threads at once; every function that
 * takes only the store (open/close excepted) may be called concurrently. A dfs_frag_writer and a
 * dfs_frag_reader belong to one thread at a time (or are handed over with proper synchronisation);
 * different writers and readers run in parallel. Every writer and reader must be finished (commit,
 * abort, close) before the store is closed.
 *
 * Concurrent operations on the same fragment id are serialised where they change what is stored:
 * a commit that replaces a fragment and a delete of it each take effect atomically, and the store's
 * fragment count and byte total stay exact. A reader opened before a replace or delete keeps
 * reading the old contents to its end (it holds the old file open).
 */
typedef struct dfs_frag_store dfs_frag_store;
typedef struct dfs_frag_writer dfs_frag_writer;
typedef struct dfs_frag_reader dfs_frag_reader;

/*
 * Open the store in data_dir: create data_dir (and missing parents), fragments/ and tmp/ as needed,
 * take an exclusive lock on data_dir (flock; a second open of a directory in use, by this or any
 * process, fails with DFS_EPRECOND), empty tmp/, load node.id or create it, and count the stored
 * fragments and their bytes by scanning fragments/ (file lengths only; no data is read).
 *
 * data_dir is copied. io is borrowed and must outlive the store; NULL means dfs_io_posix().
 * Returns 0 and *out (close it with dfs_frag_store_close), or DFS_EINVAL (empty path), DFS_EPRECOND
 * (locked), DFS_EDATALOSS (node.id is corrupt), DFS_EPERM, DFS_ENOSPC, DFS_EIO, DFS_ENOMEM with a
 * message in *errmsg; on failure *out is untouched and nothing stays open.
 */
int dfs_frag_store_open(const char *data_dir, const struct dfs_io_ops *io, dfs_frag_store **out,
                        char **errmsg);

/* Release the store and its lock. Accepts NULL. No writer or reader may be left open. */
void dfs_frag_store_close(dfs_frag_store *store);

/* The node's persistent id (32 lower-case hex digits). Borrowed: valid until the store closes. */
const char *dfs_frag_store_node_id(const dfs_frag_store *store);

struct dfs_frag_store_stats {
    uint64_t fragments;      /* fragments stored */
    uint64_t used_bytes;     /* sum of their file lengths: header + data + CRC table */
    uint64_t capacity_bytes; /* size of the file system holding the store (statvfs) */
    uint64_t free_bytes;     /* bytes still available to the store on it (statvfs f_bavail) */
};

/*
 * Fill *out. fragments and used_bytes are one consistent snapshot of the store's counters (kept up
 * to date by every commit and delete, and recounted from disk at open). Returns 0, or DFS_EIO when
 * the file system cannot be queried; the counters are filled in either case (capacity and free are
 * then 0).
 */
int dfs_frag_store_stats(dfs_frag_store *store, struct dfs_frag_store_stats *out);

/* ---- writing ---- */

/*
 * Start storing `size` data bytes as fragment_id. The data goes to a new file in tmp/ and becomes
 * visible only at dfs_frag_writer_commit. fragment_id must be dfs_fragment_id_valid (40 lower-case
 * hex digits; anything else, which could name a path outside the data directory, is DFS_EINVAL and
 * creates nothing); it is copied. size is at most DFS_FRAG_MAX_SIZE (DFS_EINVAL).
 *
 * Memory: a writer holds 4 bytes per 64 KiB block received (the CRC table), nothing else grows.
 * Returns 0 and *out (finish it with exactly one of commit or abort), or a DFS_E code with *errmsg;
 * on failure *out is untouched and no temporary file is left.
 */
int dfs_frag_writer_begin(dfs_frag_store *store, const char *fragment_id, uint64_t size,
                          dfs_frag_writer **out, char **errmsg);

/*
 * Append the next len bytes of the fragment. crcs[0..ncrcs) are the CRC32C of each consecutive
 * 64 KiB piece of data (the last may be short); ncrcs must equal dfs_crc32c_nblocks(len). Rules:
 *   - every append but the one that ends the fragment must be a multiple of 64 KiB, so that the
 *     pieces are the fragment's blocks (DFS_EINVAL);
 *   - no bytes beyond the size given to begin (DFS_EINVAL);
 *   - every piece's CRC is recomputed and must match (DFS_EDATALOSS "crc mismatch in block N", N
 *     counted from the start of the fragment); nothing of a failing append is written;
 *   - an append of 0 bytes (and 0 crcs) does nothing and is always allowed.
 * The data goes to the file with one pwrite (no copy); data and crcs are only read during the call.
 * Disk full is DFS_ENOSPC, other I/O errors DFS_EIO.
 *
 * After any failure the writer accepts nothing more: the caller must still commit (which then
 * fails) or, preferably, abort it.
 */
int dfs_frag_writer_append(dfs_frag_writer *w, const void *data, size_t len, const uint32_t *crcs,
                           size_t ncrcs, char **errmsg);

/*
 * dfs_frag_writer_append of the bytes of iov[0..niov) in order (len is their total), as a
 * received message lies in its slices: the same rules and checks (a 64 KiB piece may span iovecs;
 * its CRC is computed across them), written with pwritev from the iovecs themselves, so a message
 * that arrived in many pieces is not first copied into one buffer. iov is only read.
 */
int dfs_frag_writer_append_iov(dfs_frag_writer *w, const struct iovec *iov, size_t niov, size_t len,
                               const uint32_t *crcs, size_t ncrcs, char **errmsg);

/*
 * Make the fragment durable and visible: requires exactly `size` bytes appended (DFS_EINVAL
 * otherwise); writes the CRC table and the header, fsyncs the file, renames it to
 * fragments/ab/cd/<id> and fsyncs that directory. ab/ and cd/ are created when missing; the first
 * commit into each in the life of a store fsyncs it and its parent (a directory left by a process
 * that died before its fsync may exist only in the page cache). Only then does it return 0, with
 * the fragment checksum (dfs_crc32c_of_table of the block CRCs) in *checksum_out when that is not
 * NULL. A fragment already stored under the id is replaced atomically: readers see the old or the
 * new file, never a mix.
 *
 * Always frees the writer. On failure (DFS_EINVAL, DFS_EPRECOND after a failed append, DFS_ENOSPC,
 * DFS_EIO, ...) the temporary file is removed and whatever was stored under the id before is left
 * as it was, with one exception: if the final directory fsync fails (DFS_EIO), the new fragment is
 * already in place but may not survive a crash; a retry of the put is then the cure.
 */
int dfs_frag_writer_commit(dfs_frag_writer *w, uint32_t *checksum_out, char **errmsg);

/*
 * dfs_frag_writer_commit for the put path, where fragments are write-once: a fragment id names
 * one fragment of one immutable file version, so a put never has a reason to replace a stored
 * fragment (repairs, which may replace a copy found corrupt, use dfs_frag_writer_commit). The
 * test is made at the rename itself (renameat2 RENAME_NOREPLACE, under the id's lock; where the
 * file system lacks it, a look under the same lock, which every commit and delete of the id
 * takes), so of two writes of one id at once only one lands.
 *
 * When a fragment is already stored under the id: if it has this write's size and checksum (a
 * retry whose answer was lost), the write is dropped and the call returns 0 with *already true
 * and the checksum; otherwise (other bytes, or a stored file whose header does not read) it
 * returns DFS_EEXIST, and the stored fragment stays as it was. *already (may be NULL) is false
 * when this write was placed. The directory is fsynced in both successful cases, so a retry
 * still cures a commit whose final fsync failed. Always frees the writer, as commit does.
 */
int dfs_frag_writer_commit_new(dfs_frag_writer *w, uint32_t *checksum_out, bool *already,
                               char **errmsg);

/* Drop the write: remove the temporary file and free the writer. Accepts NULL. */
void dfs_frag_writer_abort(dfs_frag_writer *w);

/* ---- reading ---- */

/*
 * Open a stored fragment for reading. Checks the header (magic, version, block size, header CRC,
 * the id it names), that the file length matches it, and the CRC table against the fragment
 * checksum; the table (4 bytes per 64 KiB) stays in memory so reads never go back to it. The data
 * itself is checked block by block as it is read.
 *
 * fragment_id is copied. Returns 0 and *out (release with dfs_frag_reader_close), DFS_EINVAL (bad
 * id), DFS_ENOTFOUND, DFS_EDATALOSS (the file is corrupt), DFS_EIO, DFS_ENOMEM; on failure *out is
 * untouched.
 */
int dfs_frag_reader_open(dfs_frag_store *store, const char *fragment_id, dfs_frag_reader **out,
                         char **errmsg);

/* Data bytes in the fragment. */
uint64_t dfs_frag_reader_size(const dfs_frag_reader *r);
/* The fragment checksum from its header (dfs_crc32c_of_table of its block CRCs). */
uint32_t dfs_frag_reader_checksum(const dfs_frag_reader *r);
/* When the fragment was committed, in milliseconds since the Unix epoch. */
int64_t dfs_frag_reader_stored_ms(const dfs_frag_reader *r);

/*
 * Read data bytes [offset, offset + len) into buf[0..len) and put the CRC32C of each consecutive
 * 64 KiB piece of buf (the last may be short) into crcs_out[0..dfs_crc32c_nblocks(len)), i.e. what
 * a GetFragment chunk carries. Every stored block the range touches is read whole and checked
 * against the CRC table; a mismatch is DFS_EDATALOSS "fragment X block N is corrupt" (other blocks
 * stay readable). A range past the end is DFS_ERANGE; len 0 reads nothing and succeeds for any
 * offset up to the size.
 *
 * Cost: one pread (preadv when the range does not start and end on block boundaries, the partial
 * blocks going to the reader's own scratch buffers) and one CRC pass over the blocks. When offset
 * is block-aligned the piece CRCs are the block CRCs that pass already produced (equal to the
 * stored ones); an unaligned offset costs a second CRC pass over buf. So a server streams a
 * fragment in aligned 1 MiB reads for the price of the disk read and one CRC32C pass.
 *
 * buf and crcs_out are only written during the call; on failure their contents are unspecified.
 */
int dfs_frag_reader_read(dfs_frag_reader *r, uint64_t offset, void *buf, size_t len,
                         uint32_t *crcs_out, char **errmsg);

/* Release a reader. Accepts NULL. Mappings made from it stay valid until their last unref. */
void dfs_frag_reader_close(dfs_frag_reader *r);

/*
 * Mapped reads: data served straight from the page cache, without dfs_frag_reader_read's copy
 * into the caller's buffer (a server hands the mapped bytes to the network). A mapping is
 * reference-counted and thread-safe: ref and unref from any thread; the last unref unmaps it,
 * whether or not the reader is still open.
 */
typedef struct dfs_frag_map dfs_frag_map;

/*
 * Map data bytes [offset, offset + len) of the fragment read-only. Returns 0 and *out (one
 * reference), or 0 and *out = NULL when mapping is not possible or not wanted (mmap failed, len 0,
 * or the store runs on an injected io table, whose faults must see every read): then read with
 * dfs_frag_reader_read. A range past the end is DFS_ERANGE.
 */
int dfs_frag_reader_map(dfs_frag_reader *r, uint64_t offset, uint64_t len, dfs_frag_map **out,
                        char **errmsg);
void dfs_frag_map_ref(dfs_frag_map *m);
void dfs_frag_map_unref(dfs_frag_map *m); /* accepts NULL */

/*
 * Like dfs_frag_reader_read without the copy: check the stored blocks [offset, offset + len) of
 * mapping m (made from r) against the CRC table and point *data at them in the mapping (valid
 * while the caller holds a reference to m), with their CRCs in crcs_out. Only for a range of whole
 * blocks (offset block-aligned; len a multiple of 64 KiB or reaching the end of the fragment) of
 * at most 4 MiB inside the mapping, and only when every page of it is in memory, since touching a
 * page the kernel must read from disk turns a disk error into a SIGBUS: otherwise it returns 0
 * with *data = NULL and touches nothing, and the caller reads the range with dfs_frag_reader_read
 * (which brings it into memory for next time). A corrupt block is DFS_EDATALOSS as for a read.
 */
int dfs_frag_reader_peek(dfs_frag_reader *r, dfs_frag_map *m, uint64_t offset, size_t len,
                         const unsigned char **data, uint32_t *crcs_out, char **errmsg);

/* ---- other verbs ---- */

/*
 * Remove a stored fragment; its directory is fsynced before returning. Removing a fragment that is
 * not there succeeds. *existed (when existed is not NULL) says whether it was there. Readers that
 * have it open keep reading it. Returns 0, DFS_EINVAL (bad id) or DFS_EIO.
 */
int dfs_frag_store_delete(dfs_frag_store *store, const char *fragment_id, bool *existed,
                          char **errmsg);

struct dfs_frag_info {
    uint64_t size;     /* data bytes */
    uint32_t checksum; /* dfs_crc32c_of_table of the block CRCs */
    int64_t stored_ms; /* commit time, ms since the Unix epoch */
};

/*
 * Size, checksum and commit time of a stored fragment, from its header alone (checked as by
 * dfs_frag_reader_open, with the file length; neither data nor table is read). Returns 0,
 * DFS_EINVAL, DFS_ENOTFOUND, DFS_EDATALOSS or DFS_EIO; *out is only written on success.
 */
int dfs_frag_store_stat(dfs_frag_store *store, const char *fragment_id, struct dfs_frag_info *out,
                        char **errmsg);

/*
 * Called once per stored fragment: fragment_id is borrowed for the call only; size is the data size
 * its file length implies (DFS_FRAG_SIZE_UNKNOWN if none; nothing is read or verified, open a
 * reader for that). Return 0 to go on, or a DFS_E code to stop the iteration.
 */
typedef int (*dfs_frag_foreach_fn)(void *ctx, const char *fragment_id, uint64_t size);

/*
 * Call cb for every fragment in the store, in directory order, from the calling thread. Fragments
 * committed or deleted while it runs may or may not be seen. The callback may use the store (read,
 * delete, even put). Returns 0 when every fragment was visited, the callback's nonzero return
 * (errmsg untouched) when it stopped, or DFS_EIO when a directory could not be listed.
 */
int dfs_frag_store_foreach(dfs_frag_store *store, dfs_frag_foreach_fn cb, void *ctx, char **errmsg);

#endif /* DFS_STORAGE_FRAG_STORE_H */
