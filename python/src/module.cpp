// module.cpp — the _agentbus extension module: status codes, the exception
// translator, the library's version and log level. agentbus/__init__.py is the
// package users import.
#include <pybind11/stl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "agentbus/agent.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/library.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "binding.hpp"

namespace agentbus::python {

namespace {

// raise_python sets the Python error made by agentbus._errors.<factory>(...).
void raise_python(const char* factory, const py::tuple& args) {
  py::object make = py::module_::import("agentbus._errors").attr(factory);
  py::object exc = make(*args);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
}

}  // namespace

void bind_errors(py::module_& m) {
  // Every stable code by name, read from the library itself (agentbus.StatusCode is
  // built from it): codes are < 1000 and status_code_name knows each one.
  m.def("status_codes", [] {
    py::dict codes;
    for (unsigned v = 0; v < 1000; ++v) {
      auto name = status_code_name(static_cast<status_code>(v));
      if (name != "unknown_code") codes[py::str(std::string(name))] = v;
    }
    return codes;
  }, "Every stable status code as {name: number}.");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const status_exception& e) {
      raise_python("error_for", py::make_tuple(static_cast<int>(e.get().code()), e.get().detail(), e.kind()));
    } catch (const enrolment_error& e) {
      raise_python("error_for", py::make_tuple(static_cast<int>(e.code()), std::string(e.what()), "enrolment"));
    } catch (const tpm::tpm_error& e) {
      raise_python("tpm_error", py::make_tuple(std::string(e.what()), e.rc()));
    } catch (const identity_error& e) {
      raise_python("identity_error", py::make_tuple(std::string(e.what())));
    } catch (const policy_error& e) {
      raise_python("policy_error", py::make_tuple(std::string(e.what()), e.file(), e.field()));
    } catch (const crypto::crypto_error& e) {
      raise_python("crypto_error", py::make_tuple(std::string(e.what())));
    }
  });
}

}  // namespace agentbus::python

PYBIND11_MODULE(_agentbus, m) {
  namespace ap = agentbus::python;
  m.doc() = "agentbus's C++ core (libagentbus). Import the `agentbus` package, not this module.";
  // libagentbus logs through spdlog's default logger, whose default sink is stdout: a
  // Python program's stdout is its own output, so the library's lines go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("agentbus"));
  m.def("library_version", [] { return std::string(agentbus::library_version()); },
        "Version of the libagentbus the module runs on.");
  m.def("set_log_level", [](const std::string& level) {
    if (!agentbus::set_log_level(level))
      throw pybind11::value_error("unknown log level '" + level + "' (trace, debug, info, warn, error, critical, off)");
  }, pybind11::arg("level"), "Set how much libagentbus logs to stderr.");
  ap::bind_errors(m);
  ap::bind_identity(m);
  ap::bind_policy(m);
  ap::bind_agent(m);
}
