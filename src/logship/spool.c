/*
 * spool.c: see spool.h. Layout: <dir>/<first seq, 20 digits>.seg segment
 * files, and <dir>/ack holding "<segment> <offset>\n", the position after
 * the last delivered record. A record is a 16-byte header (length, CRC-32
 * of sequence number and bytes, sequence number; little-endian) and its
 * bytes.
 */
#include "logship/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

struct logship_spool {
	pthread_mutex_t mu;
	char dir[PATH_MAX - 32];
	uint64_t max_bytes, seg_max;
	uint64_t *segs;        /* first sequence number of each segment, ascending */
	uint64_t *sizes;       /* their sizes in bytes */
	size_t nsegs, cap;
	uint64_t total;        /* sum of sizes */
	int fd;                /* the last segment, open for appending */
	uint64_t next_seq;
	uint64_t cur_seg, cur_off, cur_seq;   /* the first record not delivered */
	unsigned unsynced;
	uint64_t dropped;
};

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t spool_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t record_crc(uint64_t seq, const uint8_t *data, size_t len)
{
	uint8_t s[8];
	put_le(s, seq, 8);
	return spool_crc32(spool_crc32(0, s, 8), data, len);
}

/* Parses the record at buf[0..avail): returns its total size (> 0), 0 when
 * it is incomplete, -EBADMSG when it is damaged. */
static long parse_record(const uint8_t *buf, size_t avail, uint64_t *ret_seq)
{
	if (avail < SPOOL_HEADER_LEN)
		return 0;
	uint64_t len = get_le(buf, 4);
	if (len == 0 || len > SPOOL_RECORD_MAX)
		return -EBADMSG;
	if (avail < SPOOL_HEADER_LEN + len)
		return 0;
	uint64_t seq = get_le(buf + 8, 8);
	if ((uint32_t)get_le(buf + 4, 4) != record_crc(seq, buf + SPOOL_HEADER_LEN, (size_t)len))
		return -EBADMSG;
	*ret_seq = seq;
	return (long)(SPOOL_HEADER_LEN + len);
}

