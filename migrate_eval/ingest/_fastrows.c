/* migrate_eval.ingest._fastrows: the chat-jsonl fast path of ingest_to_dataset, in C.
 *
 * A Builder turns JSON Lines into the columns of the ingest dataset (see
 * migrate_eval/ingest/_rows.py for the columns and migrate_eval/ingest/dataset.py for their
 * meaning) without making a Python object for each value: a validating scanner reads each
 * line once, finds the values chat_jsonl.fast_row reads, checks them as fast_row does, and
 * appends the row to column buffers, which migrate_eval.ingest._builder turns into an Arrow
 * record batch without copying. The request and metadata columns are the line's own bytes of
 * those objects (the same JSON values fast_row writes, not always the same bytes: spacing and
 * escapes are the log's), the response column is written from the line's tokens.
 *
 * It takes a subset of what fast_row takes - the most common line - and gives the row fast_row
 * gives. Any other line is handed back (add_lines returns its index): the caller reads it in
 * Python and appends its row with add_row, so the order of rows is kept. Nothing here decides
 * that a line is wrong: a line it does not take is simply left to the Python reader, which
 * names the field at fault.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- growable buffers */

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int
buf_put(Buf *b, const void *src, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static void
buf_free(Buf *b)
{
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- columns */

/* A string column: one validity byte a row while building (packed into bits when taken),
 * int32 offsets (n + 1) and the UTF-8 data. */
typedef struct {
    Buf valid;
    Buf offsets;
    Buf data;
    Py_ssize_t nulls;
} StrCol;

/* An int64 column with validity bytes. */
typedef struct {
    Buf valid;
    Buf values;
    Py_ssize_t nulls;
} IntCol;

enum {
    C_ID,
    C_FILE,
    C_FORMAT,
    C_MODEL,
    C_REQUEST,
    C_RESPONSE,
    C_ERROR,
    C_METADATA,
    C_GOLD,
    N_STR
};

static int
str_start(StrCol *c)
{
    int32_t zero = 0;
    c->valid.len = c->offsets.len = c->data.len = 0;
    c->nulls = 0;
    return buf_put(&c->offsets, &zero, sizeof zero);
}

static int
str_push(StrCol *c, const char *s, Py_ssize_t n)
{
    if (c->data.len + n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "more than 2 GiB of text in one record batch");
        return -1;
    }
    char one = 1;
    if (buf_put(&c->data, s, n) < 0 || buf_put(&c->valid, &one, 1) < 0)
        return -1;
    int32_t end = (int32_t)c->data.len;
    return buf_put(&c->offsets, &end, sizeof end);
}

static int
str_push_null(StrCol *c)
{
    char zero = 0;
    int32_t end = (int32_t)c->data.len;
    if (buf_put(&c->valid, &zero, 1) < 0)
        return -1;
    c->nulls++;
    return buf_put(&c->offsets, &end, sizeof end);
}

/* A str (as UTF-8), bytes (as they are, already UTF-8 JSON) or None. */
static int
str_push_obj(StrCol *c, PyObject *v)
{
    if (v == NULL || v == Py_None)
        return str_push_null(c);
    if (PyBytes_Check(v))
        return str_push(c, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL)
            return -1;
        return str_push(c, s, n);
    }
    PyErr_Format(PyExc_TypeError, "a text column takes str, bytes or None, not %.80s",
                 Py_TYPE(v)->tp_name);
    return -1;
}

static int
int_push(IntCol *c, int64_t v)
{
    char one = 1;
    if (buf_put(&c->valid, &one, 1) < 0)
        return -1;
    return buf_put(&c->values, &v, sizeof v);
}

static int
int_push_null(IntCol *c)
{
    char zero = 0;
    int64_t v = 0;
    if (buf_put(&c->valid, &zero, 1) < 0)
        return -1;
    c->nulls++;
    return buf_put(&c->values, &v, sizeof v);
}

/* The validity bytes packed as an Arrow bitmap (least significant bit first), or None when
 * no value is null. */
static PyObject *
bitmap(const Buf *valid, Py_ssize_t n, Py_ssize_t nulls)
{
    if (nulls == 0)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
    if (out == NULL)
        return NULL;
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(out);
    memset(bits, 0, (size_t)((n + 7) / 8));
    for (Py_ssize_t i = 0; i < n; i++)
        if (valid->p[i])
            bits[i >> 3] |= (unsigned char)(1u << (i & 7));
    return out;
}

static PyObject *
bytes_of(const Buf *b)
{
    return PyBytes_FromStringAndSize(b->p ? b->p : "", b->len);
}

/* ---------------------------------------------------------------- the builder */

#define MAX_ROLES 16

typedef struct {
    PyObject_HEAD
    PyObject *seen;   /* ids seen so far (a set), or None: no check */
    PyObject *file;   /* str */
    PyObject *format; /* str */
    const char *file_utf8;
    Py_ssize_t file_len;
    const char *format_utf8;
    Py_ssize_t format_len;
    char *role[MAX_ROLES]; /* the message roles accepted, as UTF-8 */
    Py_ssize_t role_len[MAX_ROLES];
    int nroles;
    StrCol str[N_STR];
    IntCol line;
    IntCol timestamp;
    Buf id_buf;       /* scratch: the id of the line being read */
    Buf resp_buf;     /* scratch: its response column */
    Buf scratch;      /* scratch: other unescaped text */
    void *calls;      /* scratch: the tool calls of the line being read (Call[MAX_CALLS]) */
    Py_ssize_t rows;  /* rows in the current batch */
    Py_ssize_t lines; /* non-blank lines taken by add_lines, in all */
    Py_ssize_t max_rows;
    Py_ssize_t max_bytes;
} Builder;

static Py_ssize_t
builder_bytes(Builder *self)
{
    Py_ssize_t n = 0;
    for (int i = 0; i < N_STR; i++)
        n += self->str[i].data.len;
    return n;
}

static int
builder_reset(Builder *self)
{
    for (int i = 0; i < N_STR; i++)
        if (str_start(&self->str[i]) < 0)
            return -1;
    self->line.valid.len = self->line.values.len = 0;
    self->line.nulls = 0;
    self->timestamp.valid.len = self->timestamp.values.len = 0;
    self->timestamp.nulls = 0;
    self->rows = 0;
    return 0;
}

static void
free_roles(Builder *self)
{
    for (int i = 0; i < self->nroles; i++)
        PyMem_Free(self->role[i]);
    self->nroles = 0;
}

