// agentbus-demo — the README's main job (issue 2 stage): start a private swtpm,
// create one identity key per role of the policy, seal a sample envelope with
// each, verify it in-process and with the openssl CLI, show that a tampered copy
// is refused, and print one table row per role.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"

namespace fs = std::filesystem;
using namespace agentbus;
using agentbus::testing::swtpm_process;

namespace {

using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// openssl_verifies checks the signature with the openssl command line, an
// implementation independent of ours, over the exact signed-part bytes.
std::string openssl_verifies(const fs::path& dir, const suite& s, const bytes& signed_part, const bytes& sig) {
  auto write = [](const fs::path& p, const bytes& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  write(dir / "envelope.signed", signed_part);
  write(dir / "envelope.sig", sig);
  std::string cmd = "openssl dgst -" + std::string(hash_name(s.envelope_hash)) +
                    (s.key.scheme == signature_scheme::rsa_pss ? " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto" : "") +
                    " -verify '" + (dir / "public.pem").string() + "' -signature '" + (dir / "envelope.sig").string() +
                    "' '" + (dir / "envelope.signed").string() + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "n/a";
  char buf[256] = {};
  std::string out;
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  int rc = ::pclose(p);
  return (rc == 0 && out.find("Verified OK") != std::string::npos) ? "OK" : "FAILED";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agentbus-demo: one TPM identity per policy role; sign, verify and tamper-check a sample envelope"};
  // The checkout's policy, found from the executable (<build>/tools/agentbus-demo), so
  // that the demo runs the same from any directory.
  std::string policy_file;
  {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) policy_file = (exe.parent_path() / ".." / ".." / "config" / "policy.toml").lexically_normal().string();
  }
  std::string tcti;
  bool software = false;
  int signatures = 5;
  app.add_option("--policy", policy_file, "Policy file (default: the checkout's config/policy.toml; the built-in copy if missing)");
  app.add_option("--tcti", tcti, "Use this TPM instead of starting a private swtpm");
  app.add_flag("--software", software, "Use software keys (protection=software) instead of a TPM");
  app.add_option("--signatures", signatures, "Signatures per role for the timing (median is shown)")->check(CLI::Range(1, 1000));
  app.footer("Exit codes: 0 every role verified, 1 a role failed (or the demo could not run), 2 usage, "
             "3 the policy names a suite this TPM cannot perform.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every agentbus tool exits 2 on a usage error, not with CLI11's own numbers.
    return app.exit(e) == 0 ? 0 : 2;
  }
  spdlog::set_level(spdlog::level::warn);

  try {
    policy pol = fs::exists(policy_file) ? policy::load_file(policy_file) : policy::builtin_default();

    std::unique_ptr<swtpm_process> private_tpm;
    std::shared_ptr<tpm::tpm> t;
    if (!software) {
      if (tcti.empty()) {
        private_tpm = std::make_unique<swtpm_process>();
        tcti = private_tpm->tcti();
      }
      t = connect_tpm(tcti, /*allow_software_fallback=*/true);
    }
    std::string tpm_label = "software";
    if (t) {
      tpm::tpm_info info = t->info();
      tpm_label = fmt::format("tpm ({}{})", info.manufacturer, info.simulator ? " swtpm" : "");
      fmt::print("TPM: {} {} firmware {} via {}\n", info.manufacturer, info.vendor, info.firmware, tcti);
      // A suite the TPM cannot perform is refused before any key is made.
      for (const suite& s : pol.suites()) {
        if (status st = t->check_key_type(s.key); !st.ok()) {
          fmt::print(stderr, "policy {} names suite {} that this TPM cannot perform: {}\n", pol.source(), s.name, st.detail());
          return 3;
        }
      }
    }
    fmt::print("Policy: {} ({} roles, {} suites)\n\n", pol.source(), pol.roles().size(), pol.suites().size());

    std::string state_root = private_tpm ? private_tpm->state_dir().string() : fs::temp_directory_path().string();
    fs::path keys = fs::path(state_root) / fmt::format("demo-keys-{}", ::getpid());
    fs::create_directories(keys);

    fmt::print("{:<12} {:<14} {:<20} {:<22} {:<18} {:<16} {:>9} {:>10} {:>8}  {}\n", "ROLE", "PROFILE", "SUITE",
               "ALGORITHM", "FINGERPRINT", "PROTECTION", "SIGN ms", "VERIFY ms", "OPENSSL", "TAMPERED COPY");
    int failures = 0;
    std::uint64_t sequence = 0;
    for (const role_policy& role : pol.roles()) {
      suite s = *pol.suite_for(role.name);
      fs::path dir = keys / lower(role.name);
      std::unique_ptr<identity_key> key;
      if (t) {
        auto created = identity_key::create_tpm(dir, role.name, s, t);
        if (!created) throw std::runtime_error(created.error().to_string());
        key = std::move(created).value();
      } else {
        key = identity_key::create_software(dir, role.name, s);
      }

      // 1. Encode the signed part once; these bytes are what is hashed and sent.
      envelope_header h;
      h.type = envelope_type::data;
      h.message_id = crypto::random_bytes(kMessageIdSize);
      h.sender = lower(role.name) + "-1";
      h.to_kind = recipient_kind::topic;
      h.to = "demo/hello";
      h.sequence = ++sequence;
      h.timestamp_ms = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
      h.suite = s.name;
      h.content_type = "application/json";
      std::string payload = fmt::format(R"({{"hello":"from {}","suite":"{}"}})", role.name, s.name);
      h.payload.assign(payload.begin(), payload.end());
      bytes signed_part = encode_signed_part(h);

      // 2. Digest in software (TPMs lack SHA-3), sign in the TPM.
      bytes digest = envelope_digest(s.envelope_hash, signed_part);
      std::vector<double> sign_ms;
      bytes signature;
      for (int i = 0; i < signatures; ++i) {
        auto t0 = clock_type::now();
        auto sig = key->sign_digest(digest);
        sign_ms.push_back(ms_since(t0));
        if (!sig) throw std::runtime_error("signing failed: " + sig.error().to_string());
        signature = std::move(sig).value();
      }
      envelope_auth auth;
      auth.level = key->key_protection() == protection::tpm ? assurance::tpm : assurance::software;
      auth.key_id = key->public_key().fingerprint();
      auth.signature = signature;
      bytes auth_part = encode_auth_part(auth);

      // 3. Receive: decode untrusted bytes, check the suite against the policy,
      //    verify the signature over the received bytes.
      std::vector<double> verify_ms;
      status verdict;
      for (int i = 0; i < signatures; ++i) {
        auto t0 = clock_type::now();
        auto got = decode_signed_part(signed_part);
        auto got_auth = decode_auth_part(auth_part);
        if (!got || !got_auth) {
          verdict = !got ? got.error() : got_auth.error();
        } else if (verdict = pol.check_declared_suite(role.name, got->suite); verdict.ok()) {
          verdict = crypto::verify_digest(key->public_key(), s.key, s.envelope_hash,
                                          envelope_digest(s.envelope_hash, signed_part), got_auth->signature);
        }
        verify_ms.push_back(ms_since(t0));
      }
      std::string ossl = openssl_verifies(dir, s, signed_part, signature);

      // 4. A copy with one payload byte changed must be refused.
      bytes tampered = signed_part;
      tampered[tampered.size() - 2] ^= 0x01;
      status tamper = crypto::verify_digest(key->public_key(), s.key, s.envelope_hash,
                                            envelope_digest(s.envelope_hash, tampered), signature);
      std::string tamper_text = tamper.ok() ? "ACCEPTED (bug!)" : "refused (" + std::string(status_code_name(tamper.code())) + ")";
      if (!verdict.ok() || ossl == "FAILED" || tamper.ok()) ++failures;

      std::string algorithm = s.key.describe() + (s.key.scheme == signature_scheme::rsa_pss ? "-PSS" : "") + " " +
                              std::string(hash_name(s.envelope_hash));
      fmt::print("{:<12} {:<14} {:<20} {:<22} {:<18} {:<16} {:>9.2f} {:>10.3f} {:>8}  {}\n", role.name,
                 role.profile.empty() ? "-" : role.profile, s.name, algorithm,
                 key->metadata().fingerprint.substr(0, 16), key->key_protection() == protection::tpm ? tpm_label : "software",
                 median(sign_ms), median(verify_ms), verdict.ok() ? ossl : "FAILED: " + verdict.to_string(), tamper_text);
    }

    if (t) {
      fmt::print("\nTPM operations:");
      for (const auto& st : t->stats())
        fmt::print(" {}={} (mean {:.2f} ms{})", st.operation, st.count, st.mean_ms(),
                   st.failures ? fmt::format(", {} failed", st.failures) : "");
      fmt::print("\n");
    }
    std::error_code ec;
    fs::remove_all(keys, ec);
    if (failures > 0) {
      fmt::print(stderr, "\n{} role(s) failed verification\n", failures);
      return 1;
    }
    fmt::print("\nAll {} roles: {} envelope verified in-process and by the openssl CLI; tampered copies refused.\n",
               pol.roles().size(), t ? "TPM-signed" : "software-signed");
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "agentbus-demo: {}\n", e.what());
    return 1;
  }
}
