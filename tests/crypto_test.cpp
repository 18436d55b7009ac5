// crypto_test.cpp — known answers, encodings and OpenSSL interoperability of
// libagentbus's crypto module (crypto.hpp, bytes.hpp, crypto/software_key.hpp).
//
// Known-answer vectors live in tests/data/crypto/*.txt (BoringSSL's
// crypto/evp/test/*.txt style); each file names its sources. Interop tests run
// the `openssl` command-line tool against keys and signatures made here, so that
// "verifies" means "a third-party verifier agrees", not "we agree with ourselves".
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <atomic>
#include <mutex>
#include <thread>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"
#include "crypto/ossl.hpp"
#include "crypto/random_id_pool.hpp"
#include "crypto/software_key.hpp"

namespace agentbus::crypto {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Test support: vector files, temporary directories, the openssl CLI.
// ---------------------------------------------------------------------------

const std::string kDataDir = AGENTBUS_SOURCE_DIR "/tests/data/crypto/";

// kat_stanza is one blank-line-separated block of `Attribute = value` lines.
struct kat_stanza {
  std::string file;
  int line = 0;  // line of the first attribute, for SCOPED_TRACE
  std::vector<std::pair<std::string, std::string>> attrs;

  // kind is the first attribute ("Digest", "HMAC", "HKDF"); algorithm its value.
  const std::string& kind() const { return attrs.front().first; }
  const std::string& algorithm() const { return attrs.front().second; }
  std::string where() const { return file + ":" + std::to_string(line); }

  // get decodes a value: "quoted" ASCII or hex (possibly empty). A missing or
  // undecodable attribute is a broken vector file and fails the test.
  bytes get(std::string_view key) const {
    for (const auto& [k, v] : attrs) {
      if (k != key) continue;
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        std::string_view s(v);
        s = s.substr(1, s.size() - 2);
        return bytes(s.begin(), s.end());
      }
      bool ok = false;
      bytes out = from_hex(v, &ok);
      if (!ok) ADD_FAILURE() << where() << ": " << key << " is neither hex nor a quoted string";
      return out;
    }
    ADD_FAILURE() << where() << ": missing attribute " << key;
    return {};
  }
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::vector<kat_stanza> read_kat_file(const std::string& name) {
  std::ifstream in(kDataDir + name);
  if (!in) {
    ADD_FAILURE() << "cannot open " << kDataDir << name;
    return {};
  }
  std::vector<kat_stanza> out;
  kat_stanza cur;
  cur.file = name;
  std::string raw;
  int line_no = 0;
  auto flush = [&] {
    if (!cur.attrs.empty()) out.push_back(cur);
    cur.attrs.clear();
  };
  while (std::getline(in, raw)) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty()) {
      flush();
      continue;
    }
    if (line.front() == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      ADD_FAILURE() << name << ":" << line_no << ": expected `Attribute = value`";
      continue;
    }
    if (cur.attrs.empty()) cur.line = line_no;
    cur.attrs.emplace_back(std::string(trim(line.substr(0, eq))), std::string(trim(line.substr(eq + 1))));
  }
  flush();
  return out;
}

hash_algorithm hash_of(const kat_stanza& s) {
  auto h = parse_hash(s.algorithm());
  if (!h) ADD_FAILURE() << s.where() << ": unknown hash " << s.algorithm();
  return h.value_or(hash_algorithm::sha256);
}

// temp_dir is a fresh private directory removed (with its content) on destruction.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "agentbus-crypto-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, byte_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << p;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// shell_quote wraps a path in single quotes for /bin/sh.
std::string shell_quote(const fs::path& p) {
  std::string out = "'";
  for (char c : p.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct command_result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

command_result run(const std::string& command) {
  command_result r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return r;
  }
  char buf[512];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int st = ::pclose(pipe);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

key_type rsa_key(unsigned bits) {
  key_type t;
  t.scheme = signature_scheme::rsa_pss;
  t.rsa_bits = bits;
  return t;
}

key_type ec_key(ec_curve c) {
  key_type t;
  t.scheme = signature_scheme::ecdsa;
  t.curve = c;
  return t;
}

// cached_key generates one key per type for the whole binary: RSA-3072 key
// generation takes around a second, and no test depends on a fresh key.
const software_private_key& cached_key(const key_type& type) {
  static std::mutex mu;
  static std::map<std::string, software_private_key> keys;
  std::lock_guard<std::mutex> lock(mu);
  auto it = keys.find(type.describe());
  if (it == keys.end()) it = keys.emplace(type.describe(), software_private_key::generate(type)).first;
  return it->second;
}

bytes flip_bit(bytes b, std::size_t bit) {
  b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
  return b;
}

// verify_pss_fixed_salt verifies RSA-PSS with one exact salt length (no auto
// detection), to show which salt a signature actually carries.
bool verify_pss_fixed_salt(const public_key& key, hash_algorithm h, byte_view d, byte_view sig, int salt_len) {
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_of(key), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), md_of(h)) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md_of(h)) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), salt_len) != 1) {
    ADD_FAILURE() << "cannot set up RSA-PSS verification: " << openssl_errors();
    return false;
  }
  bool ok = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), d.data(), d.size()) == 1;
  ERR_clear_error();
  return ok;
}

// der_of_pkey returns the DER SubjectPublicKeyInfo of an OpenSSL key made in a test.
bytes der_of_pkey(EVP_PKEY* pkey) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) {
    ADD_FAILURE() << "i2d_PUBKEY: " << openssl_errors();
    return {};
  }
  bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

