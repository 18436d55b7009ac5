// agentbus-key sign — sign a file with the identity's suite; the output verifies
// with `openssl dgst -<hash> -verify public.pem -signature SIG FILE`.
#include <fstream>
#include <iostream>

#include "agentbus/identity.hpp"
#include "agentbus/tpm.hpp"
#include "commands.hpp"

namespace agentbus::key_tool {

void add_sign_command(CLI::App& app, const global_options&, int* result) {
  struct options {
    std::string dir, in, out, tcti;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand("sign", "Sign a file with the identity key (digest per the role's suite)");
  cmd->add_option("--dir", opts->dir, "Key directory")->required();
  cmd->add_option("--in", opts->in, "File to sign")->required();
  cmd->add_option("--out", opts->out, "Where to write the signature (DER ECDSA or RSA-PSS bytes)")->required();
  cmd->add_option("--tcti", opts->tcti, "TPM holding the key (required for TPM identities)");
  cmd->callback([opts, result] {
    identity_metadata m = identity_key::read_metadata(opts->dir);
    std::shared_ptr<tpm::tpm> t;
    if (m.key_protection == protection::tpm) {
      std::string tcti = tcti_from(opts->tcti);
      if (tcti.empty()) throw tpm::tpm_error("this identity lives in a TPM: pass --tcti (or set AGENTBUS_TCTI)");
      t = std::make_shared<tpm::tpm>(tcti);  // a TPM key never falls back to software
    }
    auto key = identity_key::open(opts->dir, t);

    std::ifstream in(opts->in, std::ios::binary);
    if (!in) {
      std::cerr << "agentbus-key: cannot read " << opts->in << "\n";
      *result = kSignFailed;
      return;
    }
    bytes message((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto sig = key->sign_message(message);
    if (!sig) {
      std::cerr << "agentbus-key: signing failed: " << sig.error().to_string() << "\n";
      *result = kSignFailed;
      return;
    }
    std::ofstream out(opts->out, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(sig->data()), static_cast<std::streamsize>(sig->size()));
    if (!out) {
      std::cerr << "agentbus-key: cannot write " << opts->out << "\n";
      *result = kSignFailed;
      return;
    }
    const suite& s = m.key_suite;
    std::string hash(hash_name(s.envelope_hash));
    std::cout << "signed " << opts->in << " with " << s.name << " (" << protection_name(m.key_protection) << " key sha256:"
              << m.fingerprint.substr(0, 16) << "...) -> " << opts->out << " (" << sig->size() << " bytes)\n"
              << "verify: openssl dgst -" << hash
              << (s.key.scheme == signature_scheme::rsa_pss ? " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto" : "")
              << " -verify " << opts->dir << "/public.pem -signature " << opts->out << " " << opts->in << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::key_tool
