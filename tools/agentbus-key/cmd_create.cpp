// agentbus-key create — make a role's identity key in a TPM (or software) and
// write its key directory.
#include <iostream>

#include "agentbus/identity.hpp"
#include "agentbus/tpm.hpp"
#include "commands.hpp"

namespace agentbus::key_tool {

void add_create_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string role, dir, tcti;
    bool software = false;
    bool require_tpm = false;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand("create", "Create the identity key for a role and print its algorithm, fingerprint and protection");
  cmd->add_option("--role", opts->role, "Role from the policy (DIRECTOR, MONITOR, ...)")->required();
  cmd->add_option("--dir", opts->dir, "Key directory to create (must not hold an identity yet)")->required();
  auto* tcti = cmd->add_option("--tcti", opts->tcti, "TPM to use, e.g. swtpm:path=/run/swtpm/sock or device:/dev/tpmrm0");
  auto* software = cmd->add_flag("--software", opts->software, "Use a software key (protection=software) instead of a TPM");
  tcti->excludes(software);
  cmd->add_flag("--require-tpm", opts->require_tpm, "Fail instead of falling back to software when no TPM answers")
      ->excludes(software);

  cmd->callback([opts, &global, result] {
    policy pol = load_policy(global);
    auto s = pol.suite_for(opts->role);
    if (!s) {
      std::cerr << "agentbus-key: " << s.error().to_string() << " (policy " << pol.source() << ")\n";
      *result = kPolicyError;
      return;
    }
    std::shared_ptr<tpm::tpm> t;
    if (!opts->software) t = connect_tpm(tcti_from(opts->tcti), /*allow_software_fallback=*/!opts->require_tpm);

    std::unique_ptr<identity_key> key;
    if (t) {
      auto created = identity_key::create_tpm(opts->dir, opts->role, *s, t);
      if (!created) {
        std::cerr << "agentbus-key: " << created.error().to_string() << "\n";
        *result = created.error().code() == status_code::unsupported_algorithm ? kUnsupported : kFailure;
        return;
      }
      key = std::move(created).value();
    } else {
      key = identity_key::create_software(opts->dir, opts->role, *s);
    }
    const identity_metadata& m = key->metadata();
    std::string prot(protection_name(m.key_protection));
    if (m.key_protection == protection::tpm)
      prot += " (" + m.tpm_manufacturer + (m.tpm_simulator ? ", simulator" : "") + ", " + t->tcti() + ")";
    else
      prot += " (private key in a 0600 file: NOT hardware-protected)";
    std::cout << "role         " << m.role << "\n"
              << "suite        " << m.key_suite.name << " (" << m.key_suite.describe() << ")\n"
              << "algorithm    " << m.key_suite.key.describe()
              << (m.key_suite.key.scheme == signature_scheme::rsa_pss ? " RSASSA-PSS" : "") << " over "
              << hash_name(m.key_suite.envelope_hash) << "\n"
              << "fingerprint  sha256:" << m.fingerprint << "\n"
              << "protection   " << prot << "\n"
              << "key dir      " << opts->dir << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::key_tool
