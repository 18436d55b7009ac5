// binding.hpp — the parts of the Python module (_agentbus) and how they report failure.
//
// The module is a thin layer: agentbus/*.py gives it its Python shape (keyword
// arguments, exceptions by code, asyncio). Failures cross as C++ exceptions that the
// translator in module.cpp turns into the exceptions of agentbus/_errors.py, so a
// status code reaches Python as the same stable number (docs/python.md).
//
// GIL: every call that may wait (enrolment, TPM operations, send, request) releases
// it; Python callables are only ever touched with it held.
#pragma once

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/status.hpp"

namespace agentbus::python {

namespace py = pybind11;

// status_exception carries a non-ok status to the translator (agentbus.Error or the
// subclass for its code). `kind` selects the family: "" (an operation),
// "enrolment" (agentbus.EnrolmentError).
class status_exception : public std::runtime_error {
 public:
  status_exception(status st, std::string kind = {})
      : std::runtime_error(st.to_string()), status_(std::move(st)), kind_(std::move(kind)) {}
  const status& get() const noexcept { return status_; }
  const std::string& kind() const noexcept { return kind_; }

 private:
  status status_;
  std::string kind_;
};

// check throws status_exception for a non-ok status.
// to_py copies library bytes into a Python bytes object (GIL held).
inline py::bytes to_py(const bytes& b) { return py::bytes(reinterpret_cast<const char*>(b.data()), b.size()); }

inline void check(const status& st) {
  if (!st.ok()) throw status_exception(st);
}
template <typename T>
T take(result<T>&& r) {
  if (!r.ok()) throw status_exception(r.error());
  return std::move(r).value();
}

void bind_errors(py::module_& m);
void bind_identity(py::module_& m);
void bind_policy(py::module_& m);
void bind_agent(py::module_& m);

}  // namespace agentbus::python