// ---------------------------------------------------------------------------
// Known answers.
// ---------------------------------------------------------------------------

TEST(DigestKat, MatchesNistExamples) {
  auto vectors = read_kat_file("digest_tests.txt");
  // 5 hashes x {"abc", a two-block message, ""}: a short count means a truncated file.
  ASSERT_EQ(vectors.size(), 15u);
  std::map<std::string, int> per_hash;
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    ASSERT_EQ(v.kind(), "Digest");
    hash_algorithm h = hash_of(v);
    bytes expected = v.get("Output");
    EXPECT_EQ(expected.size(), hash_size(h));
    EXPECT_EQ(to_hex(digest(h, v.get("Input"))), to_hex(expected));
    ++per_hash[v.algorithm()];
  }
  for (const char* h : {"sha256", "sha384", "sha512", "sha3-256", "sha3-384"}) EXPECT_EQ(per_hash[h], 3) << h;
}

TEST(HmacKat, MatchesRfc4231) {
  auto vectors = read_kat_file("hmac_tests.txt");
  ASSERT_EQ(vectors.size(), 18u);  // test cases 1-4, 6, 7 x SHA-256/384/512
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    ASSERT_EQ(v.kind(), "HMAC");
    hash_algorithm h = hash_of(v);
    bytes key = v.get("Key"), input = v.get("Input"), expected = v.get("Output");
    EXPECT_EQ(to_hex(hmac(h, key, input)), to_hex(expected));
    EXPECT_TRUE(verify_hmac(h, key, input, expected).ok());
  }
}

// The prepared key (the hot path's MAC) against the same RFC 4231 vectors: each key
// tags its input several times, so later tags come from pooled work contexts that
// were restarted, not freshly copied; a restart that kept state would break them.
TEST(HmacKat, PreparedKeyMatchesRfc4231OnEveryReuse) {
  auto vectors = read_kat_file("hmac_tests.txt");
  ASSERT_EQ(vectors.size(), 18u);
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    hash_algorithm h = hash_of(v);
    bytes key = v.get("Key"), input = v.get("Input"), expected = v.get("Output");
    const hmac_key prepared(h, key);
    for (int round = 0; round < 3; ++round) {
      EXPECT_EQ(to_hex(prepared.tag(input)), to_hex(expected)) << "round " << round;
      EXPECT_EQ(to_hex(prepared.tag(as_bytes("other input"))), to_hex(hmac(h, key, as_bytes("other input"))));
    }
    hmac_key copy = prepared;  // copies share the key and its pool
    EXPECT_EQ(to_hex(copy.tag(input)), to_hex(expected));
  }
}

// Several threads tagging with one key at once each borrow their own work context.
TEST(HmacKat, PreparedKeyIsSafeAcrossThreads) {
  const bytes key(32, 0x42);
  const hmac_key prepared(hash_algorithm::sha256, key);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        bytes data(64 + (i % 7), static_cast<std::uint8_t>(t * 31 + i));
        if (prepared.tag(data) != hmac(hash_algorithm::sha256, key, data)) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_THROW(hmac_key().tag(as_bytes("x")), crypto_error);
}

// The pool hands out each buffered byte once: ids are distinct across refills (256
// ids a buffer) and across threads drawing at the same time.
TEST(RandomIdPool, IdsAreDistinctAcrossRefillsAndThreads) {
  crypto::random_id_pool pool;
  std::set<bytes> seen;
  for (int i = 0; i < 1000; ++i) {
    bytes id = pool.next();
    ASSERT_EQ(id.size(), crypto::random_id_pool::kIdSize);
    ASSERT_TRUE(seen.insert(std::move(id)).second) << "id " << i << " repeated";
  }
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      std::vector<bytes> mine;
      for (int i = 0; i < 500; ++i) mine.push_back(pool.next());
      std::lock_guard lock(mu);
      for (auto& id : mine) seen.insert(std::move(id));
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), 3000u);
  // Random, not a counter: bytes spread over the whole range.
  std::set<std::uint8_t> first_bytes;
  for (const auto& id : seen) first_bytes.insert(id[0]);
  EXPECT_GT(first_bytes.size(), 200u);
}

TEST(HkdfKat, MatchesRfc5869) {
  auto vectors = read_kat_file("hkdf_tests.txt");
  ASSERT_EQ(vectors.size(), 3u);
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    ASSERT_EQ(v.kind(), "HKDF");
    hash_algorithm h = hash_of(v);
    bytes ikm = v.get("IKM"), salt = v.get("Salt"), info = v.get("Info"), okm = v.get("OKM");
    secret_bytes out = hkdf(h, ikm, salt, info, okm.size());
    EXPECT_EQ(to_hex(out.view()), to_hex(okm));
    // HKDF-Extract is HMAC(salt, IKM), with an absent salt meaning HashLen zeros.
    bytes extract_salt = salt.empty() ? bytes(hash_size(h), 0) : salt;
    EXPECT_EQ(to_hex(hmac(h, extract_salt, ikm)), to_hex(v.get("PRK")));
  }
}

// ---------------------------------------------------------------------------
// Comparisons and MAC verification.
// ---------------------------------------------------------------------------

