// Integration tests of the TPM layer against a real swtpm started for this binary.
#include <signal.h>

#include <algorithm>

#include "agentbus/crypto.hpp"
#include "agentbus/tpm.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

using testing::swtpm_environment;
using testing::swtpm_process;
AGENTBUS_USE_SWTPM_ENVIRONMENT();

const key_type kRsa3072{signature_scheme::rsa_pss, 3072, ec_curve::p256};
const key_type kP256{signature_scheme::ecdsa, 0, ec_curve::p256};
const key_type kP384{signature_scheme::ecdsa, 0, ec_curve::p384};
const key_type kP521{signature_scheme::ecdsa, 0, ec_curve::p521};

TEST(TpmInfo, ReportsSwtpmAsSimulatorWithItsAlgorithms) {
  auto t = swtpm_environment::shared_tpm();
  tpm::tpm_info info = t->info();
  EXPECT_EQ(info.manufacturer, "IBM");
  EXPECT_TRUE(info.simulator);
  EXPECT_EQ(info.tcti, swtpm_environment::process().tcti());
  auto has = [&](const std::string& a) { return std::find(info.algorithms.begin(), info.algorithms.end(), a) != info.algorithms.end(); };
  EXPECT_TRUE(has("ecdsa"));
  EXPECT_TRUE(has("rsapss"));
  EXPECT_TRUE(has("sha384"));
  EXPECT_FALSE(has("sha3_256")) << "libtpms 0.9 implements no SHA-3; update the SHA-3 notes if this changes";
  EXPECT_NE(std::find(info.curves.begin(), info.curves.end(), ec_curve::p384), info.curves.end());
  EXPECT_NE(std::find(info.rsa_bits.begin(), info.rsa_bits.end(), 3072u), info.rsa_bits.end());
  EXPECT_NE(std::find(info.pcr_banks.begin(), info.pcr_banks.end(), "sha256"), info.pcr_banks.end());
}

struct sign_case {
  key_type type;
  hash_algorithm digest_hash;
};

class TpmSign : public ::testing::TestWithParam<sign_case> {};

TEST_P(TpmSign, SignatureVerifiesWithOpenSslAndTamperedDigestFails) {
  auto t = swtpm_environment::shared_tpm();
  const auto& c = GetParam();
  auto blob = t->create_signing_key(c.type, c.digest_hash);
  ASSERT_TRUE(blob.ok()) << blob.error().to_string();
  auto pub = tpm::tpm::public_key_of(*blob);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->type(), c.type);

  bytes digest = crypto::digest(c.digest_hash, as_bytes("an envelope's signed part"));
  auto sig = t->sign_digest(*blob, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().to_string();
  EXPECT_TRUE(crypto::verify_digest(*pub, c.type, c.digest_hash, digest, *sig).ok());

  bytes tampered = digest;
  tampered[0] ^= 0x01;
  EXPECT_EQ(crypto::verify_digest(*pub, c.type, c.digest_hash, tampered, *sig).code(), status_code::bad_signature);
  bytes bad_sig = *sig;
  bad_sig[bad_sig.size() / 2] ^= 0x40;
  EXPECT_NE(crypto::verify_digest(*pub, c.type, c.digest_hash, digest, bad_sig).code(), status_code::ok);
}

INSTANTIATE_TEST_SUITE_P(
    Suites, TpmSign,
    ::testing::Values(sign_case{kRsa3072, hash_algorithm::sha384}, sign_case{kP384, hash_algorithm::sha3_384},
                      sign_case{kP256, hash_algorithm::sha256}, sign_case{kP256, hash_algorithm::sha3_256},
                      sign_case{kP521, hash_algorithm::sha512}));

TEST(TpmSign, RefusesDigestOfTheWrongLength) {
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_signing_key(kP256, hash_algorithm::sha256);
  ASSERT_TRUE(blob.ok());
  bytes digest384 = crypto::digest(hash_algorithm::sha384, as_bytes("x"));
  auto sig = t->sign_digest(*blob, digest384);
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().code(), status_code::invalid_field);
}

TEST(TpmSign, KeyIsBoundToItsSchemeAndAttributes) {
  // The template binds the scheme and makes the key non-exportable; check what the
  // TPM actually returned rather than what we asked for.
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_signing_key(kP256, hash_algorithm::sha256);
  ASSERT_TRUE(blob.ok());
  EXPECT_FALSE(blob->ecdh);
  EXPECT_EQ(blob->scheme_hash, hash_algorithm::sha256);
  EXPECT_GT(blob->private_area.size(), 32u);
}