static void
Builder_dealloc(Builder *self)
{
    Py_XDECREF(self->seen);
    Py_XDECREF(self->file);
    Py_XDECREF(self->format);
    free_roles(self);
    for (int i = 0; i < N_STR; i++) {
        buf_free(&self->str[i].valid);
        buf_free(&self->str[i].offsets);
        buf_free(&self->str[i].data);
    }
    buf_free(&self->line.valid);
    buf_free(&self->line.values);
    buf_free(&self->timestamp.valid);
    buf_free(&self->timestamp.values);
    buf_free(&self->id_buf);
    buf_free(&self->resp_buf);
    buf_free(&self->scratch);
    PyMem_Free(self->calls);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Builder_init(Builder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"file", "format", "seen", "roles", "max_rows", "max_bytes", NULL};
    PyObject *file, *format, *seen, *roles;
    Py_ssize_t max_rows = 2048, max_bytes = 64 << 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UUOO|nn", kwlist, &file, &format, &seen,
                                     &roles, &max_rows, &max_bytes))
        return -1;
    if (seen != Py_None && !PySet_Check(seen)) {
        PyErr_SetString(PyExc_TypeError, "seen must be a set or None");
        return -1;
    }
    if (max_rows < 1 || max_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "max_rows and max_bytes must be positive");
        return -1;
    }
    const char *f = PyUnicode_AsUTF8AndSize(file, &self->file_len);
    const char *fm = f ? PyUnicode_AsUTF8AndSize(format, &self->format_len) : NULL;
    if (fm == NULL)
        return -1;
    free_roles(self);
    PyObject *it = PyObject_GetIter(roles);
    if (it == NULL)
        return -1;
    PyObject *role;
    while ((role = PyIter_Next(it)) != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_Check(role) ? PyUnicode_AsUTF8AndSize(role, &n) : NULL;
        if (s == NULL || self->nroles == MAX_ROLES) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "roles: at most 16 strings");
            Py_DECREF(role);
            Py_DECREF(it);
            return -1;
        }
        char *copy = PyMem_Malloc((size_t)n + 1);
        if (copy == NULL) {
            Py_DECREF(role);
            Py_DECREF(it);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(copy, s, (size_t)n + 1);
        self->role[self->nroles] = copy;
        self->role_len[self->nroles++] = n;
        Py_DECREF(role);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    Py_XSETREF(self->file, Py_NewRef(file));
    Py_XSETREF(self->format, Py_NewRef(format));
    Py_XSETREF(self->seen, Py_NewRef(seen));
    self->file_utf8 = f; /* owned by the str objects kept above */
    self->format_utf8 = fm;
    self->max_rows = max_rows;
    self->max_bytes = max_bytes;
    self->lines = 0;
    return builder_reset(self);
}

/* ---------------------------------------------------------------- the JSON scanner
 *
 * A strict, validating scanner over one line of bytes. It checks the whole line against
 * RFC 8259 and records where the values of interest are, without decoding anything else.
 * It is deliberately narrower than orjson: where orjson would accept something this scanner
 * is unsure of (a \u escape of a surrogate, a number of more than 18 digits or with a large
 * exponent, nesting deeper than MAX_DEPTH, an escaped object key), the line is simply not
 * taken, and the Python reader decides. Everything it does take, orjson.loads parses. */

#define MAX_DEPTH 64
#define MAX_DIGITS 18

typedef const unsigned char *P;

/* A value found in the line: its kind and its bytes (strings with their quotes). */
enum { V_ABSENT = 0, V_NULL, V_FALSE, V_TRUE, V_INT, V_FLOAT, V_STR, V_ARR, V_OBJ };

typedef struct {
    int kind;
    P start;
    P end;
    int escaped; /* a string holding a backslash */
    int empty;   /* an array or object with no element, or the empty string */
} Val;

static inline P
skip_ws(P p, P end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static inline int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The code point of the 4 hex digits at p, or -1. */
static inline long
hex4(P p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* One UTF-8 sequence starting at p (its first byte >= 0x80), checked as Unicode's table
 * 3-7 (no overlong forms, no surrogates, nothing above U+10FFFF); the byte after it, or
 * NULL. */
static inline P
utf8_seq(P p, P end)
{
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80)
            return NULL;
        return p + 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return NULL;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
            return NULL; /* overlong, or a surrogate */
        return p + 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return NULL;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
            return NULL; /* overlong, or above U+10FFFF */
        return p + 4;
    }
    return NULL;
}

/* The length of the run of plain string bytes at p (no quote, backslash, control character
 * or non-ASCII byte): 16 bytes at a time with SSE2, else 8 at a time. Stops at most 15
 * bytes before `end`. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline P
skip_plain(P p, P end)
{
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        /* signed: bytes >= 0x80 are negative, so "less than 0x20" also catches them */
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote),
                                                 _mm_cmpeq_epi8(x, slash)),
                                    _mm_cmplt_epi8(x, space));
        int mask = _mm_movemask_epi8(stop);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
    return p;
}
#else
static inline int has_special8(P p);
static inline P
skip_plain(P p, P end)
{
    while (end - p >= 8 && !has_special8(p))
        p += 8;
    return p;
}
#endif

/* Eight bytes at once: whether any is a quote, a backslash, a control character or not
 * ASCII (the bytes a string's plain run stops at; a few others may stop it too). */
static inline int
has_special8(P p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
    uint64_t zero_q = (quote - ones) & ~quote & highs;
    uint64_t zero_s = (slash - ones) & ~slash & highs;
    uint64_t ctrl = (x - ones * 0x20) & ~x & highs; /* a byte < 0x20 (or >= 0x80) */
    return ((zero_q | zero_s | ctrl | (x & highs)) != 0);
}

/* A string starting at p (on its opening quote): the byte after the closing quote, or
 * NULL. */
static P
scan_string(P p, P end, Val *v)
{
    P start = p++;
    int escaped = 0;
    for (;;) {
        p = skip_plain(p, end);
        if (p >= end)
            return NULL;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c == '\\') {
            escaped = 1;
            if (end - p < 2)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                if (end - p < 6)
                    return NULL;
                long cp = hex4(p + 2);
                if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
                    return NULL; /* a low surrogate first: left to orjson */
                if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: a pair, or nothing */
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
                        return NULL;
                    long low = hex4(p + 8);
                    if (low < 0xDC00 || low > 0xDFFF)
                        return NULL;
                    p += 6;
                }
                p += 6;
                break;
            }
            default:
                return NULL;
            }
        }
        else if (c < 0x20) {
            return NULL;
        }
        else if (c >= 0x80) {
            p = utf8_seq(p, end);
            if (p == NULL)
                return NULL;
        }
        else {
            p++;
        }
    }
    if (v) {
        v->kind = V_STR;
        v->start = start;
        v->end = p + 1;
        v->escaped = escaped;
        v->empty = (p == start + 1);
    }
    return p + 1;
}

/* A number: the byte after it, or NULL (also for numbers this scanner leaves to orjson). */
static P
scan_number(P p, P end, Val *v)
{
    P start = p;
    int is_int = 1;
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    P digits = p;
    if (*p == '0') {
        p++;
    }
    else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    else {
        return NULL;
    }
    if (p - digits > MAX_DIGITS)
        return NULL;
    if (p < end && *p == '.') {
        is_int = 0;
        P frac = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == frac || p - frac > 40)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        P exp = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == exp || p - exp > 2) /* |exponent| < 100: never infinity */
            return NULL;
    }
    if (v) {
        v->kind = is_int ? V_INT : V_FLOAT;
        v->start = start;
        v->end = p;
        v->escaped = 0;
        v->empty = 0;
    }
    return p;
}

