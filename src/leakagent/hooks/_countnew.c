/* The fast path of the counting threading.local's __new__, in C (optional).
 *
 * Why: a __new__ written in Python costs a Python frame per creation. On CPython 3.13 a
 * __new__ that does nothing but call the C one already makes 10 threads creating
 * threading.local() 1.45x slower; the counting took it to 2.15x (3.11: 1.52x). This object
 * does, per creation, exactly what the Python __new__ in threadlocal.py does (the two are
 * kept in step and tested alike, tests/unit/hooks/test_threadlocal.py), without a frame:
 *
 *   obj = the C type's tp_new(cls, args, kwargs)
 *   frame = the creating frame (the current one: this callable pushes none)
 *   cell = slot.cells[frame.f_lasti], checked by cell.code / cell.klass, else
 *          slot.cells[(id(code), f_lasti, cls)]
 *   no cell, or busy(): hook(kind_class, obj, frame)
 *   cell.count < cell.quick: cell.count += 1
 *   else: record_cell(cell, obj)
 *
 * Any Exception on the way (never one from tp_new, which goes to the caller as in plain
 * Python) calls failed(exc), which switches counting off and says so once; the object is
 * returned as if nothing happened. Nothing here reads or keeps the constructor's arguments
 * beyond passing them to tp_new.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *raw;     /* _thread._local */
    PyObject *raw_new;     /* _thread._local.__new__: for a cls that is not a subtype */
    PyObject *counter;     /* the counting class: its instances count as threading.local */
    PyObject *slot;        /* the tracker's per-thread slot (a _thread._local) */
    PyObject *busy;        /* () -> int: inside a counted client construction */
    PyObject *record_cell; /* (cell, obj) */
    PyObject *hook;        /* (cls, obj, frame) */
    PyObject *failed;      /* (exc) */
    PyObject *cell_type;   /* the tracker's cell class, whose slots are read in place */
    PyObject *busy_var;    /* the ContextVar whose .get busy is, read without a call */
    Py_ssize_t off_code, off_klass, off_count, off_quick; /* slot offsets; 0: unknown */
    PyObject *lasti_obj;   /* the last offset as an int: past 256 each would be a new one */
    long lasti_value;
    int off;
} CountingNew;

static PyObject *str_cells, *str_code, *str_klass, *str_count, *str_quick, *one;

/* A cell's slot, new reference: read in place when the cell is the tracker's class (its
 * __slots__ members sit at fixed offsets), else by the generic attribute lookup. NULL with
 * AttributeError for a slot never set, as in Python. */
static PyObject *
cell_get(CountingNew *self, PyObject *cell, Py_ssize_t offset, PyObject *name)
{
    if (offset > 0 && (PyObject *)Py_TYPE(cell) == self->cell_type) {
        PyObject *value = *(PyObject **)((char *)cell + offset);
        if (value == NULL) {
            PyErr_SetObject(PyExc_AttributeError, name);
            return NULL;
        }
        Py_INCREF(value);
        return value;
    }
    return PyObject_GetAttr(cell, name);
}