static void seg_path(const logship_spool *sp, uint64_t seg, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%020" PRIu64 ".seg", sp->dir, seg);
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int add_segment(logship_spool *sp, uint64_t seg, uint64_t size)
{
	if (sp->nsegs == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 16;
		uint64_t *a = realloc(sp->segs, ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		sp->segs = a;
		uint64_t *b = realloc(sp->sizes, ncap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		sp->sizes = b;
		sp->cap = ncap;
	}
	size_t i = sp->nsegs;
	while (i > 0 && sp->segs[i - 1] > seg) {
		sp->segs[i] = sp->segs[i - 1];
		sp->sizes[i] = sp->sizes[i - 1];
		i--;
	}
	sp->segs[i] = seg;
	sp->sizes[i] = size;
	sp->nsegs++;
	sp->total += size;
	return 0;
}

static ssize_t seg_index(const logship_spool *sp, uint64_t seg)
{
	for (size_t i = 0; i < sp->nsegs; i++)
		if (sp->segs[i] == seg)
			return (ssize_t)i;
	return -1;
}

/* Reads up to cap bytes of segment seg from offset off into buf. */
static ssize_t read_at(const logship_spool *sp, uint64_t seg, uint64_t off, uint8_t *buf, size_t cap)
{
	char path[PATH_MAX];
	seg_path(sp, seg, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got < cap) {
		ssize_t n = pread(fd, buf + got, cap - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return (ssize_t)got;
}

/* Opens the last segment for appending, cutting a torn tail, and sets
 * next_seq after its last record. */
static int open_last(logship_spool *sp)
{
	size_t last = sp->nsegs - 1;
	uint64_t seg = sp->segs[last], size = sp->sizes[last];
	uint8_t *buf = NULL;
	if (size > 0 && !(buf = malloc(size)))
		return -ENOMEM;
	ssize_t got = size ? read_at(sp, seg, 0, buf, size) : 0;
	if (got < 0) {
		free(buf);
		return (int)got;
	}
	uint64_t off = 0, seq = seg, next = seg;
	for (;;) {
		long n = parse_record(buf + off, (size_t)got - off, &seq);
		if (n <= 0)
			break;
		off += (uint64_t)n;
		next = seq + 1;
	}
	free(buf);
	char path[PATH_MAX];
	seg_path(sp, seg, path, sizeof(path));
	sp->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (sp->fd < 0)
		return -errno;
	if (off < size) {
		if (ftruncate(sp->fd, (off_t)off) < 0 || fdatasync(sp->fd) < 0)
			return -errno;
		sp->total -= size - off;
		sp->sizes[last] = off;
	}
	sp->next_seq = next;
	return 0;
}

static void delete_before(logship_spool *sp, uint64_t seg)
{
	char path[PATH_MAX];
	size_t k = 0;
	while (k + 1 < sp->nsegs && sp->segs[k] < seg) {
		seg_path(sp, sp->segs[k], path, sizeof(path));
		unlink(path);
		sp->total -= sp->sizes[k];
		k++;
	}
	if (k == 0)
		return;
	memmove(sp->segs, sp->segs + k, (sp->nsegs - k) * sizeof(*sp->segs));
	memmove(sp->sizes, sp->sizes + k, (sp->nsegs - k) * sizeof(*sp->sizes));
	sp->nsegs -= k;
}

/* The sequence number of the record at the cursor. */
static void settle_cursor(logship_spool *sp)
{
	uint8_t h[SPOOL_HEADER_LEN];
	ssize_t i = seg_index(sp, sp->cur_seg);
	while (i >= 0) {
		if (sp->cur_off < sp->sizes[i] &&
		    read_at(sp, sp->cur_seg, sp->cur_off, h, sizeof(h)) == (ssize_t)sizeof(h)) {
			sp->cur_seq = get_le(h + 8, 8);
			return;
		}
		if ((size_t)i + 1 >= sp->nsegs)
			break;
		i++;
		sp->cur_seg = sp->segs[i];
		sp->cur_off = 0;
	}
	sp->cur_seq = sp->next_seq;
}

static int load(logship_spool *sp)
{
	DIR *d = opendir(sp->dir);
	if (!d)
		return -errno;
	struct dirent *e;
	int r = 0;
	char path[PATH_MAX];
	while (r == 0 && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		uint64_t seg;
		char digits[21];
		if (n != 24 || strcmp(e->d_name + 20, ".seg") != 0)
			continue;
		memcpy(digits, e->d_name, 20);
		digits[20] = '\0';
		if (chsm_parse_u64(digits, UINT64_MAX, &seg) < 0)
			continue;
		struct stat st;
		seg_path(sp, seg, path, sizeof(path));
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		r = add_segment(sp, seg, (uint64_t)st.st_size);
	}
	closedir(d);
	if (r < 0)
		return r;
	if (sp->nsegs == 0 && (r = add_segment(sp, 1, 0)) < 0)
		return r;
	if ((r = open_last(sp)) < 0)
		return r;
	/* The ack file: the position after the last delivered record. */
	sp->cur_seg = sp->segs[0];
	sp->cur_off = 0;
	char *text = NULL;
	size_t len;
	snprintf(path, sizeof(path), "%s/ack", sp->dir);
	if (chsm_read_file(path, 64, &text, &len) == 0) {
		char *sp1 = strchr(text, ' '), *nl = strchr(text, '\n');
		uint64_t seg, off;
		if (sp1 && nl && nl > sp1) {
			*sp1 = *nl = '\0';
			if (chsm_parse_u64(text, UINT64_MAX, &seg) == 0 &&
			    chsm_parse_u64(sp1 + 1, UINT64_MAX, &off) == 0) {
				ssize_t i = seg_index(sp, seg);
				if (i >= 0) {
					sp->cur_seg = seg;
					/* Delivered, but not synced before a crash. */
					sp->cur_off = off < sp->sizes[i] ? off : sp->sizes[i];
				}
			}
		}
		free(text);
	}
	delete_before(sp, sp->cur_seg);
	settle_cursor(sp);
	return 0;
}

int spool_open(const char *dir, uint64_t max_bytes, logship_spool **ret_spool)
{
	if (max_bytes < SPOOL_MIN_BYTES || strlen(dir) >= sizeof(((logship_spool *)0)->dir))
		return -EINVAL;
	if (mkdir(dir, 0700) < 0) {
		struct stat st;
		if (errno != EEXIST)
			return -errno;
		if (lstat(dir, &st) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) < 0)
			return -errno;
	}
	logship_spool *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	pthread_mutex_init(&sp->mu, NULL);
	sp->fd = -1;
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	sp->max_bytes = max_bytes;
	sp->seg_max = max_bytes / 4 < SPOOL_SEGMENT_MAX ? max_bytes / 4 : SPOOL_SEGMENT_MAX;
	int r = load(sp);
	if (r < 0) {
		spool_close(sp);
		return r;
	}
	*ret_spool = sp;
	return 0;
}

void spool_close(logship_spool *sp)
{
	if (!sp)
		return;
	if (sp->fd >= 0) {
		fdatasync(sp->fd);
		close(sp->fd);
	}
	pthread_mutex_destroy(&sp->mu);
	free(sp->segs);
	free(sp->sizes);
	free(sp);
}

/* Closes the last segment and starts a new one at next_seq. */
static int rotate(logship_spool *sp)
{
	char path[PATH_MAX];
	if (fdatasync(sp->fd) < 0)
		return -errno;
	seg_path(sp, sp->next_seq, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = add_segment(sp, sp->next_seq, 0);
	if (r < 0) {
		close(fd);
		unlink(path);
		return r;
	}
	close(sp->fd);
	sp->fd = fd;
	sp->unsynced = 0;
	sync_dir(sp->dir);
	return 0;
}

int spool_append(logship_spool *sp, const void *data, size_t len)
{
	if (len == 0 || len > SPOOL_RECORD_MAX)
		return -EINVAL;
	size_t total = SPOOL_HEADER_LEN + len;
	uint8_t *buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&sp->mu);
	int r = 0;
	if (sp->total + total > sp->max_bytes) {
		r = -ENOSPC;
		goto out;
	}
	if (sp->sizes[sp->nsegs - 1] >= sp->seg_max && (r = rotate(sp)) < 0)
		goto out;
	put_le(buf, len, 4);
	put_le(buf + 4, record_crc(sp->next_seq, data, len), 4);
	put_le(buf + 8, sp->next_seq, 8);
	memcpy(buf + SPOOL_HEADER_LEN, data, len);
	size_t last = sp->nsegs - 1;
	ssize_t w = write(sp->fd, buf, total);
	if (w != (ssize_t)total) {
		r = w < 0 && errno != ENOSPC ? -errno : -ENOSPC;
		/* Leave no partial record behind. */
		if (w > 0 && ftruncate(sp->fd, (off_t)sp->sizes[last]) < 0)
			r = -EIO;
		goto out;
	}
	sp->sizes[last] += total;
	sp->total += total;
	sp->next_seq++;
	if (++sp->unsynced >= SPOOL_SYNC_RECORDS) {
		fdatasync(sp->fd);
		sp->unsynced = 0;
	}
out:
	if (r < 0 && r != -EINVAL)
		sp->dropped++;
	pthread_mutex_unlock(&sp->mu);
	free(buf);
	return r;
}

int spool_sync(logship_spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	int r = 0;
	if (sp->unsynced > 0) {
		r = fdatasync(sp->fd) < 0 ? -errno : 0;
		sp->unsynced = 0;
	}
	pthread_mutex_unlock(&sp->mu);
	return r;
}

static int batch_add(struct spool_batch *b, size_t max, uint64_t seq, const uint8_t *data,
		     size_t len, uint64_t seg, uint64_t end)
{
	if (!b->rec && !(b->rec = calloc(max, sizeof(*b->rec))))
		return -ENOMEM;
	struct spool_record *r = &b->rec[b->n];
	if (!(r->data = malloc(len + 1)))
		return -ENOMEM;
	memcpy(r->data, data, len);
	r->data[len] = '\0';
	r->len = len;
	r->seq = seq;
	r->seg = seg;
	r->end = end;
	b->n++;
	return 0;
}

int spool_peek(logship_spool *sp, size_t max_records, size_t max_bytes, struct spool_batch *ret)
{
	struct spool_batch b = {0};
	size_t bytes = 0;
	int r = 0;
	if (max_records == 0)
		return -EINVAL;
	pthread_mutex_lock(&sp->mu);
	uint64_t seg = sp->cur_seg, off = sp->cur_off;
	size_t cap = max_bytes + SPOOL_HEADER_LEN + SPOOL_RECORD_MAX;
	uint8_t *buf = NULL;
	while (b.n < max_records && (b.n == 0 || bytes < max_bytes)) {
		ssize_t i = seg_index(sp, seg);
		if (i < 0)
			break;
		if (off >= sp->sizes[i]) {
			if ((size_t)i + 1 >= sp->nsegs)
				break;
			seg = sp->segs[i + 1];
			off = 0;
			continue;
		}
		uint64_t want = sp->sizes[i] - off < cap ? sp->sizes[i] - off : cap;
		if (!buf && !(buf = malloc(cap))) {
			r = -ENOMEM;
			break;
		}
		ssize_t got = read_at(sp, seg, off, buf, (size_t)want);
		if (got < 0) {
			r = (int)got;
			break;
		}
		size_t pos = 0;
		bool damaged = got == 0;
		while (b.n < max_records && (b.n == 0 || bytes < max_bytes)) {
			uint64_t seq = 0;
			long n = parse_record(buf + pos, (size_t)got - pos, &seq);
			if (n < 0 || (n == 0 && pos == 0))
				damaged = true;
			if (n <= 0)
				break;
			r = batch_add(&b, max_records, seq, buf + pos + SPOOL_HEADER_LEN,
				      (size_t)n - SPOOL_HEADER_LEN, seg, off + pos + (uint64_t)n);
			if (r < 0)
				break;
			pos += (size_t)n;
			bytes += (size_t)n;
		}
		if (r < 0)
			break;
		off += pos;
		if (damaged) {
			/* The rest of this segment cannot be read: go on with
			 * the next one (the last one was cut at open). */
			if ((size_t)i + 1 >= sp->nsegs)
				break;
			seg = sp->segs[i + 1];
			off = 0;
			if (b.n == 0) {
				sp->cur_seg = seg;
				sp->cur_off = 0;
			}
		}
	}
	pthread_mutex_unlock(&sp->mu);
	free(buf);
	if (r < 0) {
		spool_batch_free(&b);
		return r;
	}
	*ret = b;
	return 0;
}

int spool_ack(logship_spool *sp, const struct spool_batch *b, size_t n)
{
	if (n == 0)
		return 0;
	if (n > b->n)
		return -EINVAL;
	const struct spool_record *last = &b->rec[n - 1];
	char path[PATH_MAX], text[48];
	int len = snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64 "\n", last->seg, last->end);
	pthread_mutex_lock(&sp->mu);
	snprintf(path, sizeof(path), "%s/ack", sp->dir);
	int r = chsm_write_file_atomic(path, text, (size_t)len, 0600);
	if (r == 0) {
		sp->cur_seg = last->seg;
		sp->cur_off = last->end;
		sp->cur_seq = last->seq + 1;
		delete_before(sp, sp->cur_seg);
	}
	pthread_mutex_unlock(&sp->mu);
	return r;
}

void spool_batch_free(struct spool_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->rec[i].data);
	free(b->rec);
	b->rec = NULL;
	b->n = 0;
}

uint64_t spool_dropped(logship_spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	uint64_t d = sp->dropped;
	pthread_mutex_unlock(&sp->mu);
	return d;
}

void spool_usage(logship_spool *sp, uint64_t *ret_pending, uint64_t *ret_bytes)
{
	pthread_mutex_lock(&sp->mu);
	*ret_pending = sp->next_seq - sp->cur_seq;
	*ret_bytes = sp->total;
	pthread_mutex_unlock(&sp->mu);
}