static P scan_value(P p, P end, int depth, Val *v);

/* Objects: obj_open on the '{', then obj_key until it returns 0 (the '}' consumed); a key is
 * followed by its value, which the caller scans. */
typedef struct {
    P p;
    P end;
    int count;
} Obj;

/* 1 with the key (its bytes without quotes) and the cursor on the value; 0 at the end of
 * the object; -1 when the line is not taken. */
static int
obj_key(Obj *o, P *key, Py_ssize_t *klen)
{
    P p = skip_ws(o->p, o->end);
    if (p >= o->end)
        return -1;
    if (o->count) {
        if (*p == '}') {
            o->p = p + 1;
            return 0;
        }
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, o->end);
    }
    else if (*p == '}') {
        o->p = p + 1;
        return 0;
    }
    if (p >= o->end || *p != '"')
        return -1;
    Val k;
    P after = scan_string(p, o->end, &k);
    if (after == NULL || k.escaped) /* an escaped key might spell one of ours */
        return -1;
    p = skip_ws(after, o->end);
    if (p >= o->end || *p != ':')
        return -1;
    o->p = skip_ws(p + 1, o->end);
    o->count++;
    *key = k.start + 1;
    *klen = (k.end - k.start) - 2;
    return 1;
}

static int
obj_open(Obj *o, P p, P end)
{
    if (p >= end || *p != '{')
        return 0;
    o->p = p + 1;
    o->end = end;
    o->count = 0;
    return 1;
}

#define KEY_IS(k, n, lit) ((n) == (Py_ssize_t)(sizeof(lit) - 1) && memcmp((k), lit, (n)) == 0)

/* The value at o->p into *slot (which must not have been found before: a repeated key is
 * left to orjson's last-one-wins); 0 when the line is not taken. */
static int
obj_take(Obj *o, int depth, Val *slot)
{
    if (slot->kind != V_ABSENT)
        return 0;
    P after = scan_value(o->p, o->end, depth, slot);
    if (after == NULL)
        return 0;
    o->p = after;
    return 1;
}

static int
obj_skip(Obj *o, int depth)
{
    P after = scan_value(o->p, o->end, depth, NULL);
    if (after == NULL)
        return 0;
    o->p = after;
    return 1;
}

static P
scan_value(P p, P end, int depth, Val *v)
{
    p = skip_ws(p, end);
    if (p >= end)
        return NULL;
    P start = p;
    int kind;
    int empty = 0;
    switch (*p) {
    case '"':
        return scan_string(p, end, v);
    case '{': {
        if (depth >= MAX_DEPTH)
            return NULL;
        Obj o;
        obj_open(&o, p, end);
        P k;
        Py_ssize_t n;
        int r;
        while ((r = obj_key(&o, &k, &n)) == 1)
            if (!obj_skip(&o, depth + 1))
                return NULL;
        if (r < 0)
            return NULL;
        kind = V_OBJ;
        empty = (o.count == 0);
        p = o.p;
        break;
    }
    case '[': {
        if (depth >= MAX_DEPTH)
            return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            empty = 1;
        }
        else {
            for (;;) {
                p = scan_value(p, end, depth + 1, NULL);
                if (p == NULL)
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end)
                    return NULL;
                if (*p == ']') {
                    p++;
                    break;
                }
                if (*p != ',')
                    return NULL;
                p++;
            }
        }
        kind = V_ARR;
        break;
    }
    case 't':
    case 'f':
    case 'n': {
        static const struct {
            const char *text;
            int len;
            int kind;
        } literals[3] = {{"true", 4, V_TRUE}, {"false", 5, V_FALSE}, {"null", 4, V_NULL}};
        int i = *p == 't' ? 0 : *p == 'f' ? 1 : 2;
        if (end - p < literals[i].len || memcmp(p, literals[i].text, literals[i].len) != 0)
            return NULL;
        p += literals[i].len;
        kind = literals[i].kind;
        break;
    }
    default:
        return scan_number(p, end, v);
    }
    if (v) {
        v->kind = kind;
        v->start = start;
        v->end = p;
        v->escaped = 0;
        v->empty = empty;
    }
    return p;
}

/* ---------------------------------------------------------------- the common line
 *
 * What chat_jsonl.fast_row reads of a line, found in one pass that also validates the line:
 * each object of interest is walked by its own function, which records the values fast_row
 * looks at and scans (validates) the others. A walker returns the byte after the object, or
 * NULL when the line is not taken (the rest of the line is then not looked at). */

typedef struct {
    /* the line */
    Val request, response, id, custom_id, request_id, timestamp, created_at, latency_ms,
        duration_ms, metadata, tags, gold, label, error;
    /* the request */
    Val messages, model, tools, request_metadata;
    /* the response */
    Val choices, resp_model, usage, created, resp_id;
    Val message, finish_reason;
    Val text, refusal, tool_calls, function_call;
    /* usage */
    Val prompt_tokens, input_tokens, completion_tokens, output_tokens, total_tokens;
    Val details[4];   /* prompt_, input_, completion_, output_tokens_details */
    Val counts[4];    /* their cached_tokens (prompt, input), reasoning_tokens (the others) */
} Line;

#define IS_NULL(v) ((v).kind == V_ABSENT || (v).kind == V_NULL)
#define IS_NUM(v) ((v).kind == V_INT || (v).kind == V_FLOAT)

/* The value at the cursor recorded in `slot` as an object (or array) spanning [start, end). */
static void
span(Val *slot, int kind, P start, P end, int empty)
{
    slot->kind = kind;
    slot->start = start;
    slot->end = end;
    slot->escaped = 0;
    slot->empty = empty;
}

/* One of the objects below, walked by `walker` (which returns the byte after it or NULL),
 * recorded in `slot`; 0 when the line is not taken. */
#define WALK_INTO(o, slot, walker, ...)                          \
    do {                                                         \
        if ((slot).kind != V_ABSENT)                             \
            return NULL;                                         \
        P start_ = (o).p;                                        \
        P after_ = walker(__VA_ARGS__);                          \
        if (after_ == NULL)                                      \
            return NULL;                                         \
        span(&(slot), V_OBJ, start_, after_, 0);                 \
        (o).p = after_;                                          \
    } while (0)

#define TAKE(o, depth, slot)             \
    do {                                 \
        if (!obj_take(&(o), depth, slot)) \
            return NULL;                 \
    } while (0)

#define SKIP(o, depth)             \
    do {                           \
        if (!obj_skip(&(o), depth)) \
            return NULL;           \
    } while (0)

static int is_role(Builder *self, const Val *role);

/* A message of the request: a known role, content text, parts or null, tool_calls a list or
 * null (check_messages, for the messages it accepts). */