TEST(ConstantTimeEqual, EqualBuffersCompareEqual) {
  bytes a = from_hex("00112233445566778899aabbccddeeff");
  bytes b = a;
  EXPECT_TRUE(constant_time_equal(a, b));
  EXPECT_TRUE(constant_time_equal(a, a));
}

TEST(ConstantTimeEqual, AnyDifferingByteComparesUnequal) {
  bytes a = from_hex("00112233445566778899aabbccddeeff");
  for (std::size_t bit = 0; bit < a.size() * 8; ++bit) {
    SCOPED_TRACE(bit);
    EXPECT_FALSE(constant_time_equal(a, flip_bit(a, bit)));
  }
}

TEST(ConstantTimeEqual, DifferentLengthsCompareUnequal) {
  bytes a = from_hex("0011223344");
  bytes prefix(a.begin(), a.end() - 1);
  EXPECT_FALSE(constant_time_equal(a, prefix));
  EXPECT_FALSE(constant_time_equal(prefix, a));
  bytes longer = a;
  longer.push_back(0);
  EXPECT_FALSE(constant_time_equal(a, longer));
}

TEST(ConstantTimeEqual, EmptyBuffers) {
  EXPECT_TRUE(constant_time_equal(byte_view{}, byte_view{}));
  EXPECT_TRUE(constant_time_equal(bytes{}, bytes{}));
  EXPECT_FALSE(constant_time_equal(byte_view{}, from_hex("00")));
  EXPECT_FALSE(constant_time_equal(from_hex("00"), byte_view{}));
}

class VerifyHmac : public ::testing::TestWithParam<hash_algorithm> {
 protected:
  const bytes key_ = from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const std::string data_ = "envelope bytes as sent";
};

TEST_P(VerifyHmac, AcceptsTheCorrectTag) {
  bytes tag = hmac(GetParam(), key_, as_bytes(data_));
  EXPECT_EQ(tag.size(), hash_size(GetParam()));
  EXPECT_TRUE(verify_hmac(GetParam(), key_, as_bytes(data_), tag).ok());
}

TEST_P(VerifyHmac, RejectsEveryOneBitChangeOfTheTag) {
  bytes tag = hmac(GetParam(), key_, as_bytes(data_));
  for (std::size_t bit = 0; bit < tag.size() * 8; ++bit) {
    SCOPED_TRACE(bit);
    status st = verify_hmac(GetParam(), key_, as_bytes(data_), flip_bit(tag, bit));
    EXPECT_EQ(st.code(), status_code::bad_mac);
  }
}

TEST_P(VerifyHmac, RejectsAOneBitChangeOfDataOrKey) {
  bytes tag = hmac(GetParam(), key_, as_bytes(data_));
  bytes data(data_.begin(), data_.end());
  EXPECT_EQ(verify_hmac(GetParam(), key_, flip_bit(data, 0), tag).code(), status_code::bad_mac);
  EXPECT_EQ(verify_hmac(GetParam(), flip_bit(key_, 255), data, tag).code(), status_code::bad_mac);
}

TEST_P(VerifyHmac, RejectsTruncatedAndExtendedTags) {
  bytes tag = hmac(GetParam(), key_, as_bytes(data_));
  bytes minus_one(tag.begin(), tag.end() - 1);
  bytes half(tag.begin(), tag.begin() + static_cast<std::ptrdiff_t>(tag.size() / 2));  // RFC 4231 case 5 style
  bytes plus_one = tag;
  plus_one.push_back(0);
  EXPECT_EQ(verify_hmac(GetParam(), key_, as_bytes(data_), minus_one).code(), status_code::bad_mac);
  EXPECT_EQ(verify_hmac(GetParam(), key_, as_bytes(data_), half).code(), status_code::bad_mac);
  EXPECT_EQ(verify_hmac(GetParam(), key_, as_bytes(data_), plus_one).code(), status_code::bad_mac);
  EXPECT_EQ(verify_hmac(GetParam(), key_, as_bytes(data_), byte_view{}).code(), status_code::bad_mac);
}

INSTANTIATE_TEST_SUITE_P(MacHashes, VerifyHmac,
                         ::testing::Values(hash_algorithm::sha256, hash_algorithm::sha384, hash_algorithm::sha512),
                         [](const auto& info) { return std::string(hash_name(info.param)); });

// ---------------------------------------------------------------------------
// Hex and secret buffers.
// ---------------------------------------------------------------------------

TEST(Hex, RoundTripsEveryByteValueInLowerCase) {
  bytes all(256);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  std::string hex = to_hex(all);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(hex.size() - 8), "fcfdfeff");
  EXPECT_EQ(hex.find_first_of("ABCDEF"), std::string::npos);
  bool ok = false;
  EXPECT_EQ(from_hex(hex, &ok), all);
  EXPECT_TRUE(ok);
}

TEST(Hex, AcceptsUpperCaseAndEmpty) {
  bool ok = false;
  EXPECT_EQ(from_hex("DEADbeef", &ok), (bytes{0xde, 0xad, 0xbe, 0xef}));
  EXPECT_TRUE(ok);
  ok = false;
  EXPECT_TRUE(from_hex("", &ok).empty());
  EXPECT_TRUE(ok);
  EXPECT_EQ(to_hex(byte_view{}), "");
}

TEST(Hex, RejectsOddLength) {
  for (std::string_view s : {"0", "abc", "00112"}) {
    SCOPED_TRACE(s);
    bool ok = true;
    EXPECT_TRUE(from_hex(s, &ok).empty());
    EXPECT_FALSE(ok);
  }
}