TEST(TpmAlgorithms, MissingAlgorithmGivesAClearErrorNamingIt) {
  auto t = swtpm_environment::shared_tpm();
  // libtpms 0.9 (swtpm 0.7) implements RSA up to 3072 bits.
  key_type rsa4096{signature_scheme::rsa_pss, 4096, ec_curve::p256};
  status st = t->check_key_type(rsa4096);
  EXPECT_EQ(st.code(), status_code::unsupported_algorithm);
  EXPECT_NE(st.detail().find("RSA-4096"), std::string::npos) << st.detail();
  auto blob = t->create_signing_key(rsa4096, hash_algorithm::sha384);
  ASSERT_FALSE(blob.ok());
  EXPECT_EQ(blob.error().code(), status_code::unsupported_algorithm);
  EXPECT_NE(blob.error().detail().find("RSA-4096"), std::string::npos);
  EXPECT_TRUE(t->check_key_type(kRsa3072).ok());
}

class TpmEcdh : public ::testing::TestWithParam<ec_curve> {};

TEST_P(TpmEcdh, ZGenEqualsOpenSslSharedSecret) {
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_ecdh_key(GetParam());
  ASSERT_TRUE(blob.ok()) << blob.error().to_string();
  auto tpm_pub = tpm::tpm::public_key_of(*blob);
  ASSERT_TRUE(tpm_pub.ok());
  auto peer = crypto::ec_keypair::generate(GetParam());

  auto z_tpm = t->ecdh_zgen(*blob, peer.public_part());
  ASSERT_TRUE(z_tpm.ok()) << z_tpm.error().to_string();
  auto z_ossl = peer.derive(*tpm_pub);
  ASSERT_TRUE(z_ossl.ok());
  EXPECT_EQ(z_tpm->size(), curve_bytes(GetParam()));
  EXPECT_TRUE(crypto::constant_time_equal(z_tpm->view(), z_ossl->view()));

  auto other = crypto::ec_keypair::generate(GetParam());
  auto z_other = t->ecdh_zgen(*blob, other.public_part());
  ASSERT_TRUE(z_other.ok());
  EXPECT_FALSE(crypto::constant_time_equal(z_tpm->view(), z_other->view()));
}

INSTANTIATE_TEST_SUITE_P(Curves, TpmEcdh, ::testing::Values(ec_curve::p256, ec_curve::p384));

TEST(TpmEcdh, RefusesPeerOnAnotherCurveAndSigningKeys) {
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_ecdh_key(ec_curve::p256);
  ASSERT_TRUE(blob.ok());
  auto p384 = crypto::ec_keypair::generate(ec_curve::p384);
  EXPECT_EQ(t->ecdh_zgen(*blob, p384.public_part()).error().code(), status_code::wrong_key);
  auto signer = t->create_signing_key(kP256, hash_algorithm::sha256);
  ASSERT_TRUE(signer.ok());
  auto p256 = crypto::ec_keypair::generate(ec_curve::p256);
  EXPECT_EQ(t->ecdh_zgen(*signer, p256.public_part()).error().code(), status_code::wrong_key);
  EXPECT_EQ(t->sign_digest(*blob, bytes(32, 1)).error().code(), status_code::wrong_key);
}

TEST(TpmSlots, ManyKeysInTurnNeverExhaustTheThreeObjectSlots) {
  // swtpm holds 3 transient objects; using 6 keys round-robin must evict and reload.
  auto t = swtpm_environment::shared_tpm();
  std::vector<tpm::key_blob> blobs;
  for (int i = 0; i < 6; ++i) {
    auto b = t->create_signing_key(kP256, hash_algorithm::sha256);
    ASSERT_TRUE(b.ok());
    blobs.push_back(*b);
  }
  bytes digest = crypto::digest(hash_algorithm::sha256, as_bytes("slots"));
  for (int round = 0; round < 3; ++round) {
    for (const auto& b : blobs) {
      auto sig = t->sign_digest(b, digest);
      ASSERT_TRUE(sig.ok()) << sig.error().to_string();
      EXPECT_TRUE(crypto::verify_digest(*tpm::tpm::public_key_of(b), kP256, hash_algorithm::sha256, digest, *sig).ok());
    }
  }
}