static P
walk_message(Builder *self, P p, P end, int depth)
{
    Obj o;
    if (!obj_open(&o, p, end) || depth >= MAX_DEPTH)
        return NULL;
    Val role = {0}, content = {0}, calls = {0};
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "role"))
            TAKE(o, depth + 1, &role);
        else if (KEY_IS(k, n, "content"))
            TAKE(o, depth + 1, &content);
        else if (KEY_IS(k, n, "tool_calls"))
            TAKE(o, depth + 1, &calls);
        else
            SKIP(o, depth + 1);
    }
    if (r < 0 || !is_role(self, &role))
        return NULL;
    if (!IS_NULL(content) && content.kind != V_STR && content.kind != V_ARR)
        return NULL;
    if (!IS_NULL(calls) && calls.kind != V_ARR)
        return NULL;
    return o.p;
}

/* The messages list: not empty, every message as walk_message wants it. */
static P
walk_messages(Builder *self, Line *ln, P p, P end, int depth)
{
    if (p >= end || *p != '[' || depth >= MAX_DEPTH || ln->messages.kind != V_ABSENT)
        return NULL;
    P start = p;
    p = skip_ws(p + 1, end);
    if (p >= end || *p == ']')
        return NULL;
    for (;;) {
        p = walk_message(self, p, end, depth + 1);
        if (p == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == ']')
            break;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
    span(&ln->messages, V_ARR, start, p + 1, 0);
    return p + 1;
}

/* The members of a Line an object's keys name, in a table per object. */
typedef struct {
    const char *key;
    Py_ssize_t len;
    size_t offset;
} Field;

#define FIELD(key, member) {key, sizeof(key) - 1, offsetof(Line, member)}
#define NFIELDS(table) ((int)(sizeof(table) / sizeof((table)[0])))

static const Field LINE_FIELDS[] = {
    FIELD("id", id),
    FIELD("timestamp", timestamp),
    FIELD("latency_ms", latency_ms),
    FIELD("metadata", metadata),
    FIELD("custom_id", custom_id),
    FIELD("request_id", request_id),
    FIELD("created_at", created_at),
    FIELD("duration_ms", duration_ms),
    FIELD("tags", tags),
    FIELD("gold", gold),
    FIELD("label", label),
    FIELD("error", error),
};
static const Field REQUEST_FIELDS[] = {
    FIELD("model", model),
    FIELD("tools", tools),
    FIELD("metadata", request_metadata),
};
static const Field RESPONSE_FIELDS[] = {
    FIELD("model", resp_model),
    FIELD("created", created),
    FIELD("id", resp_id),
};
static const Field CHOICE_FIELDS[] = {
    FIELD("finish_reason", finish_reason),
};
static const Field ANSWER_FIELDS[] = {
    FIELD("content", text),
    FIELD("refusal", refusal),
    FIELD("tool_calls", tool_calls),
    FIELD("function_call", function_call),
};
static const Field USAGE_FIELDS[] = {
    FIELD("prompt_tokens", prompt_tokens),
    FIELD("completion_tokens", completion_tokens),
    FIELD("total_tokens", total_tokens),
    FIELD("input_tokens", input_tokens),
    FIELD("output_tokens", output_tokens),
};

static Val *
pick(Line *ln, const Field *fields, int n, P key, Py_ssize_t len)
{
    for (int i = 0; i < n; i++)
        if (fields[i].len == len && memcmp(fields[i].key, key, (size_t)len) == 0)
            return (Val *)((char *)ln + fields[i].offset);
    return NULL;
}

/* The value at o.p, of key k: recorded in the Line member the table names for k, else
 * scanned (validated). */
#define MEMBER(o, depth, fields, k, n)                                     \
    do {                                                                   \
        Val *slot_ = pick(ln, fields, NFIELDS(fields), k, n);              \
        if (slot_ ? !obj_take(&(o), depth, slot_) : !obj_skip(&(o), depth)) \
            return NULL;                                                   \
    } while (0)

/* The value at o.p walked by `walker` (which returns the byte after it or NULL). */
#define WALK_WITH(o, walker, ...)            \
    do {                                     \
        P after_ = walker(__VA_ARGS__);      \
        if (after_ == NULL)                  \
            return NULL;                     \
        (o).p = after_;                      \
    } while (0)

static P
walk_request(Builder *self, Line *ln, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "messages"))
            WALK_WITH(o, walk_messages, self, ln, o.p, end, 2);
        else
            MEMBER(o, 2, REQUEST_FIELDS, k, n);
    }
    return r == 0 ? o.p : NULL;
}

/* usage's *_tokens_details object: its cached_tokens or reasoning_tokens into `count`. */
static P
walk_details(Val *slot, Val *count, const char *key, P p, P end)
{
    Obj o;
    if (slot->kind != V_ABSENT)
        return NULL;
    P q = skip_ws(p, end);
    if (q < end && *q != '{') /* null, or a kind left to fast_row */
        return scan_value(q, end, 4, slot);
    if (!obj_open(&o, q, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    Py_ssize_t klen = (Py_ssize_t)strlen(key);
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (n == klen && memcmp(k, key, (size_t)n) == 0)
            TAKE(o, 4, count);
        else
            SKIP(o, 4);
    }
    if (r != 0)
        return NULL;
    span(slot, V_OBJ, q, o.p, o.count == 0);
    return o.p;
}

static P
walk_usage(Line *ln, P p, P end)
{
    static const char *details[4] = {"prompt_tokens_details", "input_tokens_details",
                                     "completion_tokens_details", "output_tokens_details"};
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        int d = -1;
        for (int i = 0; i < 4; i++)
            if ((size_t)n == strlen(details[i]) && memcmp(k, details[i], (size_t)n) == 0)
                d = i;
        if (d >= 0)
            WALK_WITH(o, walk_details, &ln->details[d], &ln->counts[d],
                      d < 2 ? "cached_tokens" : "reasoning_tokens", o.p, end);
        else
            MEMBER(o, 3, USAGE_FIELDS, k, n);
    }
    return r == 0 ? o.p : NULL;
}

static P
walk_answer(Line *ln, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1)
        MEMBER(o, 4, ANSWER_FIELDS, k, n);
    return r == 0 ? o.p : NULL;
}

static P
walk_choice(Line *ln, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "message"))
            WALK_INTO(o, ln->message, walk_answer, ln, o.p, end);
        else
            MEMBER(o, 3, CHOICE_FIELDS, k, n);
    }
    return r == 0 ? o.p : NULL;
}

/* choices: exactly one choice, an object. */
static P
walk_choices(Line *ln, P p, P end)
{
    if (p >= end || *p != '[' || ln->choices.kind != V_ABSENT)
        return NULL;
    P start = p;
    p = skip_ws(p + 1, end);
    Val choice = {0};
    Obj o = {p, end, 0};
    WALK_INTO(o, choice, walk_choice, ln, o.p, end);
    p = skip_ws(o.p, end);
    if (p >= end || *p != ']') /* more than one choice */
        return NULL;
    span(&ln->choices, V_ARR, start, p + 1, 0);
    return p + 1;
}