TEST(Hex, RejectsNonHexCharacters) {
  for (std::string_view s : {"0g", "g0", "zz", "0x00", " 001", "00 1", "12-4", "\xff\xff"}) {
    SCOPED_TRACE(s);
    bool ok = true;
    EXPECT_TRUE(from_hex(s, &ok).empty());
    EXPECT_FALSE(ok);
  }
  // A NUL inside the view is not a terminator and not a digit.
  bool ok = true;
  EXPECT_TRUE(from_hex(std::string_view("00\0" "0", 4), &ok).empty());
  EXPECT_FALSE(ok);
}

TEST(SecretBytes, MoveConstructionLeavesTheSourceEmpty) {
  secret_bytes a(as_bytes("key material"));
  secret_bytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the guarantee under test
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(std::string(b.data(), b.data() + b.size()), "key material");
}

TEST(SecretBytes, MoveAssignmentLeavesTheSourceEmpty) {
  secret_bytes a(as_bytes("new key"));
  secret_bytes b(as_bytes("old key, replaced"));
  b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(std::string(b.data(), b.data() + b.size()), "new key");
}

TEST(SecretBytes, CloneCopiesIndependently) {
  secret_bytes a(as_bytes("shared secret"));
  secret_bytes b = a.clone();
  ASSERT_EQ(b.size(), a.size());
  EXPECT_TRUE(constant_time_equal(a.view(), b.view()));
  EXPECT_NE(a.data(), b.data());
  b.data()[0] ^= 0xff;
  EXPECT_EQ(std::string(a.data(), a.data() + a.size()), "shared secret");
}

TEST(SecretBytes, ClearEmptiesAndSizeConstructorZeroes) {
  secret_bytes a(as_bytes("abc"));
  a.clear();
  EXPECT_TRUE(a.empty());
  secret_bytes z(16);
  ASSERT_EQ(z.size(), 16u);
  EXPECT_EQ(to_hex(z.view()), std::string(32, '0'));
}

TEST(RandomBytes, HasTheRequestedLengthAndVaries) {
  EXPECT_TRUE(random_bytes(0).empty());
  bytes a = random_bytes(32), b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);  // 2^-256 chance of a false failure
}

// ---------------------------------------------------------------------------
// Public keys.
// ---------------------------------------------------------------------------

TEST(PublicKey, FromDerRoundTrips) {
  for (const key_type& t : {rsa_key(3072), ec_key(ec_curve::p256), ec_key(ec_curve::p384)}) {
    SCOPED_TRACE(t.describe());
    const public_key& k = cached_key(t).public_part();
    auto again = public_key::from_der(k.der());
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_EQ(again->der(), k.der());
    EXPECT_EQ(again->type(), t);
  }
}

TEST(PublicKey, FromDerRejectsGarbage) {
  const bytes& der = cached_key(ec_key(ec_curve::p256)).public_part().der();
  bytes truncated(der.begin(), der.end() - 1);
  bytes not_spki = from_hex("3003020101");  // a valid DER SEQUENCE { INTEGER 1 }
  bytes flipped_tag = der;
  flipped_tag[0] = 0x31;  // SET instead of SEQUENCE
  const std::string_view text = "not a key";
  std::vector<bytes> inputs = {bytes{}, from_hex("00"), bytes(text.begin(), text.end()),
                               truncated, not_spki, flipped_tag, bytes(der.begin() + 1, der.end())};
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(i);
    auto k = public_key::from_der(inputs[i]);
    ASSERT_FALSE(k.ok());
    EXPECT_EQ(k.error().code(), status_code::malformed);
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "a refused key must not leave OpenSSL errors queued";
}

TEST(PublicKey, FromDerRejectsTrailingBytes) {
  for (const key_type& t : {rsa_key(3072), ec_key(ec_curve::p384)}) {
    SCOPED_TRACE(t.describe());
    const bytes& der = cached_key(t).public_part().der();
    bytes one_more = der;
    one_more.push_back(0x00);
    bytes twice = der;
    twice.insert(twice.end(), der.begin(), der.end());
    for (const bytes& in : {one_more, twice}) {
      auto k = public_key::from_der(in);
      ASSERT_FALSE(k.ok());
      EXPECT_EQ(k.error().code(), status_code::trailing_bytes);
    }
  }
}

