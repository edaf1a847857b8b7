/*
 * note: a presenced event package in C, written from abi/ABI.md alone.
 *
 * Package "note": a presentity publishes a short text/plain note; each
 * watcher is sent the latest one. The resource state is that publication,
 *
 *     message State { string id = 1; bytes body = 2; }
 *
 * in the protobuf wire format the ABI uses. A body that is empty, longer
 * than MAX_NOTE bytes or not UTF-8 is refused with 400. No SDK, no
 * protobuf library: the few varints and length-delimited fields the ABI
 * needs are read and written by hand below.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NOTE 1024

/* ABI.md §2: statuses. */
enum { OK = 0, BAD_INPUT = -1, UNSUPPORTED = -2, INTERNAL = -3 };

/* ABI.md §5: the ops this package serves. */
enum { OP_PUBLISH = 1, OP_UNPUBLISH = 2, OP_RENDER = 3 };

/* ABI.md §3: host functions, module "presenced_v1". */
#define IMPORT(name) __attribute__((import_module("presenced_v1"), import_name(name)))
IMPORT("input_read") int32_t input_read(void *dst, uint32_t len, uint32_t offset);
IMPORT("output_write") int32_t output_write(const void *src, uint32_t len);
IMPORT("log") int32_t host_log(uint32_t level, const void *msg, uint32_t len);

static void log_error(const char *msg) { host_log(3, msg, (uint32_t)strlen(msg)); }

/* ---- reading the wire format ---- */

typedef struct {
	const uint8_t *p;
	size_t n;
} slice;

typedef struct {
	uint32_t num, type; /* type 0: varint, 2: length-delimited */
	uint64_t varint;
	slice bytes;
} field;