/* An object walked by `walker` into `slot`, or any other value recorded there. */
#define OBJECT_OR_VALUE(o, depth, slot, walker, ...)       \
    do {                                                   \
        P q_ = skip_ws((o).p, end);                        \
        if (q_ < end && *q_ == '{')                        \
            WALK_INTO(o, slot, walker, __VA_ARGS__);       \
        else                                               \
            TAKE(o, depth, &(slot));                       \
    } while (0)

static P
walk_response(Line *ln, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "choices"))
            WALK_WITH(o, walk_choices, ln, o.p, end);
        else if (KEY_IS(k, n, "usage"))
            OBJECT_OR_VALUE(o, 2, ln->usage, walk_usage, ln, o.p, end);
        else
            MEMBER(o, 2, RESPONSE_FIELDS, k, n);
    }
    return r == 0 ? o.p : NULL;
}

/* The whole line: one object, then only whitespace. */
static P
walk_line(Builder *self, Line *ln, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "request"))
            WALK_INTO(o, ln->request, walk_request, self, ln, o.p, end);
        else if (KEY_IS(k, n, "response"))
            OBJECT_OR_VALUE(o, 1, ln->response, walk_response, ln, o.p, end);
        else
            MEMBER(o, 1, LINE_FIELDS, k, n);
    }
    if (r != 0 || skip_ws(o.p, end) != end)
        return NULL;
    return o.p;
}

/* ---------------------------------------------------------------- tool calls
 *
 * A logged answer's tool calls as chat_jsonl._fast_tool_calls reads them: each an object with
 * a `function` object whose `name` is a string and whose `arguments` are a string (or null,
 * or absent), and an `id` that is a string or null. The response column keeps id, name and
 * arguments; the parsed arguments are derived when the row is read (_rows.loads_response). */

#define MAX_CALLS 64

typedef struct {
    Val id, name, arguments, function;
} Call;


static P
walk_function(Call *c, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "name"))
            TAKE(o, 7, &c->name);
        else if (KEY_IS(k, n, "arguments"))
            TAKE(o, 7, &c->arguments);
        else
            SKIP(o, 7);
    }
    return r == 0 ? o.p : NULL;
}

static P
walk_call(Call *c, P p, P end)
{
    Obj o;
    if (!obj_open(&o, p, end))
        return NULL;
    P k;
    Py_ssize_t n;
    int r;
    while ((r = obj_key(&o, &k, &n)) == 1) {
        if (KEY_IS(k, n, "id"))
            TAKE(o, 6, &c->id);
        else if (KEY_IS(k, n, "function")) {
            P q = skip_ws(o.p, end);
            if (q >= end || *q != '{')
                return NULL;
            WALK_INTO(o, c->function, walk_function, c, q, end);
        }
        else
            SKIP(o, 6);
    }
    return r == 0 ? o.p : NULL;
}

/* The calls of a validated `tool_calls` array into `calls` (*n of them): 1, or 0 when one is
 * not as the fast path takes it. */
static int
read_calls(const Val *array, Call *calls, int *n)
{
    P end = array->end;
    P p = skip_ws(array->start + 1, end);
    *n = 0;
    if (*p == ']')
        return 1;
    for (;;) {
        if (*n == MAX_CALLS)
            return 0;
        Call *c = &calls[*n];
        memset(c, 0, sizeof *c);
        p = walk_call(c, p, end);
        if (p == NULL || c->function.kind != V_OBJ || c->name.kind != V_STR)
            return 0;
        if (!IS_NULL(c->id) && c->id.kind != V_STR)
            return 0;
        if (c->arguments.kind != V_ABSENT && c->arguments.kind != V_NULL &&
            c->arguments.kind != V_STR)
            return 0; /* arguments as an object: the full reader writes them as text */
        (*n)++;
        p = skip_ws(p, end);
        if (*p == ']')
            return 1;
        if (*p != ',')
            return 0;
        p = skip_ws(p + 1, end);
    }
}