TEST(PublicKey, FromDerRefusesUnsupportedKeyTypes) {
  ossl_ptr<EVP_PKEY> ed25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ossl_ptr<EVP_PKEY> k256(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
  ASSERT_TRUE(ed25519 && k256);
  for (EVP_PKEY* p : {ed25519.get(), k256.get()}) {
    auto k = public_key::from_der(der_of_pkey(p));
    ASSERT_FALSE(k.ok());
    EXPECT_EQ(k.error().code(), status_code::unsupported_algorithm);
  }
}

TEST(PublicKey, PemRoundTrips) {
  for (const key_type& t : {rsa_key(3072), ec_key(ec_curve::p256), ec_key(ec_curve::p384)}) {
    SCOPED_TRACE(t.describe());
    const public_key& k = cached_key(t).public_part();
    std::string pem = k.pem();
    EXPECT_EQ(pem.rfind("-----BEGIN PUBLIC KEY-----\n", 0), 0u) << pem;
    EXPECT_NE(pem.find("-----END PUBLIC KEY-----\n"), std::string::npos);
    auto again = public_key::from_pem(pem);
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_EQ(again->der(), k.der());
    EXPECT_EQ(again->type(), t);
    EXPECT_EQ(again->pem(), pem);
  }
}

TEST(PublicKey, FromPemRejectsGarbageAndPrivateKeys) {
  temp_dir dir;
  const software_private_key& key = cached_key(ec_key(ec_curve::p256));
  key.save(dir / "key.pem");
  std::string private_pem = read_text(dir / "key.pem");
  ASSERT_NE(private_pem.find("PRIVATE KEY"), std::string::npos);

  std::string mangled = key.public_part().pem();
  mangled[40] = mangled[40] == 'A' ? 'B' : 'A';  // inside the base64 body
  std::string truncated = key.public_part().pem();
  truncated.resize(truncated.size() / 2);

  for (const std::string& in : {std::string(), std::string("not a key"), private_pem, mangled, truncated}) {
    SCOPED_TRACE(in);
    auto k = public_key::from_pem(in);
    ASSERT_FALSE(k.ok());
    EXPECT_EQ(k.error().code(), status_code::malformed);
  }
  // A default string_view has a null data pointer: still a value, not an exception.
  auto none = public_key::from_pem(std::string_view{});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), status_code::malformed);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(PublicKey, FingerprintIsSha256OfDerAndAgreesWithOpensslCli) {
  temp_dir dir;
  for (const key_type& t : {rsa_key(3072), ec_key(ec_curve::p256), ec_key(ec_curve::p384)}) {
    SCOPED_TRACE(t.describe());
    const public_key& k = cached_key(t).public_part();
    bytes fp = k.fingerprint();
    EXPECT_EQ(fp.size(), 32u);
    EXPECT_EQ(fp, digest(hash_algorithm::sha256, k.der()));
    EXPECT_EQ(k.fingerprint_hex(), to_hex(fp));

    std::string pem = k.pem();
    write_file(dir / "pub.pem", as_bytes(pem));
    command_result r = run("openssl pkey -pubin -in " + shell_quote(dir / "pub.pem") + " -outform DER | sha256sum");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.substr(0, 64), k.fingerprint_hex()) << r.output;
  }
}

TEST(PublicKey, FromEcPointRoundTripsTpmStyleCoordinates) {
  for (ec_curve c : {ec_curve::p256, ec_curve::p384, ec_curve::p521}) {
    SCOPED_TRACE(curve_name(c));
    ec_keypair pair = ec_keypair::generate(c);
    const public_key& k = pair.public_part();
    auto [x, y] = ec_point_coordinates(k);
    EXPECT_EQ(x.size(), curve_bytes(c));
    auto again = public_key::from_ec_point(c, x, y);
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_EQ(again->der(), k.der());
    EXPECT_EQ(again->type(), ec_key(c));
  }
}

TEST(PublicKey, FromEcPointRejectsPointsOffTheCurve) {
  const public_key& k = cached_key(ec_key(ec_curve::p256)).public_part();
  auto [x, y] = ec_point_coordinates(k);
  bytes y_plus = y;
  y_plus.back() ^= 0x01;
  bytes zeros(32, 0);
  bytes too_long(33, 0x01);
  struct bad_point {
    const char* what;
    ec_curve curve;
    bytes x, y;
  };
  std::vector<bad_point> cases = {
      {"y changed by one bit", ec_curve::p256, x, y_plus},
      {"(0, 0)", ec_curve::p256, zeros, zeros},
      {"P-256 point claimed as P-384", ec_curve::p384, x, y},
      {"x longer than the field", ec_curve::p256, too_long, y},
      {"empty coordinates (null data)", ec_curve::p256, bytes{}, bytes{}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto r = public_key::from_ec_point(c.curve, c.x, c.y);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), status_code::invalid_field);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(PublicKey, FromRsaModulusMatchesTheKey) {
  const public_key& k = cached_key(rsa_key(3072)).public_part();
  BIGNUM* raw_n = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(pkey_of(k), OSSL_PKEY_PARAM_RSA_N, &raw_n), 1);
  ossl_ptr<BIGNUM> n(raw_n);
  bytes modulus(static_cast<std::size_t>(BN_num_bytes(n.get())));
  BN_bn2bin(n.get(), modulus.data());
  ASSERT_EQ(modulus.size(), 384u);
  for (std::uint32_t e : {0u, 65537u}) {  // a TPM2B_PUBLIC exponent of 0 means 65537
    SCOPED_TRACE(e);
    auto again = public_key::from_rsa_modulus(modulus, e);
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_EQ(again->der(), k.der());
    EXPECT_EQ(again->type(), rsa_key(3072));
  }
}

// ---------------------------------------------------------------------------
// Signatures: software_private_key + verify_digest, and the openssl CLI.
// ---------------------------------------------------------------------------

struct sign_case {
  std::string name;
  key_type key;
  hash_algorithm hash;
  key_type other;  // a key type the signer does not have
};

std::vector<sign_case> sign_cases() {
  return {
      {"rsa3072_pss_sha384", rsa_key(3072), hash_algorithm::sha384, ec_key(ec_curve::p384)},
      {"ecdsa_p256_sha256", ec_key(ec_curve::p256), hash_algorithm::sha256, ec_key(ec_curve::p384)},
      {"ecdsa_p384_sha3_384", ec_key(ec_curve::p384), hash_algorithm::sha3_384, rsa_key(3072)},
      {"ecdsa_p256_sha3_256", ec_key(ec_curve::p256), hash_algorithm::sha3_256, ec_key(ec_curve::p521)},
  };
}

