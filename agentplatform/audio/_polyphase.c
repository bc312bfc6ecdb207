/* The streaming polyphase FIR of agentplatform.audio.resample, compiled.
 *
 * PolyphaseResampler designs its filter in Python (scipy) and hands the branches
 * to a Kernel: an up x taps row-major float64 matrix, branch p holding taps p,
 * p+up, p+2up... of the (up-scaled) filter, reversed so the newest sample is last.
 * The kernel keeps the rest of the stream's state: the last taps-1 input samples,
 * where the next output's newest input sample falls in the next chunk ("lead")
 * and its branch ("phase"). One process() call per chunk converts PCM16 in to
 * PCM16 out with no hold-back: output k is emitted with the chunk that holds its
 * newest input sample floor(k*down/up), exactly as the NumPy path does.
 *
 * Each output is one float64 dot product summed in a fixed order (four running
 * sums over the window, then (s0+s1)+(s2+s3)), so an output's value depends only
 * on the input samples, never on how the stream was cut into chunks. It is then
 * clipped to [-32768, 32767] and rounded half to even, like np.rint. NumPy's
 * matmul sums in the BLAS library's own order, so the two paths can differ in the
 * last bits of the float64 sum and, when that sum lies within ~1e-9 of a .5
 * boundary, by one step of the int16 output.
 *
 * The GIL is held throughout: a 20 ms chunk is a few microseconds of arithmetic,
 * and letting go of the GIL on the event loop's audio path hands it to whichever
 * thread is waiting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    double *branches; /* up * taps, row-major */
    double *buf;      /* hist history samples, then room for `cap` fresh ones */
    Py_ssize_t cap;
    Py_ssize_t taps;
    Py_ssize_t hist;  /* taps - 1 */
    Py_ssize_t up;
    Py_ssize_t down;
    Py_ssize_t lead;  /* index in the next chunk of the next output's newest sample */
    Py_ssize_t phase; /* branch of the next output: (k * down) mod up */
} Kernel;

static inline double
dot(const double *x, const double *h, Py_ssize_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    Py_ssize_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += x[j] * h[j];
        s1 += x[j + 1] * h[j + 1];
        s2 += x[j + 2] * h[j + 2];
        s3 += x[j + 3] * h[j + 3];
    }
    for (; j < n; j++) {
        s0 += x[j] * h[j];
    }
    return (s0 + s1) + (s2 + s3);
}

static inline void
put_pcm16(char *out, double v)
{
    /* The order of the NumPy path: clip, then round half to even. */
    if (v > 32767.0) {
        v = 32767.0;
    }
    else if (v < -32768.0) {
        v = -32768.0;
    }
    int16_t s = (int16_t)nearbyint(v);
    uint16_t u = (uint16_t)s;
    out[0] = (char)(u & 0xff);
    out[1] = (char)(u >> 8);
}

static int
Kernel_init(Kernel *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"branches", "up", "down", NULL};
    PyObject *obj;
    Py_ssize_t up, down;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Onn:Kernel", kwlist, &obj, &up, &down)) {
        return -1;
    }
    if (self->branches != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Kernel is already initialised");
        return -1;
    }
    if (up < 1 || down < 1) {
        PyErr_SetString(PyExc_ValueError, "up and down must be positive");
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *fmt = view.format ? view.format : "B";
    if (view.itemsize != sizeof(double)
        || !(strcmp(fmt, "d") == 0 || strcmp(fmt, "<d") == 0 || strcmp(fmt, "=d") == 0)) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_TypeError, "branches must be C-contiguous float64, got format %s", fmt);
        return -1;
    }
    Py_ssize_t count = view.len / (Py_ssize_t)sizeof(double);
    if (count == 0 || count % up != 0) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "branches hold %zd values, not a multiple of up=%zd",
                     count, up);
        return -1;
    }
    self->up = up;
    self->down = down;
    self->taps = count / up;
    self->hist = self->taps - 1;
    self->cap = 160;
    self->branches = PyMem_Malloc((size_t)count * sizeof(double));
    self->buf = PyMem_Calloc((size_t)(self->hist + self->cap), sizeof(double));
    if (self->branches == NULL || self->buf == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->branches, view.buf, (size_t)count * sizeof(double));
    PyBuffer_Release(&view);
    self->lead = 0;
    self->phase = 0;
    return 0;
}