static int
cell_set(CountingNew *self, PyObject *cell, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (offset > 0 && (PyObject *)Py_TYPE(cell) == self->cell_type) {
        PyObject **slot = (PyObject **)((char *)cell + offset);
        PyObject *old = *slot;
        Py_INCREF(value);
        *slot = value;
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(cell, name, value);
}

static int
counted(CountingNew *self, PyObject *cell, PyObject *obj)
{
    /* count a creation in the thread's cell at a known site: 0, or -1 with an exception */
    PyObject *count = cell_get(self, cell, self->off_count, str_count);
    if (count == NULL) {
        return -1;
    }
    PyObject *quick = cell_get(self, cell, self->off_quick, str_quick);
    if (quick == NULL) {
        Py_DECREF(count);
        return -1;
    }
    int less;
    long n = -1;
    if (PyLong_CheckExact(count) && PyLong_CheckExact(quick)) {
        int over_n = 0, over_q = 0;
        n = PyLong_AsLongAndOverflow(count, &over_n);
        long q = PyLong_AsLongAndOverflow(quick, &over_q);
        if (over_n || over_q || (n == -1 && PyErr_Occurred()) || (q == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            n = -1;
            less = PyObject_RichCompareBool(count, quick, Py_LT);
        } else {
            less = n < q;
        }
    } else {
        less = PyObject_RichCompareBool(count, quick, Py_LT);
    }
    Py_DECREF(quick);
    if (less <= 0) {
        Py_DECREF(count);
        if (less < 0) {
            return -1;
        }
        PyObject *res = PyObject_CallFunctionObjArgs(self->record_cell, cell, obj, NULL);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    /* all that record_cell would do */
    PyObject *more = (n >= 0 && n < LONG_MAX) ? PyLong_FromLong(n + 1) : PyNumber_Add(count, one);
    Py_DECREF(count);
    if (more == NULL) {
        return -1;
    }
    int set = cell_set(self, cell, self->off_count, str_count, more);
    Py_DECREF(more);
    return set;
}

/* cells[key], a new reference; NULL without an exception when there is none. The tracker's
 * plain dict is read directly, anything else by subscript, as the Python __new__ does. */
static PyObject *
cells_get(PyObject *cells, PyObject *key)
{
    if (PyDict_CheckExact(cells)) {
        PyObject *cell = PyDict_GetItemWithError(cells, key);
        Py_XINCREF(cell);
        return cell;
    }
    PyObject *cell = PyObject_GetItem(cells, key);
    if (cell == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
    }
    return cell;
}

static int
count_it(CountingNew *self, PyObject *cls, PyObject *obj)
{
    /* 0 when counted (or nothing to count), -1 with an exception set */
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL) {
        return 0; /* made from C with no Python frame: no site to name */
    }
    PyObject *kind = (cls == self->counter) ? (PyObject *)self->raw : cls;
    PyObject *cells = NULL, *lasti = NULL, *code = NULL, *key = NULL, *cell_code = NULL;
    PyObject *cell_klass = NULL, *cell = NULL, *res = NULL;
    int rc = -1;

    cells = PyObject_GetAttr(self->slot, str_cells);
    if (cells == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear(); /* the thread's first creation */
        goto hook;
    }
#if PY_VERSION_HEX >= 0x030B0000
    long offset = PyFrame_GetLasti(frame);
    if (self->lasti_obj != NULL && self->lasti_value == offset) {
        lasti = self->lasti_obj; /* ints are immutable: one object serves every creation */
        Py_INCREF(lasti);
    } else {
        lasti = PyLong_FromLong(offset);
        if (lasti != NULL) {
            PyObject *old = self->lasti_obj;
            Py_INCREF(lasti);
            self->lasti_obj = lasti;
            self->lasti_value = offset;
            Py_XDECREF(old);
        }
    }
#else
    lasti = PyObject_GetAttrString((PyObject *)frame, "f_lasti");
#endif
    if (lasti == NULL) {
        goto done;
    }
    code = (PyObject *)PyFrame_GetCode(frame);
    cell = cells_get(cells, lasti);
    if (cell != NULL) {
        cell_code = cell_get(self, cell, self->off_code, str_code);
        if (cell_code == NULL) {
            goto missing;
        }
        if (cell_code == code) {
            cell_klass = cell_get(self, cell, self->off_klass, str_klass);
            if (cell_klass == NULL) {
                goto missing;
            }
        }
        if (cell_code != code || cell_klass != cls) {
            /* the cell keeps the key's code object: an equal id is the same code */
            Py_CLEAR(cell);
            key = Py_BuildValue("(NOO)", PyLong_FromVoidPtr(code), lasti, cls);
            if (key == NULL) {
                goto done;
            }
            cell = cells_get(cells, key);
        }
    }
    if (cell == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        goto hook;
    }
    if (self->busy_var != NULL) {
        if (PyContextVar_Get(self->busy_var, NULL, &res) < 0) {
            goto done;
        }
        if (res == NULL) { /* no value and no default: LookupError, as .get() would raise */
            PyErr_SetObject(PyExc_LookupError, self->busy_var);
            goto done;
        }
    } else {
        res = PyObject_CallNoArgs(self->busy);
        if (res == NULL) {
            goto done;
        }
    }
    int busy = PyObject_IsTrue(res);
    Py_CLEAR(res);
    if (busy < 0) {
        goto done;
    }
    if (!busy) {
        rc = counted(self, cell, obj);
        goto done;
    }
    goto hook;

missing: /* a cell without the slot it should have: the hook decides, as in Python */
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        goto done;
    }
    PyErr_Clear();

hook:
    res = PyObject_CallFunctionObjArgs(self->hook, kind, obj, (PyObject *)frame, NULL);
    rc = res ? 0 : -1;

done:
    Py_XDECREF(res);
    Py_XDECREF(cell);
    Py_XDECREF(cell_klass);
    Py_XDECREF(cell_code);
    Py_XDECREF(key);
    Py_XDECREF(code);
    Py_XDECREF(lasti);
    Py_XDECREF(cells);
    return rc;
}

static PyObject *
countingnew_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CountingNew *self = (CountingNew *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_thread._local.__new__(): not enough arguments");
        return NULL;
    }
    PyObject *cls = args[0];
    if (self->raw == NULL) { /* cleared by the collector with its class: nothing to make */
        PyErr_SetString(PyExc_TypeError, "_thread._local.__new__ is gone");
        return NULL;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, self->raw)) {
        /* the C type's own wrapper says what is wrong, as in plain Python */
        return PyObject_Vectorcall(self->raw_new, args, nargsf, kwnames);
    }
    PyObject *rest = PyTuple_New(nargs - 1);
    if (rest == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(rest, i - 1, args[i]);
    }
    PyObject *kwargs = NULL; /* none rather than an empty dict: the C type keeps it */
    if (nkw) {
        kwargs = PyDict_New();
        if (kwargs == NULL) {
            Py_DECREF(rest);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_DECREF(rest);
                Py_DECREF(kwargs);
                return NULL;
            }
        }
    }
    PyObject *obj = self->raw->tp_new((PyTypeObject *)cls, rest, kwargs);
    Py_DECREF(rest);
    Py_XDECREF(kwargs);
    if (obj == NULL || self->off) {
        return obj;
    }
    if (count_it(self, cls, obj) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(obj); /* KeyboardInterrupt and the like go on, as from Python code */
            return NULL;
        }
        self->off = 1;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL) {
            PyException_SetTraceback(value, tb);
        }
        PyObject *res = PyObject_CallFunctionObjArgs(self->failed, value ? value : Py_None, NULL);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (res == NULL) { /* failed() raises only under LEAKAGENT_STRICT=1 (tests), as in Python */
            Py_DECREF(obj);
            return NULL;
        }
        Py_DECREF(res);
    }
    return obj;
}