TEST(TpmPcr, Pcr16ExtendMatchesSoftwareAndTpm2Pcrread) {
  bytes expected;
  {
    auto t = swtpm_environment::shared_tpm();
    bytes before = t->pcr_read(16, hash_algorithm::sha256);
    ASSERT_EQ(before.size(), 32u);
    bytes event = crypto::digest(hash_algorithm::sha256, as_bytes("audit log checkpoint 1"));
    t->pcr_extend(16, hash_algorithm::sha256, event);
    bytes concat = before;
    concat.insert(concat.end(), event.begin(), event.end());
    expected = crypto::digest(hash_algorithm::sha256, concat);
    EXPECT_EQ(t->pcr_read(16, hash_algorithm::sha256), expected);
  }
  // swtpm serves one connection at a time: release ours before tpm2-tools connects.
  swtpm_environment::reset_tpm();
  auto r = testing::run_command("tpm2_pcrread -T " + testing::shell_quote(swtpm_environment::process().tcti()) +
                                " sha256:16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string upper = to_hex(expected);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_NE(r.output.find("0x" + upper), std::string::npos) << r.output;
}

TEST(TpmRestart, KeyBlobsSurviveATpmRestartWithTheSamePublicKey) {
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_signing_key(kP384, hash_algorithm::sha3_384);
  ASSERT_TRUE(blob.ok());
  auto pub_before = tpm::tpm::public_key_of(*blob);
  bytes srk_before = t->storage_key_name();
  t.reset();
  swtpm_environment::reset_tpm();

  swtpm_environment::process().stop();
  swtpm_environment::process().start();

  auto t2 = swtpm_environment::shared_tpm();
  EXPECT_EQ(t2->storage_key_name(), srk_before) << "SRK is re-derived from the owner seed";
  bytes digest = crypto::digest(hash_algorithm::sha3_384, as_bytes("after restart"));
  auto sig = t2->sign_digest(*blob, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().to_string();
  EXPECT_TRUE(crypto::verify_digest(*pub_before, kP384, hash_algorithm::sha3_384, digest, *sig).ok());
}

TEST(TpmBlobs, UsableWithTpm2Tools) {
  // Independent implementation: tpm2-tools recreates our storage primary from the
  // same template, loads our blob and exports the same public key.
  testing::scoped_temp_dir dir;
  auto t = swtpm_environment::shared_tpm();
  auto blob = t->create_signing_key(kP256, hash_algorithm::sha256);
  ASSERT_TRUE(blob.ok());
  std::string our_pem = tpm::tpm::public_key_of(*blob)->pem();
  testing::write_text(dir.path() / "key.pub", std::string(blob->public_area.begin(), blob->public_area.end()));
  testing::write_text(dir.path() / "key.priv", std::string(blob->private_area.begin(), blob->private_area.end()));
  t.reset();
  swtpm_environment::reset_tpm();

  const std::string d = testing::shell_quote(dir.path().string());
  const std::string tcti = " -T " + testing::shell_quote(swtpm_environment::process().tcti());
  // Without a resource manager tpm2-tools leave their objects loaded in swtpm's
  // three slots: flush after every step, and once more whatever happens.
  const std::string flush = " && tpm2_flushcontext" + tcti + " -t";
  auto r = testing::run_command(
      "cd " + d + " && tpm2_createprimary" + tcti +
      " -Q -C o -g sha256 -G ecc256:aes128cfb -a "
      "'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda' -c srk.ctx" + flush +
      " && tpm2_load" + tcti + " -Q -C srk.ctx -u key.pub -r key.priv -c key.ctx" + flush +
      " && tpm2_readpublic" + tcti + " -Q -c key.ctx -f pem -o tools.pem" + flush +
      " && echo -n 'signed by tpm2-tools' > msg"
      " && tpm2_sign" + tcti + " -Q -c key.ctx -g sha256 -f plain -o sig.der msg" + flush);
  (void)testing::run_command("tpm2_flushcontext" + tcti + " -t");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(testing::read_text(dir.path() / "tools.pem"), our_pem);
  auto v = testing::run_command("cd " + d + " && openssl dgst -sha256 -verify tools.pem -signature sig.der msg");
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("Verified OK"), std::string::npos);
}

TEST(TpmDeadline, AStoppedTpmFailsClosedWithinTheDeadline) {
  // A fresh swtpm of our own: we freeze it, which would wedge a shared one.
  swtpm_process frozen_tpm;
  tpm::tpm_options opts;
  opts.deadline = std::chrono::milliseconds(500);
  auto t = std::make_unique<tpm::tpm>(frozen_tpm.tcti(), opts);
  auto blob = t->create_signing_key(kP256, hash_algorithm::sha256);
  ASSERT_TRUE(blob.ok());
  bytes digest(32, 7);
  ASSERT_TRUE(t->sign_digest(*blob, digest).ok());

  ASSERT_EQ(::kill(frozen_tpm.pid(), SIGSTOP), 0);
  EXPECT_THROW((void)t->sign_digest(*blob, digest), tpm::tpm_error);
  // Fail closed: later calls are refused at once, even though the TPM may recover.
  ::kill(frozen_tpm.pid(), SIGCONT);
  try {
    (void)t->sign_digest(*blob, digest);
    ADD_FAILURE() << "a TPM that missed its deadline must not be used again";
  } catch (const tpm::tpm_error& e) {
    EXPECT_NE(std::string(e.what()).find("did not answer"), std::string::npos) << e.what();
  }
  t.reset();
}

TEST(TpmConnect, ErrorsNameTheTctiAndNoDefaultAddressIsUsed) {
  EXPECT_THROW(tpm::tpm(""), tpm::tpm_error);
  try {
    tpm::tpm t("swtpm:path=/nonexistent/agentbus/sock");
    ADD_FAILURE() << "connected to a TPM that does not exist";
  } catch (const tpm::tpm_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/agentbus/sock"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace agentbus