class SoftwareKeySigning : public ::testing::TestWithParam<sign_case> {
 protected:
  const software_private_key& key() const { return cached_key(GetParam().key); }
  hash_algorithm hash() const { return GetParam().hash; }
  bytes message_digest() const { return digest(hash(), as_bytes(kMessage)); }
  bytes sign(byte_view d) const {
    auto sig = key().sign_digest(hash(), d);
    if (!sig.ok()) {
      ADD_FAILURE() << sig.error().to_string();
      return {};
    }
    return std::move(sig).value();
  }
  status verify(byte_view d, byte_view sig) const {
    return verify_digest(key().public_part(), GetParam().key, hash(), d, sig);
  }
  static constexpr std::string_view kMessage = "agentbus signed part: version 1, topic alerts";
};

TEST_P(SoftwareKeySigning, SignatureVerifies) {
  bytes d = message_digest();
  bytes sig = sign(d);
  status st = verify(d, sig);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(key().public_part().type(), GetParam().key);
}

TEST_P(SoftwareKeySigning, TamperedDigestIsBadSignature) {
  bytes d = message_digest();
  bytes sig = sign(d);
  for (std::size_t bit : {std::size_t{0}, d.size() * 4, d.size() * 8 - 1}) {
    SCOPED_TRACE(bit);
    EXPECT_EQ(verify(flip_bit(d, bit), sig).code(), status_code::bad_signature);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_P(SoftwareKeySigning, TamperedSignatureIsBadSignature) {
  bytes d = message_digest();
  bytes sig = sign(d);
  EXPECT_EQ(verify(d, flip_bit(sig, sig.size() * 4)).code(), status_code::bad_signature);
  EXPECT_EQ(verify(d, flip_bit(sig, sig.size() * 8 - 1)).code(), status_code::bad_signature);
  EXPECT_EQ(verify(d, bytes(sig.begin(), sig.end() - 1)).code(), status_code::bad_signature);
  EXPECT_EQ(verify(d, byte_view{}).code(), status_code::bad_signature);
}

TEST_P(SoftwareKeySigning, OtherKeyTypeIsWrongKey) {
  bytes d = message_digest();
  bytes sig = sign(d);
  status st = verify_digest(key().public_part(), GetParam().other, hash(), d, sig);
  EXPECT_EQ(st.code(), status_code::wrong_key) << st.to_string();
  // The same key type with a different RSA size or curve is another key type too.
  key_type near = GetParam().key;
  if (near.scheme == signature_scheme::rsa_pss) near.rsa_bits = 2048;
  else near.curve = near.curve == ec_curve::p256 ? ec_curve::p384 : ec_curve::p256;
  EXPECT_EQ(verify_digest(key().public_part(), near, hash(), d, sig).code(), status_code::wrong_key);
}

TEST_P(SoftwareKeySigning, DigestOfTheWrongLengthIsRefused) {
  bytes d = message_digest();
  bytes sig = sign(d);
  bytes shorter(d.begin(), d.end() - 1);
  auto r = key().sign_digest(hash(), shorter);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), status_code::invalid_field);
  EXPECT_EQ(verify(shorter, sig).code(), status_code::invalid_field);
}

TEST_P(SoftwareKeySigning, SignatureVerifiesWithOpensslCli) {
  temp_dir dir;
  bytes d = message_digest();
  bytes sig = sign(d);
  write_file(dir / "msg", as_bytes(kMessage));
  write_file(dir / "sig", sig);
  write_file(dir / "pub.pem", as_bytes(key().public_part().pem()));
  std::string cmd = "openssl dgst -" + std::string(hash_name(hash()));
  if (GetParam().key.scheme == signature_scheme::rsa_pss)
    cmd += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto";
  cmd += " -verify " + shell_quote(dir / "pub.pem") + " -signature " + shell_quote(dir / "sig") + " ";
  command_result r = run(cmd + shell_quote(dir / "msg"));
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  EXPECT_NE(r.output.find("Verified OK"), std::string::npos) << r.output;

  // Negative control: the same command refuses another message.
  write_file(dir / "other", as_bytes("agentbus signed part: version 1, topic alertz"));
  command_result bad = run(cmd + shell_quote(dir / "other"));
  EXPECT_NE(bad.exit_code, 0) << bad.output;
}

INSTANTIATE_TEST_SUITE_P(Suites, SoftwareKeySigning, ::testing::ValuesIn(sign_cases()),
                         [](const auto& info) { return info.param.name; });