static int
countingnew_traverse(CountingNew *self, visitproc visit, void *arg)
{
    Py_VISIT(self->raw);
    Py_VISIT(self->raw_new);
    Py_VISIT(self->counter);
    Py_VISIT(self->slot);
    Py_VISIT(self->busy);
    Py_VISIT(self->record_cell);
    Py_VISIT(self->hook);
    Py_VISIT(self->failed);
    Py_VISIT(self->cell_type);
    Py_VISIT(self->busy_var);
    return 0;
}

static int
countingnew_clear(CountingNew *self)
{
    self->off = 1;
    Py_CLEAR(self->raw);
    Py_CLEAR(self->raw_new);
    Py_CLEAR(self->counter);
    Py_CLEAR(self->slot);
    Py_CLEAR(self->busy);
    Py_CLEAR(self->record_cell);
    Py_CLEAR(self->hook);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->cell_type);
    Py_CLEAR(self->busy_var);
    Py_CLEAR(self->lasti_obj);
    return 0;
}

static void
countingnew_dealloc(CountingNew *self)
{
    PyObject_GC_UnTrack(self);
    countingnew_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
countingnew_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

static PyTypeObject CountingNewType;

/* The offset of a __slots__ member that holds an object, or 0 (then read by name). */
static Py_ssize_t
member_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name); /* borrowed, no error */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        return 0;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY) || member->offset <= 0) {
        return 0;
    }
    return member->offset;
}

