// agentbus-key pubkey — print an identity's public key as PEM.
#include <fstream>
#include <iostream>

#include "agentbus/identity.hpp"
#include "commands.hpp"

namespace agentbus::key_tool {

void add_pubkey_command(CLI::App& app, const global_options&, int* result) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("pubkey", "Print the identity's public key (PEM SubjectPublicKeyInfo)");
  cmd->add_option("--dir", *dir, "Key directory")->required();
  cmd->callback([dir, result] {
    identity_metadata m = identity_key::read_metadata(*dir);
    std::string pem;
    {
      std::ifstream in(std::filesystem::path(*dir) / "public.pem");
      if (!in) throw identity_error("cannot read " + *dir + "/public.pem");
      pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    // The PEM must be the key identity.toml recorded, or a swapped file would be
    // handed out as this agent's key.
    auto pub = crypto::public_key::from_pem(pem);
    if (!pub || pub->fingerprint_hex() != m.fingerprint)
      throw identity_error(*dir + "/public.pem does not match the fingerprint in identity.toml");
    std::cout << pub->pem();
    *result = kOk;
  });
}

}  // namespace agentbus::key_tool