// RSA-PSS salt: swtpm signs with salt = hash length, other TPMs with the maximum;
// verify_digest must accept both (RSA_PSS_SALTLEN_AUTO).
class RsaPssSalt : public ::testing::Test {
 protected:
  // sign_with_cli signs kMessage with `openssl dgst -sha384` and the given salt option.
  bytes sign_with_cli(const std::string& saltlen) {
    const software_private_key& key = cached_key(rsa_key(3072));
    if (!fs::exists(dir_ / "key.pem")) key.save(dir_ / "key.pem");
    write_file(dir_ / "msg", as_bytes(kMessage));
    std::string cmd = "openssl dgst -sha384 -sign " + shell_quote(dir_ / "key.pem") +
                      " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" + saltlen + " -out " +
                      shell_quote(dir_ / "sig") + " " + shell_quote(dir_ / "msg");
    command_result r = run(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    std::string sig = read_text(dir_ / "sig");
    return bytes(sig.begin(), sig.end());
  }
  const public_key& pub() const { return cached_key(rsa_key(3072)).public_part(); }
  bytes message_digest() const { return digest(hash_algorithm::sha384, as_bytes(kMessage)); }

  static constexpr std::string_view kMessage = "a DIRECTOR order";
  // emLen - hLen - 2 for a 3072-bit modulus and SHA-384: 384 - 48 - 2.
  static constexpr int kMaxSalt = 334;
  temp_dir dir_;
};

TEST_F(RsaPssSalt, VerifiesOpensslCliSignatureWithMaximumSalt) {
  bytes sig = sign_with_cli("max");
  ASSERT_EQ(sig.size(), 384u);
  status st = verify_digest(pub(), rsa_key(3072), hash_algorithm::sha384, message_digest(), sig);
  EXPECT_TRUE(st.ok()) << st.to_string();
  // The salt really is the maximum, so a fixed hash-length salt would have failed.
  EXPECT_TRUE(verify_pss_fixed_salt(pub(), hash_algorithm::sha384, message_digest(), sig, kMaxSalt));
  EXPECT_FALSE(verify_pss_fixed_salt(pub(), hash_algorithm::sha384, message_digest(), sig, 48));
}

TEST_F(RsaPssSalt, VerifiesOpensslCliSignatureWithDigestLengthSalt) {
  bytes sig = sign_with_cli("digest");
  status st = verify_digest(pub(), rsa_key(3072), hash_algorithm::sha384, message_digest(), sig);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(verify_pss_fixed_salt(pub(), hash_algorithm::sha384, message_digest(), sig, 48));
  EXPECT_FALSE(verify_pss_fixed_salt(pub(), hash_algorithm::sha384, message_digest(), sig, kMaxSalt));
}

TEST_F(RsaPssSalt, SoftwareKeyUsesDigestLengthSaltLikeSwtpm) {
  bytes d = message_digest();
  auto sig = cached_key(rsa_key(3072)).sign_digest(hash_algorithm::sha384, d);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(verify_pss_fixed_salt(pub(), hash_algorithm::sha384, d, *sig, 48));
}

TEST_F(RsaPssSalt, CliSignatureOverAnotherMessageIsBadSignature) {
  bytes sig = sign_with_cli("max");
  bytes other = digest(hash_algorithm::sha384, as_bytes("a DIRECTOR order, amended"));
  EXPECT_EQ(verify_digest(pub(), rsa_key(3072), hash_algorithm::sha384, other, sig).code(),
            status_code::bad_signature);
}

// ---------------------------------------------------------------------------
// ecdsa_der_from_rs: TPMs return r and s as fixed-size big-endian integers.
// ---------------------------------------------------------------------------

TEST(EcdsaDerFromRs, EncodesMinimalIntegers) {
  // r = 1 with two leading zero bytes, s = 0x80 (high bit set: needs a 0x00 pad).
  bytes der = ecdsa_der_from_rs(from_hex("000001"), from_hex("80"));
  EXPECT_EQ(to_hex(der), "3007020101020200" "80");
  const unsigned char* p = der.data();
  ossl_ptr<ECDSA_SIG> parsed(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(p, der.data() + der.size());
}

TEST(EcdsaDerFromRs, OpensslAcceptsConvertedFixedSizeSignatures) {
  for (ec_curve c : {ec_curve::p256, ec_curve::p384}) {
    SCOPED_TRACE(curve_name(c));
    const software_private_key& key = cached_key(ec_key(c));
    hash_algorithm h = c == ec_curve::p256 ? hash_algorithm::sha256 : hash_algorithm::sha384;
    const std::size_t n = curve_bytes(c);
    bool seen_high_bit = false, seen_leading_zero = false;
    // Each signature has a leading zero byte in r or s with probability ~2/256 and a
    // high bit with ~3/4, so a few hundred signatures cover both; the bound only
    // keeps a broken signer from looping forever.
    for (int i = 0; i < 20000 && !(seen_high_bit && seen_leading_zero); ++i) {
      bytes d = digest(h, as_bytes("message " + std::to_string(i)));
      auto sig = key.sign_digest(h, d);
      ASSERT_TRUE(sig.ok());
      const unsigned char* p = sig->data();
      ossl_ptr<ECDSA_SIG> parsed(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig->size())));
      ASSERT_TRUE(parsed);
      const BIGNUM* r = nullptr;
      const BIGNUM* s = nullptr;
      ECDSA_SIG_get0(parsed.get(), &r, &s);
      bytes r_fixed(n), s_fixed(n);
      ASSERT_EQ(BN_bn2binpad(r, r_fixed.data(), static_cast<int>(n)), static_cast<int>(n));
      ASSERT_EQ(BN_bn2binpad(s, s_fixed.data(), static_cast<int>(n)), static_cast<int>(n));
      seen_high_bit |= (r_fixed[0] & 0x80) != 0 || (s_fixed[0] & 0x80) != 0;
      seen_leading_zero |= r_fixed[0] == 0 || s_fixed[0] == 0;

      bytes der = ecdsa_der_from_rs(r_fixed, s_fixed);
      EXPECT_EQ(to_hex(der), to_hex(*sig)) << "not OpenSSL's canonical DER";
      status st = verify_digest(key.public_part(), ec_key(c), h, d, der);
      EXPECT_TRUE(st.ok()) << st.to_string();
    }
    EXPECT_TRUE(seen_high_bit);
    EXPECT_TRUE(seen_leading_zero);
  }
}