static void
Kernel_dealloc(Kernel *self)
{
    PyMem_Free(self->branches);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(Kernel *self)
{
    if (self->branches == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Kernel was not initialised");
        return 0;
    }
    return 1;
}

static PyObject *
Kernel_process(Kernel *self, PyObject *arg)
{
    if (!ready(self)) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len % 2) {
        PyErr_Format(PyExc_ValueError,
                     "PCM16 audio must have an even number of bytes, got %zd", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t n = view.len / 2;
    if (n == 0) {
        PyBuffer_Release(&view);
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (n > self->cap) {
        double *grown = PyMem_Realloc(self->buf, (size_t)(self->hist + n) * sizeof(double));
        if (grown == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        self->buf = grown;
        self->cap = n;
    }
    const unsigned char *in = (const unsigned char *)view.buf;
    double *fresh = self->buf + self->hist;
    for (Py_ssize_t i = 0; i < n; i++) {
        fresh[i] = (double)(int16_t)(uint16_t)(in[2 * i] | (in[2 * i + 1] << 8));
    }
    PyBuffer_Release(&view);

    const Py_ssize_t up = self->up, down = self->down, taps = self->taps;
    /* Outputs i = 0, 1, ... of this chunk sit at offset phase + i*down on the up-grid
     * and need input sample lead + offset/up; all of them whose sample is here go out:
     * phase + i*down < (n - lead)*up. */
    Py_ssize_t total = 0;
    if (n > self->lead) {
        total = ((n - self->lead) * up - self->phase + down - 1) / down;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, 2 * total);
    if (result == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(result);
    const double *buf = self->buf;
    const double *branches = self->branches;
    Py_ssize_t offset = self->phase;
    for (Py_ssize_t i = 0; i < total; i++, offset += down) {
        /* Chunk sample `newest` is buf[hist + newest]: its window starts at buf[newest]. */
        Py_ssize_t newest = self->lead + offset / up;
        const double *h = branches + (offset % up) * taps;
        put_pcm16(out + 2 * i, dot(buf + newest, h, taps));
    }
    if (self->hist) {
        memmove(self->buf, self->buf + n, (size_t)self->hist * sizeof(double));
    }
    Py_ssize_t advanced = self->phase + total * down;
    self->lead += advanced / up - n;
    self->phase = advanced % up;
    return result;
}

static PyObject *
Kernel_reset(Kernel *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) {
        return NULL;
    }
    memset(self->buf, 0, (size_t)self->hist * sizeof(double));
    self->lead = 0;
    self->phase = 0;
    Py_RETURN_NONE;
}

static PyObject *
Kernel_get_lead(Kernel *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->lead);
}

static PyObject *
Kernel_get_phase(Kernel *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->phase);
}

static PyObject *
Kernel_get_taps(Kernel *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->taps);
}

static PyMethodDef Kernel_methods[] = {
    {"process", (PyCFunction)Kernel_process, METH_O,
     "process(pcm) -> bytes: convert the next PCM16 chunk; every output whose newest "
     "input sample is in this chunk comes out now."},
    {"reset", (PyCFunction)Kernel_reset, METH_NOARGS,
     "reset(): zero the history, as if the stream started again."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"lead", (getter)Kernel_get_lead, NULL, "index in the next chunk of the next output's newest sample", NULL},
    {"phase", (getter)Kernel_get_phase, NULL, "filter branch of the next output", NULL},
    {"taps", (getter)Kernel_get_taps, NULL, "taps per branch", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "agentplatform.audio._polyphase.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Kernel(branches, up, down): one direction of one stream through a "
              "polyphase FIR (branches: up x taps float64, each reversed).",
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
    .tp_init = (initproc)Kernel_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef polyphase_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "agentplatform.audio._polyphase",
    .m_doc = "Compiled streaming polyphase FIR for agentplatform.audio.resample.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__polyphase(void)
{
    if (PyType_Ready(&KernelType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&polyphase_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