/* A validated string value (no escape sequences, or with them) as UTF-8, into `out`. */
static int
unescape(const Val *v, Buf *out)
{
    out->len = 0;
    P p = v->start + 1, end = v->end - 1;
    if (!v->escaped)
        return buf_put(out, p, end - p);
    if (buf_reserve(out, end - p) < 0) /* text never grows when unescaped: \uXXXX is 6
                                        * bytes for at most 3, a pair 12 for 4 */
        return -1;
    char *w = out->p;
    while (p < end) {
        if (*p != '\\') {
            *w++ = (char)*p++;
            continue;
        }
        unsigned char e = p[1];
        p += 2;
        switch (e) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            long cp = hex4(p); /* a surrogate comes in a pair: scan_string checked it */
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
                p += 6;
                *w++ = (char)(0xF0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            else if (cp < 0x80) {
                *w++ = (char)cp;
            }
            else if (cp < 0x800) {
                *w++ = (char)(0xC0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            else {
                *w++ = (char)(0xE0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *w++ = (char)e; /* " \ / */
        }
    }
    out->len = w - out->p;
    return 0;
}

/* The int64 of a validated integer token. */
static int64_t
int_of(const Val *v)
{
    P p = v->start;
    int neg = (*p == '-');
    if (neg)
        p++;
    int64_t x = 0;
    for (; p < v->end; p++)
        x = x * 10 + (*p - '0');
    return neg ? -x : x;
}

static int
is_role(Builder *self, const Val *role)
{
    if (role->kind != V_STR || role->escaped)
        return 0;
    P s = role->start + 1;
    Py_ssize_t n = (role->end - role->start) - 2;
    for (int i = 0; i < self->nroles; i++)
        if (self->role_len[i] == n && memcmp(self->role[i], s, (size_t)n) == 0)
            return 1;
    return 0;
}

static int
put(Buf *b, const char *s)
{
    return buf_put(b, s, (Py_ssize_t)strlen(s));
}

static int
put_val(Buf *b, const Val *v)
{
    if (IS_NULL(*v))
        return put(b, "null");
    return buf_put(b, v->start, v->end - v->start);
}

/* ---------------------------------------------------------------- timestamps
 *
 * What _common.parse_timestamp makes of a logged time, in microseconds since the epoch (UTC),
 * for the forms logs use most; any other form is left to it. */

/* Python's _PyTime_RoundHalfEven: round half to even. */
static double
round_half_even(double x)
{
    double rounded = round(x);
    if (fabs(x - rounded) == 0.5)
        rounded = 2.0 * round(x / 2.0);
    return rounded;
}

/* datetime.fromtimestamp(seconds, tz=UTC) in microseconds (CPython's own rounding of the
 * fraction: half to even); 0 outside (0, 1e11) seconds. */
static int
seconds_us(double seconds, int64_t *us)
{
    if (!(seconds > 0.0 && seconds < 1e11))
        return 0;
    double whole;
    double fraction = modf(seconds, &whole) * 1e6;
    fraction = round_half_even(fraction);
    if (fraction >= 1e6) {
        fraction -= 1e6;
        whole += 1.0;
    }
    *us = (int64_t)whole * 1000000 + (int64_t)fraction;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n decimal digits at p as a number, or -1. */
static int
digits(P p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* datetime.fromisoformat for YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}][Z|+HH:MM|-HH:MM] (naive: UTC),
 * in microseconds; 0 for any other text (date only, basic format, 7+ fraction digits...). */
static int
iso_us(P s, P e, int64_t *us)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (e - s < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return 0;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
        minute < 0 || minute > 59 || second < 0 || second > 59)
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap))
        return 0;
    P p = s + 19;
    int64_t micro = 0;
    if (p < e && *p == '.') {
        P f = ++p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        int n = (int)(p - f);
        if (n < 1 || n > 6)
            return 0;
        micro = digits(f, n);
        for (int i = n; i < 6; i++)
            micro *= 10;
    }
    int64_t offset = 0; /* seconds east of UTC */
    if (p < e && *p == 'Z') {
        p++;
    }
    else if (p < e && (*p == '+' || *p == '-')) {
        if (e - p < 6 || p[3] != ':')
            return 0;
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        offset = (*p == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
        p += 6;
    }
    if (p != e)
        return 0;
    int64_t secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                   second - offset;
    *us = secs * 1000000 + micro;
    return 1;
}

/* A timestamp value (epoch seconds; milliseconds above 1e11; ISO 8601 text) in microseconds:
 * 1, or 0 for a value this fast path leaves to parse_timestamp, or -1 on error. */
static int
timestamp_us(const Val *ts, int64_t *us)
{
    if (ts->kind == V_INT) {
        if (*ts->start == '-' || ts->end - ts->start > 15)
            return 0;
        int64_t v = int_of(ts);
        if (v > 0 && v < 100000000000LL) {
            *us = v * 1000000;
            return 1;
        }
        return v > 100000000000LL ? seconds_us((double)v / 1000.0, us) : 0;
    }
    if (ts->kind == V_FLOAT) {
        char text[64];
        Py_ssize_t n = ts->end - ts->start;
        if (n >= (Py_ssize_t)sizeof text)
            return 0;
        memcpy(text, ts->start, (size_t)n);
        text[n] = '\0';
        double v = PyOS_string_to_double(text, NULL, NULL);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        if (v > 0.0 && v < 1e11)
            return seconds_us(v, us);
        return v > 1e11 ? seconds_us(v / 1000.0, us) : 0;
    }
    if (ts->kind == V_STR && !ts->escaped)
        return iso_us(ts->start + 1, ts->end - 1, us);
    return 0;
}

/* The response column (the normalised logged response, as fast_row writes it) into `b`. */
static int
response_json(Buf *b, Line *ln, const Val *usage[5], const Val *latency, const Call *calls,
              int n_calls)
{
    static const char *names[5] = {"prompt_tokens", "completion_tokens", "total_tokens",
                                   "cached_tokens", "reasoning_tokens"};
    b->len = 0;
    if (put(b, "{\"text\":") < 0 || put_val(b, &ln->text) < 0 || put(b, ",\"tool_calls\":[") < 0)
        return -1;
    for (int i = 0; i < n_calls; i++) {
        const Call *c = &calls[i];
        const char *args = c->arguments.kind == V_ABSENT ? "\"\""   /* fn.get("arguments", "") */
                           : c->arguments.kind == V_NULL ? "\"{}\"" /* from_raw(None) */
                                                          : NULL;
        if (put(b, i ? ",{\"id\":" : "{\"id\":") < 0 || put_val(b, &c->id) < 0 ||
            put(b, ",\"name\":") < 0 || put_val(b, &c->name) < 0 ||
            put(b, ",\"arguments\":") < 0 ||
            (args ? put(b, args) : put_val(b, &c->arguments)) < 0 || put(b, "}") < 0)
            return -1;
    }
    if (put(b, "],\"refusal\":") < 0 || put_val(b, &ln->refusal) < 0 ||
        put(b, ",\"finish_reason\":") < 0 || put_val(b, &ln->finish_reason) < 0 ||
        put(b, ",\"usage\":") < 0)
        return -1;
    if (usage == NULL) {
        if (put(b, "null") < 0)
            return -1;
    }
    else {
        for (int i = 0; i < 5; i++) {
            if (put(b, i ? ",\"" : "{\"") < 0 || put(b, names[i]) < 0 || put(b, "\":") < 0 ||
                put_val(b, usage[i]) < 0)
                return -1;
        }
        if (put(b, "}") < 0)
            return -1;
    }
    if (put(b, ",\"model\":") < 0 || put_val(b, &ln->resp_model) < 0 ||
        put(b, ",\"latency_ms\":") < 0 || put_val(b, latency) < 0)
        return -1;
    if (latency->kind == V_INT && put(b, ".0") < 0) /* fast_row: float(latency) */
        return -1;
    return put(b, ",\"ttft_ms\":null}");
}

/* The row of one line appended to the columns: 1, or 0 when the line is not one this fast
 * path takes (nothing appended), or -1 on error. */
static int
take_line(Builder *self, P line, Py_ssize_t size, Py_ssize_t lineno)
{
    P end = line + size;
    Line ln;
    memset(&ln, 0, sizeof ln);
    P p = skip_ws(line, end);
    if (walk_line(self, &ln, p, end) == NULL)
        return 0;

    /* the request: check_chat_request, for the lines it accepts (messages were checked by
     * walk_messages) */
    if (ln.request.kind != V_OBJ || ln.messages.kind != V_ARR)
        return 0;
    if (ln.model.kind != V_STR) /* a missing model: fast_row fills it in */
        return 0;
    if (!IS_NULL(ln.tools) && ln.tools.kind != V_ARR)
        return 0;
    if (!IS_NULL(ln.request_metadata)) /* merged with the line's: fast_row */
        return 0;
    if (!IS_NULL(ln.error)) /* a logged error beside the request: the full reader */
        return 0;

    /* latency: latency_ms if the key is there, else duration_ms */
    const Val *latency = ln.latency_ms.kind != V_ABSENT ? &ln.latency_ms : &ln.duration_ms;
    if (!IS_NULL(*latency) && !IS_NUM(*latency))
        return 0;
    if (latency->kind == V_INT && (latency->end - latency->start > 15 || *latency->start == '-'))
        return 0; /* exactly a float, and not -0 */

    /* the response: one choice, a text answer (no tool calls) */
    const Val *usage[5] = {NULL, NULL, NULL, NULL, NULL};
    int has_usage = 0;
    if (self->calls == NULL && (self->calls = PyMem_Malloc(sizeof(Call) * MAX_CALLS)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Call *calls = self->calls;
    int n_calls = 0;
    if (!IS_NULL(ln.response)) {
        if (ln.response.kind != V_OBJ || ln.choices.kind != V_ARR || ln.message.kind != V_OBJ)
            return 0;
        if (ln.tool_calls.kind == V_ARR) {
            if (!read_calls(&ln.tool_calls, calls, &n_calls))
                return 0;
        }
        else if (!IS_NULL(ln.tool_calls)) {
            return 0;
        }
        if (!IS_NULL(ln.function_call))
            return 0;
        if ((!IS_NULL(ln.text) && ln.text.kind != V_STR) ||
            (!IS_NULL(ln.refusal) && ln.refusal.kind != V_STR) ||
            (!IS_NULL(ln.finish_reason) && ln.finish_reason.kind != V_STR) ||
            (!IS_NULL(ln.resp_model) && ln.resp_model.kind != V_STR))
            return 0;
        if (ln.usage.kind == V_OBJ) {
            /* pd = u.get("prompt_tokens_details") or u.get("input_tokens_details"), and so
             * on (records.usage_from_dict): a details value is null, or an object */
            int falsy[4];
            for (int i = 0; i < 4; i++) {
                const Val *d = &ln.details[i];
                if (IS_NULL(*d))
                    falsy[i] = 1;
                else if (d->kind == V_OBJ)
                    falsy[i] = d->empty;
                else
                    return 0;
            }
            usage[0] = ln.prompt_tokens.kind != V_ABSENT ? &ln.prompt_tokens : &ln.input_tokens;
            usage[1] = ln.completion_tokens.kind != V_ABSENT ? &ln.completion_tokens
                                                             : &ln.output_tokens;
            usage[2] = &ln.total_tokens;
            usage[3] = falsy[0] ? &ln.counts[1] : &ln.counts[0];
            usage[4] = falsy[2] ? &ln.counts[3] : &ln.counts[2];
            for (int i = 0; i < 5; i++)
                if (!IS_NULL(*usage[i]) && usage[i]->kind != V_INT)
                    return 0;
            has_usage = 1;
        }
        else if (!IS_NULL(ln.usage)) {
            return 0;
        }
    }

    /* timestamp: timestamp, else created_at, else the response's created; epoch seconds */
    const Val *ts = !IS_NULL(ln.timestamp)    ? &ln.timestamp
                    : !IS_NULL(ln.created_at) ? &ln.created_at
                                              : &ln.created;
    int64_t timestamp = 0;
    int has_timestamp = 0;
    if (!IS_NULL(*ts)) {
        int r = timestamp_us(ts, &timestamp);
        if (r <= 0)
            return r; /* 0: a time this fast path leaves to parse_timestamp */
        has_timestamp = 1;
    }

    /* metadata: the line's object (no tags: fast_row merges those) */
    if (ln.tags.kind != V_ABSENT)
        return 0;
    if (!IS_NULL(ln.metadata) && ln.metadata.kind != V_OBJ)
        return 0;

    /* id: the line's id, else (no other id field) the response's id */
    const Val *ex_id = &ln.id;
    if (!(ln.id.kind == V_STR && !ln.id.empty)) {
        if (!IS_NULL(ln.id) || !IS_NULL(ln.custom_id) || !IS_NULL(ln.request_id) ||
            ln.response.kind != V_OBJ)
            return 0;
        if (!(ln.resp_id.kind == V_STR && !ln.resp_id.empty))
            return 0;
        ex_id = &ln.resp_id;
    }
    const Val *gold = !IS_NULL(ln.gold) ? &ln.gold : &ln.label;
    if (!IS_NULL(*gold) && gold->kind != V_STR)
        return 0;

    /* the id against the ids seen (a repeat is renamed by the caller) */
    if (unescape(ex_id, &self->id_buf) < 0)
        return -1;
    if (self->id_buf.len == 0) /* "\u0000"-free, but an escaped empty id stays empty */
        return 0;
    PyObject *id_obj = NULL;
    if (self->seen != Py_None) {
        id_obj = PyUnicode_DecodeUTF8(self->id_buf.p, self->id_buf.len, NULL);
        if (id_obj == NULL)
            return -1;
        int seen = PySet_Contains(self->seen, id_obj);
        if (seen != 0) {
            Py_DECREF(id_obj);
            return seen < 0 ? -1 : 0;
        }
    }
    if (!IS_NULL(ln.response) &&
        response_json(&self->resp_buf, &ln, has_usage ? usage : NULL, latency, calls,
                      n_calls) < 0)
        goto error;

    /* every check passed: append the row */
    StrCol *s = self->str;
    if (str_push(&s[C_ID], self->id_buf.p, self->id_buf.len) < 0 ||
        str_push(&s[C_FILE], self->file_utf8, self->file_len) < 0 ||
        int_push(&self->line, (int64_t)lineno) < 0 ||
        str_push(&s[C_FORMAT], self->format_utf8, self->format_len) < 0 ||
        (has_timestamp ? int_push(&self->timestamp, timestamp)
                       : int_push_null(&self->timestamp)) < 0)
        goto error;
    if (unescape(&ln.model, &self->scratch) < 0 ||
        str_push(&s[C_MODEL], self->scratch.p, self->scratch.len) < 0 ||
        str_push(&s[C_REQUEST], (const char *)ln.request.start,
                 ln.request.end - ln.request.start) < 0 ||
        (IS_NULL(ln.response)
             ? str_push_null(&s[C_RESPONSE])
             : str_push(&s[C_RESPONSE], self->resp_buf.p, self->resp_buf.len)) < 0 ||
        str_push_null(&s[C_ERROR]) < 0)
        goto error;
    if (IS_NULL(ln.metadata) || ln.metadata.empty) {
        if (str_push(&s[C_METADATA], "{}", 2) < 0)
            goto error;
    }
    else if (str_push(&s[C_METADATA], (const char *)ln.metadata.start,
                      ln.metadata.end - ln.metadata.start) < 0) {
        goto error;
    }
    if (IS_NULL(*gold)) {
        if (str_push_null(&s[C_GOLD]) < 0)
            goto error;
    }
    else if (unescape(gold, &self->scratch) < 0 ||
             str_push(&s[C_GOLD], self->scratch.p, self->scratch.len) < 0) {
        goto error;
    }
    if (id_obj != NULL) {
        int r = PySet_Add(self->seen, id_obj);
        Py_DECREF(id_obj);
        if (r < 0)
            return -1;
    }
    self->rows++;
    return 1;

error:
    Py_XDECREF(id_obj);
    return -1;
}

/* bytes.isspace() */
static int
is_blank(const char *s, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\x0b' && c != '\x0c')
            return 0;
    }
    return 1;
}

PyDoc_STRVAR(add_lines_doc,
"add_lines(lines, start, first_line) -> int\n\n"
"Append the rows of lines[start:] (a list of bytes; lines[0] is line first_line of the\n"
"file) until a non-blank line this fast path does not take, or until the batch is full.\n"
"Returns the index of the next line to read: that line, when it was not taken.");

static PyObject *
Builder_add_lines(Builder *self, PyObject *args)
{
    PyObject *lines;
    Py_ssize_t start, first_line;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &lines, &start, &first_line))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    Py_ssize_t data = builder_bytes(self);
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "lines must be bytes");
            return NULL;
        }
        if (is_blank(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)))
            continue;
        if ((i & 1023) == 0 && PyErr_CheckSignals() < 0)
            return NULL;
        int r = take_line(self, (P)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw),
                          first_line + i);
        if (r < 0)
            return NULL;
        if (r == 0)
            return PyLong_FromSsize_t(i);
        self->lines++;
        data += PyBytes_GET_SIZE(raw);
        if (self->rows >= self->max_rows || data >= self->max_bytes)
            return PyLong_FromSsize_t(i + 1);
    }
    return PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(add_row_doc,
"add_row(row)\n\n"
"Append a row made in Python: a tuple in the order of _rows.ROW_COLUMNS, the timestamp\n"
"an int of microseconds since the epoch or None, the JSON columns str or bytes.");

