// identity_binding.cpp — Tpm, Identity, Suite and Policy for Python.
//
// Identities and policies are shared (std::shared_ptr) between Python and the agents
// that use them, as in C++. TPM work (key creation, signing) runs with the GIL
// released: an RSA key on a real chip takes seconds.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <unistd.h>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/suite.hpp"
#include "agentbus/tpm.hpp"
#include "binding.hpp"

namespace agentbus::python {

namespace {


py::dict tpm_info_dict(const tpm::tpm_info& info) {
  py::dict d;
  d["tcti"] = info.tcti;
  d["manufacturer"] = info.manufacturer;
  d["vendor"] = info.vendor;
  d["firmware"] = info.firmware;
  d["spec_revision"] = info.spec_revision;
  d["simulator"] = info.simulator;
  d["algorithms"] = info.algorithms;
  std::vector<std::string> curves;
  for (auto c : info.curves) curves.emplace_back(curve_name(c));
  d["curves"] = curves;
  d["rsa_bits"] = info.rsa_bits;
  d["pcr_banks"] = info.pcr_banks;
  return d;
}

std::shared_ptr<identity_key> shared(std::unique_ptr<identity_key> k) { return std::shared_ptr<identity_key>(std::move(k)); }


// shared_tpm returns this process's connection to the TPM named by `tcti`, making it
// on first use. One per TPM: on a TPM without a resource manager (swtpm, /dev/tpm0) a
// second connection finds the object slots taken by the first and flushes them (the
// tpm object takes objects it did not load for a killed process's leftovers), which
// breaks every identity of the first. The kernel's /dev/tpmrm0 would separate them;
// Python code that opens Tpm(tcti) twice should not have to know.
// Keyed by process too: a child made by fork() has none of the parent's threads, so it
// gets its own connection.
std::shared_ptr<tpm::tpm> shared_tpm(const std::string& tcti) {
  static std::mutex mu;
  static std::map<std::pair<pid_t, std::string>, std::weak_ptr<tpm::tpm>> open;
  std::lock_guard lock(mu);
  auto& slot = open[{::getpid(), tcti}];
  if (auto existing = slot.lock()) return existing;
  auto made = std::make_shared<tpm::tpm>(tcti);
  slot = made;
  return made;
}
}  // namespace

void bind_identity(py::module_& m) {
  py::class_<suite>(m, "Suite", "An algorithm suite of the policy (signature key, envelope hash, MAC, ECDH curve).")
      .def_readonly("name", &suite::name)
      .def_property_readonly("envelope_hash", [](const suite& s) { return std::string(hash_name(s.envelope_hash)); })
      .def_property_readonly("mac_hash", [](const suite& s) { return std::string(hash_name(s.mac_hash)); })
      .def_property_readonly("ecdh_curve", [](const suite& s) { return std::string(curve_name(s.ecdh_curve)); })
      .def_property_readonly("key", [](const suite& s) { return s.key.describe(); })
      .def("describe", &suite::describe)
      .def("__repr__", [](const suite& s) { return "<agentbus.Suite " + s.name + ">"; });

  py::class_<tpm::tpm, std::shared_ptr<tpm::tpm>>(m, "Tpm", "A connection to a TPM 2.0 through a TCTI.")
      // The GIL is released around the connection only: pybind registers the new
      // instance after the factory returns, which needs the GIL.
      .def(py::init([](const std::string& tcti) {
             py::gil_scoped_release release;
             return shared_tpm(tcti);
           }),
           py::arg("tcti"),
           "Connect to the TPM named by `tcti` ('swtpm:path=/dir/sock', 'device:/dev/tpmrm0', ...). "
           "An empty TCTI is refused. Raises TpmError. Within one process, Tpm objects for the same TCTI "
           "share one connection.")
      .def_property_readonly("tcti", &tpm::tpm::tcti)
      .def("info", [](tpm::tpm& t) {
             tpm::tpm_info info;
             {
               py::gil_scoped_release release;
               info = t.info();
             }
             return tpm_info_dict(info);
           }, "Manufacturer, firmware, algorithms and curves the TPM reports.");

  py::class_<identity_key, std::shared_ptr<identity_key>>(m, "Identity",
                                                          "An agent's identity key: in a TPM, or in software (flagged).")
      .def_static("create_tpm",
                  [](const std::filesystem::path& dir, const std::string& role, const suite& s,
                     std::shared_ptr<tpm::tpm> t) {
                    py::gil_scoped_release release;
                    return shared(take(identity_key::create_tpm(dir, role, s, std::move(t))));
                  },
                  py::arg("dir"), py::arg("role"), py::arg("suite"), py::arg("tpm"),
                  "Make a non-exportable key for `role` in the TPM and write the key directory.")
      .def_static("create_software",
                  [](const std::filesystem::path& dir, const std::string& role, const suite& s) {
                    py::gil_scoped_release release;
                    return shared(identity_key::create_software(dir, role, s));
                  },
                  py::arg("dir"), py::arg("role"), py::arg("suite"),
                  "Make a software key (a 0600 file; logged as a warning). Only roles that allow software accept it.")
      .def_static("open",
                  [](const std::filesystem::path& dir, std::shared_ptr<tpm::tpm> t) {
                    py::gil_scoped_release release;
                    return shared(identity_key::open(dir, std::move(t)));
                  },
                  py::arg("dir"), py::arg("tpm") = nullptr,
                  "Open an existing identity (a TPM identity needs the TPM that made it).")
      .def_property_readonly("role", [](const identity_key& k) { return k.metadata().role; })
      .def_property_readonly("suite", [](const identity_key& k) { return k.key_suite(); })
      .def_property_readonly("protection",
                             [](const identity_key& k) { return std::string(protection_name(k.key_protection())); })
      .def_property_readonly("fingerprint", [](const identity_key& k) { return k.metadata().fingerprint; })
      .def_property_readonly("public_key_pem", [](const identity_key& k) { return k.public_key().pem(); })
      .def_property_readonly("tpm_manufacturer", [](const identity_key& k) { return k.metadata().tpm_manufacturer; })
      .def_property_readonly("tpm_simulator", [](const identity_key& k) { return k.metadata().tpm_simulator; })
      .def("sign",
           [](identity_key& k, const std::string& message) {
             bytes sig;
             {
               py::gil_scoped_release release;
               sig = take(k.sign_message(as_bytes(message)));
             }
             return to_py(sig);
           },
           py::arg("message"),
           "Sign `message` with the suite's envelope hash (DER ECDSA or RSA-PSS): "
           "`openssl dgst -<hash> -verify public.pem -signature SIG FILE` verifies it.")
      .def("verify",
           [](const identity_key& k, const std::string& message, const std::string& signature) {
             return k.verify_message(as_bytes(message), as_bytes(signature)).ok();
           },
           py::arg("message"), py::arg("signature"), "True when `signature` is this identity's over `message`.")
      .def("__repr__", [](const identity_key& k) {
        return "<agentbus.Identity " + k.metadata().role + " " + std::string(protection_name(k.key_protection())) +
               " " + k.metadata().fingerprint.substr(0, 16) + ">";
      });
}

void bind_policy(py::module_& m) {
  py::class_<policy, std::shared_ptr<policy>>(m, "Policy",
                                              "The bus policy: suites, roles, ACLs (config/policy.toml's format).")
      .def_static("load", [](const std::filesystem::path& file) { return std::make_shared<policy>(policy::load_file(file)); },
                  py::arg("file"), "Load a policy file. Raises PolicyFileError naming the field.")
      .def_static("parse",
                  [](const std::string& text, const std::string& source) {
                    return std::make_shared<policy>(policy::parse(text, source));
                  },
                  py::arg("text"), py::arg("source") = "<string>", "Parse a policy from TOML text.")
      .def_static("default", [] { return std::make_shared<policy>(policy::builtin_default()); },
                  "The shipped default policy (config/policy.toml, built in).")
      .def_property_readonly("source", &policy::source)
      .def_property_readonly("roles",
                             [](const policy& p) {
                               std::vector<std::string> names;
                               for (const auto& r : p.roles()) names.push_back(r.name);
                               return names;
                             })
      .def("suite_for", [](const policy& p, const std::string& role) { return take(p.suite_for(role)); },
           py::arg("role"), "The suite of `role`; raises UnknownRole.")
      .def("allows_send",
           [](const policy& p, const std::string& sender_role, const std::string& recipient_role) {
             return p.check_send(sender_role, recipient_role).ok();
           },
           py::arg("sender_role"), py::arg("recipient_role"))
      .def("allows_publish", [](const policy& p, const std::string& role, const std::string& topic) {
             return p.check_publish(role, topic).ok();
           }, py::arg("role"), py::arg("topic"))
      .def("allows_subscribe", [](const policy& p, const std::string& role, const std::string& topic) {
             return p.check_subscribe(role, topic).ok();
           }, py::arg("role"), py::arg("topic"))
      .def("__repr__", [](const policy& p) { return "<agentbus.Policy " + p.source() + ">"; });
}

}  // namespace agentbus::python
