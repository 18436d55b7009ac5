// agentbus-key info — what a TPM is and what it can do.
#include <iostream>

#include "agentbus/tpm.hpp"
#include "commands.hpp"

namespace agentbus::key_tool {

void add_info_command(CLI::App& app, const global_options& global, int* result) {
  auto tcti = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("info", "Print the TPM's manufacturer, firmware, simulator flag, algorithms and curves");
  cmd->add_option("--tcti", *tcti, "TPM to query");
  cmd->callback([tcti, &global, result] {
    std::string t = tcti_from(*tcti);
    if (t.empty()) throw tpm::tpm_error("pass --tcti (or set AGENTBUS_TCTI): agentbus never guesses a TPM address");
    tpm::tpm device(t);
    tpm::tpm_info info = device.info();
    auto join = [](const auto& items, auto fmt) {
      std::string out;
      for (const auto& i : items) out += (out.empty() ? "" : ", ") + fmt(i);
      return out.empty() ? std::string("(none)") : out;
    };
    std::cout << "tcti          " << info.tcti << "\n"
              << "manufacturer  " << info.manufacturer << "\n"
              << "vendor        " << info.vendor << "\n"
              << "firmware      " << info.firmware << "\n"
              << "spec revision " << info.spec_revision / 100 << "." << info.spec_revision % 100 << "\n"
              << "simulator     " << (info.simulator ? "yes" : "no") << "\n"
              << "curves        " << join(info.curves, [](ec_curve c) { return std::string(curve_name(c)); }) << "\n"
              << "rsa key bits  " << join(info.rsa_bits, [](unsigned b) { return std::to_string(b); }) << "\n"
              << "pcr banks     " << join(info.pcr_banks, [](const std::string& s) { return s; }) << "\n"
              << "algorithms    " << join(info.algorithms, [](const std::string& s) { return s; }) << "\n";
    // The EK names the TPM for an operator: a token bound to it (token create --ek)
    // admits only keys this TPM attests; revoke-key with it refuses all of them.
    if (auto ek = device.read_endorsement(); ek) {
      auto fp = tpm::endorsement_fingerprint(*ek);
      std::cout << "ek            " << (fp ? "sha256:" + *fp : "unusable: " + fp.error().detail()) << "\n";
    } else {
      std::cout << "ek            none: " << ek.error().detail() << " (its keys cannot be attested)\n";
    }
    // Which policy suites this TPM can serve: a suite it cannot perform is refused
    // before any agent tries to enrol with it.
    policy pol = load_policy(global);
    std::cout << "policy suites (" << pol.source() << "):\n";
    for (const suite& s : pol.suites()) {
      status st = device.check_key_type(s.key);
      std::cout << "  " << s.name << "  " << (st.ok() ? "supported" : "UNSUPPORTED: " + st.detail()) << "\n";
    }
    *result = kOk;
  });
}

}  // namespace agentbus::key_tool