static int read_varint(slice *s, uint64_t *v) {
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (s->n == 0)
			return -1;
		uint8_t b = *s->p++;
		s->n--;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

/* next_field reads the next field of message m: 1 if it read one, 0 at
 * the end, -1 if m is malformed. Fixed-size fields are skipped, as a
 * reader skips what it does not know; groups are malformed here. */
static int next_field(slice *m, field *f) {
	uint64_t tag, len;
	for (;;) {
		if (m->n == 0)
			return 0;
		if (read_varint(m, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
			return -1;
		f->num = (uint32_t)(tag >> 3);
		f->type = (uint32_t)(tag & 7);
		switch (f->type) {
		case 0:
			if (read_varint(m, &f->varint) < 0)
				return -1;
			return 1;
		case 2:
			if (read_varint(m, &len) < 0 || len > m->n)
				return -1;
			f->bytes.p = m->p;
			f->bytes.n = (size_t)len;
			m->p += len;
			m->n -= (size_t)len;
			return 1;
		case 1:
		case 5: {
			size_t skip = f->type == 1 ? 8 : 4;
			if (m->n < skip)
				return -1;
			m->p += skip;
			m->n -= skip;
			continue;
		}
		default:
			return -1;
		}
	}
}

/* valid reports whether m is a well-formed message at its top level;
 * the nested messages this package reads are checked where it reads
 * them. */
static int valid(slice m) {
	field f;
	int r;
	while ((r = next_field(&m, &f)) == 1)
		;
	return r == 0;
}

/* ---- writing it ---- */

typedef struct {
	uint8_t *p;
	size_t n, cap;
	int oom;
} buf;

static void put(buf *b, const void *src, size_t n) {
	if (b->oom || n == 0)
		return;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->n + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void put_varint(buf *b, uint64_t v) {
	uint8_t tmp[10];
	size_t n = 0;
	do {
		tmp[n] = v & 0x7f;
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	put(b, tmp, n);
}

static void put_uint(buf *b, uint32_t num, uint64_t v) {
	put_varint(b, (uint64_t)num << 3);
	put_varint(b, v);
}

static void put_bytes(buf *b, uint32_t num, const void *p, size_t n) {
	put_varint(b, (uint64_t)num << 3 | 2);
	put_varint(b, n);
	put(b, p, n);
}

static void put_str(buf *b, uint32_t num, const char *s) { put_bytes(b, num, s, strlen(s)); }

/* ---- the package ---- */

static int valid_utf8(slice s) {
	size_t i = 0;
	while (i < s.n) {
		uint8_t c = s.p[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + k >= s.n) /* the sequence runs past the end */
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s.p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s.p[i + j] & 0x3f);
		}
		/* overlong forms, surrogates and past U+10FFFF are not UTF-8 */
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += k + 1;
	}
	return 1;
}

/* The request, as far as this package reads it; slices point into the
 * input. */
typedef struct {
	uint64_t op;
	slice state;
	int has_pub;
	slice pub_id, pub_type, pub_body;
	slice watchers; /* the whole request, walked again for field 6 */
} request;

static int read_publication(slice m, request *r) {
	field f;
	int x;
	r->has_pub = 1;
	while ((x = next_field(&m, &f)) == 1) {
		if (f.type != 2)
			continue;
		if (f.num == 1)
			r->pub_id = f.bytes;
		else if (f.num == 2)
			r->pub_type = f.bytes;
		else if (f.num == 3)
			r->pub_body = f.bytes;
	}
	return x;
}

static int read_request(slice m, request *r) {
	field f;
	int x;
	memset(r, 0, sizeof *r);
	r->watchers = m;
	while ((x = next_field(&m, &f)) == 1) {
		if (f.num == 1 && f.type == 0)
			r->op = f.varint;
		else if (f.num == 4 && f.type == 2)
			r->state = f.bytes;
		else if (f.num == 5 && f.type == 2 && read_publication(f.bytes, r) < 0)
			return -1;
		else if (f.num == 6 && f.type == 2 && !valid(f.bytes))
			return -1;
	}
	return x;
}

/* state_field is field num of a state blob: 1 the id, 2 the note. */
static slice state_field(slice st, uint32_t num) {
	field f;
	slice none = {0, 0};
	while (next_field(&st, &f) == 1)
		if (f.num == num && f.type == 2)
			none = f.bytes;
	return none;
}

/* notify writes a Notification for every watcher of the request: the
 * note, or a NOTIFY without a body when there is none. */
static void notify(buf *res, const request *r, slice note) {
	slice m = r->watchers;
	field f;
	while (next_field(&m, &f) == 1) {
		if (f.num != 6 || f.type != 2)
			continue;
		slice w = f.bytes, id = {0, 0};
		field g;
		while (next_field(&w, &g) == 1)
			if (g.num == 1 && g.type == 2)
				id = g.bytes;
		buf n = {0};
		put_bytes(&n, 1, id.p, id.n);
		if (note.n > 0) {
			put_str(&n, 2, "text/plain;charset=utf-8");
			put_bytes(&n, 3, note.p, note.n);
		}
		put_bytes(res, 5, n.p, n.n);
		res->oom |= n.oom;
		free(n.p);
	}
}

static void refuse(buf *res, uint32_t code, const char *reason) {
	put_uint(res, 1, code);
	put_str(res, 2, reason);
}

static int32_t handle(const request *r, buf *res) {
	switch (r->op) {
	case OP_PUBLISH: {
		if (!r->has_pub)
			return INTERNAL;
		slice body = r->pub_body;
		if (body.n == 0)
			refuse(res, 400, "empty note");
		else if (body.n > MAX_NOTE)
			refuse(res, 400, "note longer than 1024 bytes");
		else if (!valid_utf8(body))
			refuse(res, 400, "note is not UTF-8");
		else {
			buf st = {0};
			put_bytes(&st, 1, r->pub_id.p, r->pub_id.n);
			put_bytes(&st, 2, body.p, body.n);
			put_bytes(res, 3, st.p, st.n);
			put_uint(res, 4, 1);
			res->oom |= st.oom;
			free(st.p);
			notify(res, r, body);
		}
		return OK;
	}
	case OP_UNPUBLISH: {
		if (!r->has_pub)
			return INTERNAL;
		slice id = state_field(r->state, 1);
		if (r->state.n > 0 && id.n == r->pub_id.n && memcmp(id.p, r->pub_id.p, id.n) == 0) {
			put_bytes(res, 3, "", 0); /* the empty state: no note */
			put_uint(res, 4, 1);
			notify(res, r, (slice){0, 0});
		}
		return OK;
	}
	case OP_RENDER:
		notify(res, r, state_field(r->state, 2));
		return OK;
	}
	return UNSUPPORTED;
}

/* read_input copies the call's input into a new buffer. */
static uint8_t *read_input(uint32_t n) {
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return NULL;
	for (uint32_t off = 0; off < n;) {
		int32_t got = input_read(p + off, n - off, off);
		if (got <= 0) {
			free(p);
			return NULL;
		}
		off += (uint32_t)got;
	}
	return p;
}

/* ---- exports (ABI.md §2); _initialize comes from -mexec-model=reactor ---- */

__attribute__((export_name("presenced_abi_v1_1"))) void abi_marker(void) {}

__attribute__((export_name("presenced_init"))) int32_t presenced_init(uint32_t n) {
	uint8_t *in = read_input(n);
	if (!in)
		return INTERNAL;
	int ok = valid((slice){in, n});
	free(in);
	if (!ok)
		return BAD_INPUT;
	/* Manifest { packages: [{ event: "note", accept: ["text/plain"] }] } */
	buf pkg = {0}, man = {0};
	put_str(&pkg, 1, "note");
	put_str(&pkg, 2, "text/plain");
	put_bytes(&man, 1, pkg.p, pkg.n);
	int32_t st = pkg.oom || man.oom ? INTERNAL : output_write(man.p, (uint32_t)man.n);
	free(pkg.p);
	free(man.p);
	return st;
}

__attribute__((export_name("presenced_handle"))) int32_t presenced_handle(uint32_t op, uint32_t n) {
	uint8_t *in = read_input(n);
	if (!in)
		return INTERNAL;
	request r;
	int32_t st;
	buf res = {0};
	if (read_request((slice){in, n}, &r) < 0 || r.op != op) {
		st = BAD_INPUT;
	} else {
		st = handle(&r, &res);
		if (st == OK && res.oom) {
			log_error("note: out of memory");
			st = INTERNAL;
		}
		/* A negative status from output_write fails the call: pass it on. */
		if (st == OK && res.n > 0)
			st = output_write(res.p, (uint32_t)res.n);
	}
	free(res.p);
	free(in);
	return st;
}