static PyObject *
countingnew_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"raw", "counter", "slot", "busy", "record_cell", "hook", "failed",
                            "cell_type", NULL};
    PyObject *raw, *counter, *slot, *busy, *record_cell, *hook, *failed, *cell_type = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOOO|O:CountingNew", names, &PyType_Type,
                                     &raw, &counter, &slot, &busy, &record_cell, &hook, &failed,
                                     &cell_type)) {
        return NULL;
    }
    PyObject *raw_new = PyObject_GetAttrString(raw, "__new__");
    if (raw_new == NULL) {
        return NULL;
    }
    CountingNew *self = PyObject_GC_New(CountingNew, type);
    if (self == NULL) {
        Py_DECREF(raw_new);
        return NULL;
    }
    self->vectorcall = countingnew_vectorcall;
    Py_INCREF(raw);
    self->raw = (PyTypeObject *)raw;
    self->raw_new = raw_new;
    Py_INCREF(counter);
    self->counter = counter;
    Py_INCREF(slot);
    self->slot = slot;
    Py_INCREF(busy);
    self->busy = busy;
    Py_INCREF(record_cell);
    self->record_cell = record_cell;
    Py_INCREF(hook);
    self->hook = hook;
    Py_INCREF(failed);
    self->failed = failed;
    self->off = 0;
    self->cell_type = NULL;
    self->busy_var = NULL;
    self->lasti_obj = NULL;
    self->lasti_value = -1;
    self->off_code = self->off_klass = self->off_count = self->off_quick = 0;
    if (PyType_Check(cell_type)) {
        Py_INCREF(cell_type);
        self->cell_type = cell_type;
        self->off_code = member_offset((PyTypeObject *)cell_type, "code");
        self->off_klass = member_offset((PyTypeObject *)cell_type, "klass");
        self->off_count = member_offset((PyTypeObject *)cell_type, "count");
        self->off_quick = member_offset((PyTypeObject *)cell_type, "quick");
    }
    if (PyCFunction_Check(busy) && PyCFunction_GET_SELF(busy) != NULL &&
        PyContextVar_CheckExact(PyCFunction_GET_SELF(busy)) &&
        strcmp(((PyCFunctionObject *)busy)->m_ml->ml_name, "get") == 0) {
        self->busy_var = PyCFunction_GET_SELF(busy); /* busy is that var's .get */
        Py_INCREF(self->busy_var);
    }
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
countingnew_get_off(CountingNew *self, void *closure)
{
    return PyBool_FromLong(self->off);
}

/* What introspection reads of a __new__ is the C type's own (name, doc, repr...): help(),
 * pydoc and reprs of threading.local show what they show without the agent. */
static PyObject *
countingnew_delegate(CountingNew *self, void *name)
{
    if (self->raw_new == NULL) {
        PyErr_SetString(PyExc_AttributeError, (const char *)name);
        return NULL;
    }
    return PyObject_GetAttrString(self->raw_new, (const char *)name);
}

static PyObject *
countingnew_repr(CountingNew *self)
{
    if (self->raw_new == NULL) {
        return PyUnicode_FromString("<_thread._local.__new__>");
    }
    return PyObject_Repr(self->raw_new);
}

static PyGetSetDef countingnew_getset[] = {
    {"off", (getter)countingnew_get_off, NULL, "True once counting was switched off.", NULL},
    {"__name__", (getter)countingnew_delegate, NULL, NULL, "__name__"},
    {"__qualname__", (getter)countingnew_delegate, NULL, NULL, "__qualname__"},
    {"__doc__", (getter)countingnew_delegate, NULL, NULL, "__doc__"},
    {"__text_signature__", (getter)countingnew_delegate, NULL, NULL, "__text_signature__"},
    {"__self__", (getter)countingnew_delegate, NULL, NULL, "__self__"},
    {NULL},
};

static PyTypeObject CountingNewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "leakagent.hooks._countnew.CountingNew",
    .tp_basicsize = sizeof(CountingNew),
    .tp_dealloc = (destructor)countingnew_dealloc,
    .tp_repr = (reprfunc)countingnew_repr,
    .tp_vectorcall_offset = offsetof(CountingNew, vectorcall),
    .tp_call = countingnew_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "CountingNew(raw, counter, slot, busy, record_cell, hook, failed): the "
              "counting threading.local's __new__ (see threadlocal.py).",
    .tp_traverse = (traverseproc)countingnew_traverse,
    .tp_clear = (inquiry)countingnew_clear,
    .tp_getset = countingnew_getset,
    .tp_new = countingnew_new,
};

static struct PyModuleDef countnew_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "leakagent.hooks._countnew",
    .m_doc = "The optional C fast path of the counting threading.local (threadlocal.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__countnew(void)
{
    if (PyType_Ready(&CountingNewType) < 0) {
        return NULL;
    }
    str_cells = PyUnicode_InternFromString("cells");
    str_code = PyUnicode_InternFromString("code");
    str_klass = PyUnicode_InternFromString("klass");
    str_count = PyUnicode_InternFromString("count");
    str_quick = PyUnicode_InternFromString("quick");
    one = PyLong_FromLong(1);
    if (!one || !str_cells || !str_code || !str_klass || !str_count || !str_quick) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&countnew_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&CountingNewType);
    if (PyModule_AddObject(module, "CountingNew", (PyObject *)&CountingNewType) < 0) {
        Py_DECREF(&CountingNewType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