static PyObject *
Builder_add_row(Builder *self, PyObject *row)
{
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 11) {
        PyErr_SetString(PyExc_TypeError, "a row is a tuple of 11 values");
        return NULL;
    }
#define ITEM(i) PyTuple_GET_ITEM(row, i)
    PyObject *line = ITEM(2), *ts = ITEM(4);
    if (!PyLong_Check(line) || !(ts == Py_None || PyLong_Check(ts))) {
        PyErr_SetString(PyExc_TypeError, "line must be an int, timestamp an int or None");
        return NULL;
    }
    long long lineno = PyLong_AsLongLong(line);
    if (lineno == -1 && PyErr_Occurred())
        return NULL;
    long long t = 0;
    if (ts != Py_None) {
        t = PyLong_AsLongLong(ts);
        if (t == -1 && PyErr_Occurred())
            return NULL;
    }
    if (str_push_obj(&self->str[C_ID], ITEM(0)) < 0 ||
        str_push_obj(&self->str[C_FILE], ITEM(1)) < 0 ||
        int_push(&self->line, (int64_t)lineno) < 0 ||
        str_push_obj(&self->str[C_FORMAT], ITEM(3)) < 0 ||
        (ts == Py_None ? int_push_null(&self->timestamp)
                       : int_push(&self->timestamp, (int64_t)t)) < 0 ||
        str_push_obj(&self->str[C_MODEL], ITEM(5)) < 0 ||
        str_push_obj(&self->str[C_REQUEST], ITEM(6)) < 0 ||
        str_push_obj(&self->str[C_RESPONSE], ITEM(7)) < 0 ||
        str_push_obj(&self->str[C_ERROR], ITEM(8)) < 0 ||
        str_push_obj(&self->str[C_METADATA], ITEM(9)) < 0 ||
        str_push_obj(&self->str[C_GOLD], ITEM(10)) < 0)
        return NULL;
