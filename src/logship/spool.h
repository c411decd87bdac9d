/*
 * spool.h: the log shipper's on-disk queue. Records (opaque bytes, at most
 * SPOOL_RECORD_MAX) are appended to segment files in one directory and read
 * back in the order they were appended until the caller acknowledges them.
 *
 * Guarantees:
 * - Order: records are read in append order, each with a sequence number
 *   one above the previous one's, also across restarts.
 * - Bound: an append that would take the segments' total size over the
 *   limit is refused (-ENOSPC) and counted in spool_dropped; nothing older
 *   is ever evicted.
 * - Crash safety: each record carries a CRC-32 over its sequence number
 *   and bytes. At open, a torn or corrupt tail of the newest segment is cut
 *   off; a damaged record in an older segment ends that segment's reading.
 *   Appends are fdatasync'ed every SPOOL_SYNC_RECORDS records and on
 *   spool_sync (the shipper calls it every 200 ms): a crash can lose the
 *   records appended since the last sync, never reorder or corrupt others.
 * - Acknowledgement: spool_ack persists (write, fsync, rename) the position
 *   after the last delivered record; segments wholly before it are deleted.
 *   A crash between a delivery and its ack delivers those records again.
 *
 * The on-disk format is in docs/operations.md ("Log shipping"). All calls
 * are thread-safe (one mutex); none logs. Functions return 0 or -errno.
 */
#ifndef CHSM_LOGSHIP_SPOOL_H
#define CHSM_LOGSHIP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* One record's bytes: a log event is a few hundred bytes; the log line
 * buffer (2 KiB) bounds it far below this. */
#define SPOOL_RECORD_MAX   (64 * 1024)
/* Bytes of a record's header: length, CRC-32, sequence number. */
#define SPOOL_HEADER_LEN   16
/* Appends between two fdatasyncs at most. */
#define SPOOL_SYNC_RECORDS 64
/* A segment is closed and a new one started past this size (or a quarter
 * of the spool's limit when that is smaller), so delivered records leave
 * the disk soon. */
#define SPOOL_SEGMENT_MAX  (1024 * 1024)
/* The smallest spool limit accepted. */
#define SPOOL_MIN_BYTES    (16 * 1024)

typedef struct logship_spool logship_spool;

struct spool_record {
	uint64_t seq;
	char *data;          /* NUL-terminated copy, len bytes before the NUL */
	size_t len;
	uint64_t seg;        /* where the record ends: segment and offset */
	uint64_t end;
};

struct spool_batch {
	struct spool_record *rec;
	size_t n;
};

/* Opens the spool in dir (created 0700; an existing one is made 0700),
 * holding at most max_bytes (>= SPOOL_MIN_BYTES, else -EINVAL). Cuts torn
 * tails and deletes delivered segments. */
int spool_open(const char *dir, uint64_t max_bytes, logship_spool **ret_spool);
/* Syncs and closes. Accepts NULL. */
void spool_close(logship_spool *sp);
/* Appends len (1..SPOOL_RECORD_MAX) bytes. -ENOSPC when the spool is full
 * or the disk refused (the record is dropped and counted), -EINVAL for a
 * bad length (not counted). */
int spool_append(logship_spool *sp, const void *data, size_t len);
/* fdatasyncs what was appended since the last sync. */
int spool_sync(logship_spool *sp);
/* Copies, without consuming, up to max_records records (and about
 * max_bytes bytes, but always at least one) that follow the last
 * acknowledged one. ret->n is 0 when there is none. Free with
 * spool_batch_free. */
int spool_peek(logship_spool *sp, size_t max_records, size_t max_bytes, struct spool_batch *ret);
/* Marks the first n records of b (from spool_peek, in order) delivered. */
int spool_ack(logship_spool *sp, const struct spool_batch *b, size_t n);
void spool_batch_free(struct spool_batch *b);
/* Records refused since open, for being over the bound or unwritable. */
uint64_t spool_dropped(logship_spool *sp);
/* Records appended and not yet acknowledged, and the segments' bytes. */
void spool_usage(logship_spool *sp, uint64_t *ret_pending, uint64_t *ret_bytes);

/* CRC-32 (IEEE 802.3, as zlib's crc32), continuing from crc (0 to start). */
uint32_t spool_crc32(uint32_t crc, const void *data, size_t len);

#endif