// ---------------------------------------------------------------------------
// ECDH.
// ---------------------------------------------------------------------------

TEST(EcKeypair, DeriveIsSymmetric) {
  for (ec_curve c : {ec_curve::p256, ec_curve::p384, ec_curve::p521}) {
    SCOPED_TRACE(curve_name(c));
    ec_keypair a = ec_keypair::generate(c), b = ec_keypair::generate(c), other = ec_keypair::generate(c);
    EXPECT_EQ(a.curve(), c);
    EXPECT_EQ(a.public_part().type(), ec_key(c));
    auto ab = a.derive(b.public_part());
    auto ba = b.derive(a.public_part());
    ASSERT_TRUE(ab.ok()) << ab.error().to_string();
    ASSERT_TRUE(ba.ok()) << ba.error().to_string();
    EXPECT_EQ(ab->size(), curve_bytes(c));
    EXPECT_TRUE(constant_time_equal(ab->view(), ba->view()));
    auto ao = a.derive(other.public_part());
    ASSERT_TRUE(ao.ok());
    EXPECT_FALSE(constant_time_equal(ab->view(), ao->view()));
    // A peer rebuilt from TPM-style coordinates gives the same secret.
    auto [x, y] = ec_point_coordinates(b.public_part());
    auto b_again = public_key::from_ec_point(c, x, y);
    ASSERT_TRUE(b_again.ok());
    auto ab2 = a.derive(*b_again);
    ASSERT_TRUE(ab2.ok());
    EXPECT_TRUE(constant_time_equal(ab->view(), ab2->view()));
  }
}

TEST(EcKeypair, DeriveRefusesAPeerOnAnotherCurveOrOfAnotherType) {
  ec_keypair p256 = ec_keypair::generate(ec_curve::p256);
  ec_keypair p384 = ec_keypair::generate(ec_curve::p384);
  auto r1 = p256.derive(p384.public_part());
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.error().code(), status_code::wrong_key);
  auto r2 = p384.derive(p256.public_part());
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), status_code::wrong_key);
  auto r3 = p384.derive(cached_key(rsa_key(3072)).public_part());
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().code(), status_code::wrong_key);
}

// ---------------------------------------------------------------------------
// software_private_key files.
// ---------------------------------------------------------------------------

TEST(SoftwareKeyFile, SaveWritesMode0600AndLoadRoundTrips) {
  temp_dir dir;
  software_private_key key = software_private_key::generate(ec_key(ec_curve::p256));
  key.save(dir / "key.pem");
  struct stat st {};
  ASSERT_EQ(::stat((dir / "key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  software_private_key loaded = software_private_key::load(dir / "key.pem");
  EXPECT_EQ(loaded.public_part().der(), key.public_part().der());
  bytes d = digest(hash_algorithm::sha256, as_bytes("signed after reload"));
  auto sig = loaded.sign_digest(hash_algorithm::sha256, d);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(verify_digest(key.public_part(), ec_key(ec_curve::p256), hash_algorithm::sha256, d, *sig).ok());
}

TEST(SoftwareKeyFile, LoadRefusesAFileReadableByGroupOrOthers) {
  temp_dir dir;
  cached_key(ec_key(ec_curve::p256)).save(dir / "key.pem");
  for (fs::perms mode : {fs::perms(0644), fs::perms(0640), fs::perms(0604)}) {
    SCOPED_TRACE(static_cast<int>(mode));
    fs::permissions(dir / "key.pem", mode);
    EXPECT_THROW((void)software_private_key::load(dir / "key.pem"), crypto_error);
  }
  fs::permissions(dir / "key.pem", fs::perms(0600));
  EXPECT_NO_THROW((void)software_private_key::load(dir / "key.pem"));
}

TEST(SoftwareKeyFile, SaveRefusesToOverwrite) {
  temp_dir dir;
  const software_private_key& key = cached_key(ec_key(ec_curve::p256));
  key.save(dir / "key.pem");
  std::string before = read_text(dir / "key.pem");
  EXPECT_THROW(key.save(dir / "key.pem"), crypto_error);
  EXPECT_THROW(cached_key(ec_key(ec_curve::p384)).save(dir / "key.pem"), crypto_error);
  EXPECT_EQ(read_text(dir / "key.pem"), before);

  write_file(dir / "unrelated", as_bytes("keep me"));
  EXPECT_THROW(key.save(dir / "unrelated"), crypto_error);
  EXPECT_EQ(read_text(dir / "unrelated"), "keep me");
}

TEST(SoftwareKeyFile, LoadRefusesMissingAndNonKeyFiles) {
  temp_dir dir;
  EXPECT_THROW((void)software_private_key::load(dir / "missing.pem"), crypto_error);
  write_file(dir / "garbage.pem", as_bytes("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"));
  fs::permissions(dir / "garbage.pem", fs::perms(0600));
  EXPECT_THROW((void)software_private_key::load(dir / "garbage.pem"), crypto_error);
  ERR_clear_error();
}

}  // namespace
}  // namespace agentbus::crypto