#undef ITEM
    self->rows++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_doc,
"take() -> (rows, buffers)\n\n"
"The rows appended since the last take, as Arrow buffers in the order of\n"
"_rows.ROW_COLUMNS: (validity bitmap or None, int32 offsets, data) for a text column,\n"
"(validity bitmap or None, int64 values) for line and timestamp. Starts a new batch.");

static PyObject *
str_buffers(StrCol *c, Py_ssize_t n)
{
    PyObject *valid = bitmap(&c->valid, n, c->nulls);
    if (valid == NULL)
        return NULL;
    PyObject *offsets = bytes_of(&c->offsets);
    PyObject *data = offsets ? bytes_of(&c->data) : NULL;
    if (data == NULL) {
        Py_DECREF(valid);
        Py_XDECREF(offsets);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(3, valid, offsets, data);
    Py_DECREF(valid);
    Py_DECREF(offsets);
    Py_DECREF(data);
    return out;
}

static PyObject *
int_buffers(IntCol *c, Py_ssize_t n)
{
    PyObject *valid = bitmap(&c->valid, n, c->nulls);
    if (valid == NULL)
        return NULL;
    PyObject *values = bytes_of(&c->values);
    if (values == NULL) {
        Py_DECREF(valid);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, valid, values);
    Py_DECREF(valid);
    Py_DECREF(values);
    return out;
}

static PyObject *
Builder_take(Builder *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = self->rows;
    PyObject *bufs = PyList_New(11);
    if (bufs == NULL)
        return NULL;
    /* the order of _rows.ROW_COLUMNS */
    PyObject *items[11] = {
        str_buffers(&self->str[C_ID], n),       str_buffers(&self->str[C_FILE], n),
        int_buffers(&self->line, n),            str_buffers(&self->str[C_FORMAT], n),
        int_buffers(&self->timestamp, n),       str_buffers(&self->str[C_MODEL], n),
        str_buffers(&self->str[C_REQUEST], n),  str_buffers(&self->str[C_RESPONSE], n),
        str_buffers(&self->str[C_ERROR], n),    str_buffers(&self->str[C_METADATA], n),
        str_buffers(&self->str[C_GOLD], n),
    };
    int failed = 0;
    for (int i = 0; i < 11; i++) {
        if (items[i] == NULL)
            failed = 1;
        PyList_SET_ITEM(bufs, i, items[i] ? items[i] : Py_NewRef(Py_None));
    }
    if (failed) {
        Py_DECREF(bufs);
        return NULL;
    }
    if (builder_reset(self) < 0) {
        Py_DECREF(bufs);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(nN)", n, bufs);
    return out;
}

static PyObject *
Builder_get_rows(Builder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->rows);
}

static PyObject *
Builder_get_lines(Builder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->lines);
}

static PyObject *
Builder_get_nbytes(Builder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(builder_bytes(self));
}

static PyMethodDef Builder_methods[] = {
    {"add_lines", (PyCFunction)Builder_add_lines, METH_VARARGS, add_lines_doc},
    {"add_row", (PyCFunction)Builder_add_row, METH_O, add_row_doc},
    {"take", (PyCFunction)Builder_take, METH_NOARGS, take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Builder_getset[] = {
    {"rows", (getter)Builder_get_rows, NULL, "rows in the current batch", NULL},
    {"lines", (getter)Builder_get_lines, NULL, "non-blank lines add_lines took, in all", NULL},
    {"nbytes", (getter)Builder_get_nbytes, NULL, "text bytes in the current batch", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Builder_doc,
"Builder(file, format, seen, roles, max_rows=2048, max_bytes=64 MiB)\n\n"
"Columns of the ingest dataset built from chat-jsonl lines (see the module docstring);\n"
"`roles` are the message roles accepted.\n"
"`seen` is the set of ids seen so far (a line whose id is in it is not taken; the ids of\n"
"the rows taken are added), or None to take ids as they are.");

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "migrate_eval.ingest._fastrows.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = Builder_doc,
    .tp_methods = Builder_methods,
    .tp_getset = Builder_getset,
    .tp_init = (initproc)Builder_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fastrows_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "migrate_eval.ingest._fastrows",
    .m_doc = "The chat-jsonl fast path of ingest_to_dataset (see migrate_eval/ingest/_rows.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastrows(void)
{
    if (PyType_Ready(&BuilderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastrows_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
