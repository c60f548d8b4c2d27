/* migrate_eval.core._chrfc: the integer statistics of chrF, in C.
 *
 * stats(hypothesis, reference) takes two texts with their whitespace already removed (as
 * migrate_eval/core/_chrf.py removes it) and returns the 18 integers _chrf._pair_stats returns:
 * for each character n-gram order 1..6, the hypothesis' n-grams (0 where the reference has none
 * of that order), the reference's n-grams, and the matches (over the distinct n-grams, the
 * smaller of the two counts). The F-score is computed from them in Python, so every float
 * operation stays Python's own; the integers are exact, whatever the hash does: n-grams are
 * compared code point by code point.
 *
 * Per order, the reference's n-grams go into an open-addressing table (first position, count);
 * each hypothesis n-gram found there with a count left takes one (a match). That sums, over the
 * distinct n-grams, the smaller count: what intersecting two Counters sums.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CHAR_ORDER 6

typedef struct {
    Py_ssize_t pos; /* first position of the n-gram in the reference; -1: empty */
    Py_ssize_t count;
} Slot;

static uint64_t
gram_hash(const Py_UCS4 *s, int n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int k = 0; k < n; k++) {
        h ^= (uint64_t)s[k];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static int
same(const Py_UCS4 *a, const Py_UCS4 *b, int n)
{
    return memcmp(a, b, (size_t)n * sizeof(Py_UCS4)) == 0;
}

static Py_ssize_t
matches(const Py_UCS4 *hyp, Py_ssize_t n_hyp, const Py_UCS4 *ref, Py_ssize_t n_ref, int n,
        Slot *table, size_t mask)
{
    for (size_t i = 0; i <= mask; i++)
        table[i].pos = -1;
    for (Py_ssize_t i = 0; i < n_ref; i++) {
        size_t at = (size_t)gram_hash(ref + i, n) & mask;
        for (;;) {
            Slot *slot = &table[at];
            if (slot->pos < 0) {
                slot->pos = i;
                slot->count = 1;
                break;
            }
            if (same(ref + slot->pos, ref + i, n)) {
                slot->count++;
                break;
            }
            at = (at + 1) & mask;
        }
    }
    Py_ssize_t found = 0;
    for (Py_ssize_t j = 0; j < n_hyp; j++) {
        size_t at = (size_t)gram_hash(hyp + j, n) & mask;
        for (;;) {
            Slot *slot = &table[at];
            if (slot->pos < 0)
                break;
            if (same(ref + slot->pos, hyp + j, n)) {
                if (slot->count > 0) {
                    slot->count--;
                    found++;
                }
                break;
            }
            at = (at + 1) & mask;
        }
    }
    return found;
}

static PyObject *
stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "stats(hypothesis: str, reference: str)");
        return NULL;
    }
    Py_UCS4 *hyp = PyUnicode_AsUCS4Copy(args[0]);
    if (hyp == NULL)
        return NULL;
    Py_UCS4 *ref = PyUnicode_AsUCS4Copy(args[1]);
    if (ref == NULL) {
        PyMem_Free(hyp);
        return NULL;
    }
    Py_ssize_t h_len = PyUnicode_GET_LENGTH(args[0]);
    Py_ssize_t r_len = PyUnicode_GET_LENGTH(args[1]);
    size_t size = 8;
    while (size < 2 * (size_t)(r_len > 0 ? r_len : 1))
        size *= 2;
    Slot *table = NULL;
    if (r_len > 0 && h_len > 0) {
        table = PyMem_Malloc(size * sizeof(Slot));
        if (table == NULL) {
            PyMem_Free(hyp);
            PyMem_Free(ref);
            return PyErr_NoMemory();
        }
    }
    Py_ssize_t out[3 * CHAR_ORDER];
    for (int n = 1; n <= CHAR_ORDER; n++) {
        Py_ssize_t n_ref = r_len - n + 1 > 0 ? r_len - n + 1 : 0;
        Py_ssize_t n_hyp = h_len - n + 1 > 0 ? h_len - n + 1 : 0;
        Py_ssize_t found = 0;
        if (n_ref > 0 && n_hyp > 0)
            found = matches(hyp, n_hyp, ref, n_ref, n, table, size - 1);
        /* no hypothesis n-grams count where the reference has none of that order */
        out[3 * (n - 1)] = n_ref ? n_hyp : 0;
        out[3 * (n - 1) + 1] = n_ref;
        out[3 * (n - 1) + 2] = found;
    }
    PyMem_Free(table);
    PyMem_Free(hyp);
    PyMem_Free(ref);
    PyObject *list = PyList_New(3 * CHAR_ORDER);
    if (list == NULL)
        return NULL;
    for (int k = 0; k < 3 * CHAR_ORDER; k++) {
        PyObject *value = PyLong_FromSsize_t(out[k]);
        if (value == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, value);
    }
    return list;
}

static PyMethodDef methods[] = {
    {"stats", (PyCFunction)(void (*)(void))stats, METH_FASTCALL,
     "stats(hypothesis, reference) -> the 18 chrF statistics of two whitespace-free texts"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chrfc", "chrF's integer statistics in C (see _chrf.py).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__chrfc(void)
{
    return PyModule_Create(&module);
}
