// attestation_test — TPM attestation, both sides, against swtpm provisioned as a
// manufacturer would (swtpm_setup --create-ek-cert, a local CA per test): the EK
// certificate chain, an AK, TPM2_Certify of the identity and static ECDH keys,
// MakeCredential in software and ActivateCredential in the TPM; every refusal the
// verifier must make (another CA, another TPM's AK, a foreign credential, a key
// that is not the one certified, the wrong use, another nonce); and the evidence
// cross-checked with tpm2-tools and the openssl command line.
#include <gtest/gtest.h>

#include <fstream>

#include "agentbus/crypto.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "support/swtpm_environment.hpp"
#include "tpm/attestation.hpp"

namespace agentbus {
namespace {

namespace att = tpm::attestation;
using testing::swtpm_process;

att::trust_anchors anchors_of(const swtpm_process& p) {
  return {{testing::read_text(p.ek_ca_root())}, {testing::read_text(p.ek_ca_intermediate())}};
}

// A provisioned TPM: its swtpm, the ESAPI worker, its endorsement.
struct provisioned {
  explicit provisioned(const std::filesystem::path& ca_dir)
      : proc(swtpm_process::options{.temp_root = {}, .start_timeout = std::chrono::seconds(10), .endorsement = true,
                                    .ek_ca_dir = ca_dir}),
        t(std::make_shared<tpm::tpm>(proc.tcti())) {
    auto e = t->read_endorsement();
    if (!e) throw std::runtime_error(e.error().to_string());
    ek = std::move(e).value();
  }
  swtpm_process proc;
  std::shared_ptr<tpm::tpm> t;
  tpm::endorsement ek;
};

class Attestation : public ::testing::Test {
 protected:
  testing::scoped_temp_dir dir_;
  std::filesystem::path ca() const { return dir_.path() / "ca"; }
};

TEST_F(Attestation, TheEkCertificateChainsToItsManufacturersCaOnly) {
  provisioned a(ca());
  auto v = att::verify_endorsement(a.ek.certificate_der, a.ek.public_area, anchors_of(a.proc));
  ASSERT_TRUE(v.ok()) << v.error().to_string();
  EXPECT_NE(v->issuer.find("swtpm-localca"), std::string::npos) << v->issuer;
  EXPECT_EQ(v->ek.type().rsa_bits, 2048u);

  // Another manufacturer's CA does not vouch for it.
  provisioned other(dir_.path() / "other-ca");
  auto foreign = att::verify_endorsement(a.ek.certificate_der, a.ek.public_area, anchors_of(other.proc));
  EXPECT_EQ(foreign.error().code(), status_code::not_attested);
  EXPECT_NE(foreign.error().detail().find("does not chain"), std::string::npos) << foreign.error().to_string();
  // A certificate with a flipped bit, and a certificate of another TPM's EK.
  bytes tampered = a.ek.certificate_der;
  tampered[tampered.size() / 2] ^= 0x01;
  EXPECT_EQ(att::verify_endorsement(tampered, a.ek.public_area, anchors_of(a.proc)).error().code(), status_code::not_attested);
  auto mixed = att::verify_endorsement(other.ek.certificate_der, a.ek.public_area, anchors_of(other.proc));
  EXPECT_EQ(mixed.error().code(), status_code::not_attested);
  EXPECT_NE(mixed.error().detail().find("not the EK's"), std::string::npos) << mixed.error().to_string();
}

TEST_F(Attestation, CertifiedKeysVerifyAndTheCredentialComesBackFromTheSameTpm) {
  provisioned a(ca());
  auto ak_blob = a.t->create_attestation_key();
  ASSERT_TRUE(ak_blob.ok()) << ak_blob.error().to_string();
  auto ak = att::check_attestation_key(ak_blob->public_area);
  ASSERT_TRUE(ak.ok()) << ak.error().to_string();
  auto identity = a.t->create_signing_key({signature_scheme::ecdsa, 0, ec_curve::p256}, hash_algorithm::sha256);
  auto ecdh = a.t->create_ecdh_key(ec_curve::p256);
  ASSERT_TRUE(identity.ok() && ecdh.ok());
  const auto identity_pub = *tpm::tpm::public_key_of(*identity);
  const auto ecdh_pub = *tpm::tpm::public_key_of(*ecdh);
  const bytes nonce = crypto::random_bytes(32);

  auto ci = a.t->certify(*identity, *ak_blob, nonce);
  auto ce = a.t->certify(*ecdh, *ak_blob, nonce);
  ASSERT_TRUE(ci.ok() && ce.ok()) << ci.error().to_string() << ce.error().to_string();
  EXPECT_TRUE(att::verify_certification(*ak, ci->attest, ci->signature, nonce, identity->public_area,
                                        att::certified_use::signing, identity_pub)
                  .ok());
  EXPECT_TRUE(att::verify_certification(*ak, ce->attest, ce->signature, nonce, ecdh->public_area, att::certified_use::ecdh,
                                        ecdh_pub)
                  .ok());
  auto refused = [&](const status& st, const char* what) {
    EXPECT_EQ(st.code(), status_code::not_attested) << what;
    EXPECT_NE(st.detail().find(what), std::string::npos) << st.to_string();
  };
  // The identity's certification presented for the ECDH key, for another key, under
  // another nonce, with a flipped signature, or for the wrong use.
  refused(att::verify_certification(*ak, ci->attest, ci->signature, nonce, ecdh->public_area, att::certified_use::ecdh,
                                    ecdh_pub),
          "for another key");
  refused(att::verify_certification(*ak, ci->attest, ci->signature, nonce, identity->public_area,
                                    att::certified_use::signing, ecdh_pub),
          "not the key of this handshake");
  refused(att::verify_certification(*ak, ci->attest, ci->signature, crypto::random_bytes(32), identity->public_area,
                                    att::certified_use::signing, identity_pub),
          "qualifying data");
  bytes bad_sig = ci->signature;
  bad_sig[bad_sig.size() - 3] ^= 0x01;
  refused(att::verify_certification(*ak, ci->attest, bad_sig, nonce, identity->public_area, att::certified_use::signing,
                                    identity_pub),
          "not signed by the AK");
  refused(att::verify_certification(*ak, ce->attest, ce->signature, nonce, ecdh->public_area, att::certified_use::signing,
                                    ecdh_pub),
          "not a signing-only key");
  // An unrestricted signing key is no AK.
  EXPECT_EQ(att::check_attestation_key(identity->public_area).error().code(), status_code::not_attested);

  // Credential activation: the secret wrapped for the AK's name under the EK.
  auto ek = att::verify_endorsement(a.ek.certificate_der, a.ek.public_area, anchors_of(a.proc));
  ASSERT_TRUE(ek.ok());
  const bytes secret = crypto::random_bytes(32);
  auto cred = att::make_credential(ek->ek, ak->name, secret);
  ASSERT_TRUE(cred.ok()) << cred.error().to_string();
  auto back = a.t->activate_credential(*ak_blob, cred->id_object, cred->encrypted_secret);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(to_hex(back->view()), to_hex(secret));
  // The TPM's other keys still work afterwards (every slot was handed back).
  EXPECT_TRUE(a.t->sign_digest(*identity, crypto::digest(hash_algorithm::sha256, secret)).ok());
}

// An AK of another TPM, and a credential made for another key, do not activate.
TEST_F(Attestation, AForeignAkOrCredentialIsRefused) {
  provisioned a(ca());
  provisioned b(ca());  // same manufacturer: its EK chains just as well
  auto ak_a = a.t->create_attestation_key();
  auto ak_b = b.t->create_attestation_key();
  auto ak_a2 = a.t->create_attestation_key();
  ASSERT_TRUE(ak_a.ok() && ak_b.ok() && ak_a2.ok());
  auto ek_a = att::verify_endorsement(a.ek.certificate_der, a.ek.public_area, anchors_of(a.proc));
  ASSERT_TRUE(ek_a.ok());
  const bytes secret = crypto::random_bytes(32);

  // B's AK presented with A's EK: the credential is for A's EK, B cannot open it.
  auto for_b = att::make_credential(ek_a->ek, att::check_attestation_key(ak_b->public_area)->name, secret);
  ASSERT_TRUE(for_b.ok());
  EXPECT_EQ(b.t->activate_credential(*ak_b, for_b->id_object, for_b->encrypted_secret).error().code(),
            status_code::not_attested);
  EXPECT_TRUE(b.t->create_attestation_key().ok()) << "the TPM goes on working after the refusal";
  // ...and B's AK blob does not even load in A.
  EXPECT_FALSE(a.t->activate_credential(*ak_b, for_b->id_object, for_b->encrypted_secret).ok());
  // A credential for one of A's AKs, replayed against another AK of A.
  auto for_a = att::make_credential(ek_a->ek, att::check_attestation_key(ak_a->public_area)->name, secret);
  ASSERT_TRUE(for_a.ok());
  EXPECT_EQ(a.t->activate_credential(*ak_a2, for_a->id_object, for_a->encrypted_secret).error().code(),
            status_code::not_attested);
  EXPECT_TRUE(a.t->activate_credential(*ak_a, for_a->id_object, for_a->encrypted_secret).ok());
  // Garbage is malformed, not a TPM error.
  EXPECT_EQ(a.t->activate_credential(*ak_a, bytes{1, 2, 3}, for_a->encrypted_secret).error().code(), status_code::malformed);
}

// A key that is not fixedTPM (made by tpm2-tools: it could be duplicated out of the
// TPM) is certified by the TPM all the same; the verifier refuses it.
TEST_F(Attestation, ACertifiedKeyThatCouldLeaveTheTpmIsRefused) {
  swtpm_process proc(swtpm_process::options{.temp_root = {}, .start_timeout = std::chrono::seconds(10),
                                            .endorsement = true, .ek_ca_dir = ca()});
  const auto d = dir_.path();
  // tpm2-tools first (swtpm serves one connection at a time): the same storage primary
  // as ours (tpm_templates.hpp), and under it a signing key without fixedTPM/fixedParent.
  auto made = testing::run_command(
      "export TPM2TOOLS_TCTI='" + proc.tcti() + "' && cd " + d.string() +
      " && tpm2_createprimary -Q -C o -g sha256 -G ecc256:aes128cfb -a "
      "'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda' -c srk.ctx"
      " && tpm2_create -Q -C srk.ctx -G ecc256:ecdsa-sha256 -a 'sensitivedataorigin|userwithauth|sign|noda' -u loose.pub"
      " -r loose.priv && tpm2_flushcontext -t 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  auto t = std::make_shared<tpm::tpm>(proc.tcti());
  tpm::key_blob loose;
  loose.type = {signature_scheme::ecdsa, 0, ec_curve::p256};
  const std::string pub = testing::read_text(d / "loose.pub"), priv = testing::read_text(d / "loose.priv");
  loose.public_area.assign(pub.begin(), pub.end());
  loose.private_area.assign(priv.begin(), priv.end());
  auto ak_blob = t->create_attestation_key();
  ASSERT_TRUE(ak_blob.ok());
  auto ak = att::check_attestation_key(ak_blob->public_area);
  ASSERT_TRUE(ak.ok());
  auto c = t->certify(loose, *ak_blob, {});
  ASSERT_TRUE(c.ok()) << c.error().to_string() << " (the TPM certifies any key it holds)";
  const status st = att::verify_certification(*ak, c->attest, c->signature, {}, loose.public_area,
                                              att::certified_use::signing, *tpm::tpm::public_key_of(loose));
  EXPECT_EQ(st.code(), status_code::not_attested);
  EXPECT_NE(st.detail().find("not fixedTPM"), std::string::npos) << st.to_string();
}

// Independent implementations: tpm2_makecredential (software, -T none) wraps a secret
// our activate_credential recovers; openssl verifies our AK's certification; openssl
// verifies the EK certificate chain.
TEST_F(Attestation, TheEvidenceWorksWithTpm2ToolsAndOpenssl) {
  provisioned a(ca());
  auto ak_blob = a.t->create_attestation_key();
  ASSERT_TRUE(ak_blob.ok());
  auto ak = att::check_attestation_key(ak_blob->public_area);
  ASSERT_TRUE(ak.ok());
  const auto d = dir_.path();
  auto write = [&](const std::string& name, byte_view data) {
    std::ofstream f(d / name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  };
  write("ek.pub", a.ek.public_area);
  write("ek.der", a.ek.certificate_der);
  const bytes secret = crypto::random_bytes(32);
  write("secret.bin", secret);
  auto made = testing::run_command("tpm2_makecredential -T none -e " + (d / "ek.pub").string() + " -s " +
                                   (d / "secret.bin").string() + " -n " + to_hex(ak->name) + " -o " +
                                   (d / "cred.out").string() + " 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string file = testing::read_text(d / "cred.out");
  const bytes cred(file.begin(), file.end());
  ASSERT_GT(cred.size(), 12u);
  ASSERT_EQ(to_hex(byte_view(cred).first(8)), "badcc0de00000001");
  const std::size_t id_len = 2 + (std::size_t{cred[8]} << 8 | cred[9]);
  const byte_view id_object = byte_view(cred).subspan(8, id_len);
  const byte_view encrypted = byte_view(cred).subspan(8 + id_len);
  auto back = a.t->activate_credential(*ak_blob, id_object, encrypted);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(to_hex(back->view()), to_hex(secret));

  auto identity = a.t->create_signing_key({signature_scheme::ecdsa, 0, ec_curve::p256}, hash_algorithm::sha256);
  ASSERT_TRUE(identity.ok());
  auto c = a.t->certify(*identity, *ak_blob, crypto::random_bytes(16));
  ASSERT_TRUE(c.ok());
  write("attest.bin", c->attest);
  write("sig.der", c->signature);
  testing::write_text(d / "ak.pem", ak->key.pem());
  auto verified = testing::run_command("openssl dgst -sha256 -verify " + (d / "ak.pem").string() + " -signature " +
                                       (d / "sig.der").string() + " " + (d / "attest.bin").string() + " 2>&1");
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_NE(verified.output.find("Verified OK"), std::string::npos) << verified.output;

  auto chain = testing::run_command("openssl x509 -inform der -in " + (d / "ek.der").string() + " -out " +
                                    (d / "ek.pem").string() + " && openssl verify -CAfile " + a.proc.ek_ca_root().string() +
                                    " -untrusted " + a.proc.ek_ca_intermediate().string() + " " + (d / "ek.pem").string() +
                                    " 2>&1");
  EXPECT_EQ(chain.exit_code, 0) << chain.output;

  // The EK's fingerprint (what revoke-key and token create --ek name) is the SHA-256 of
  // the certificate's DER public key as openssl extracts it.
  auto fp = tpm::endorsement_fingerprint(a.ek);
  ASSERT_TRUE(fp.ok()) << fp.error().to_string();
  auto by_openssl = testing::run_command("openssl x509 -inform der -in " + (d / "ek.der").string() +
                                         " -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum");
  ASSERT_EQ(by_openssl.exit_code, 0) << by_openssl.output;
  EXPECT_EQ(by_openssl.output.substr(0, 64), *fp);

  // tpm2_print decodes the certification's header as we do: the TCG magic, the
  // certify type and the qualifying data (tpm2-tools 5.4 prints no certify body).
  const bytes qualifying = crypto::random_bytes(16);
  auto q = a.t->certify(*identity, *ak_blob, qualifying);
  ASSERT_TRUE(q.ok());
  write("attest2.bin", q->attest);
  auto printed = testing::run_command("tpm2_print -t TPMS_ATTEST " + (d / "attest2.bin").string() + " 2>&1");
  EXPECT_NE(printed.output.find("magic: ff544347"), std::string::npos) << printed.output;
  EXPECT_NE(printed.output.find("type: 8017"), std::string::npos) << printed.output;
  EXPECT_NE(printed.output.find("extraData: " + to_hex(qualifying)), std::string::npos) << printed.output;
  EXPECT_TRUE(att::verify_certification(*ak, q->attest, q->signature, qualifying, identity->public_area,
                                        att::certified_use::signing, *tpm::tpm::public_key_of(*identity))
                  .ok());
}

}  // namespace
}  // namespace agentbus
