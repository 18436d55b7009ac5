// The verified-root cache: bounded, oldest evicted first, keyed by key and signature.
#include <gtest/gtest.h>

#include "session/checks.hpp"

namespace agentbus::session {
namespace {

bytes b(std::initializer_list<std::uint8_t> v) { return bytes(v); }

TEST(RootCache, RemembersRootsPerKeyAndSignature) {
  root_cache c(8);
  c.insert(b({1}), b({0xaa}), b({0x10}));
  ASSERT_NE(c.find(b({1}), b({0xaa})), nullptr);
  EXPECT_EQ(*c.find(b({1}), b({0xaa})), b({0x10}));
  EXPECT_EQ(c.find(b({2}), b({0xaa})), nullptr) << "another key's signature bytes must not match";
  EXPECT_EQ(c.find(b({1}), b({0xab})), nullptr);
  c.insert(b({1}), b({0xaa}), b({0x99}));  // a known entry is never replaced
  EXPECT_EQ(*c.find(b({1}), b({0xaa})), b({0x10}));
}

TEST(RootCache, IsBoundedAndEvictsTheOldestFirst) {
  root_cache c(3);
  for (std::uint8_t i = 0; i < 10; ++i) c.insert(b({1}), b({i}), b({i}));
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.capacity(), 3u);
  for (std::uint8_t i = 0; i < 7; ++i) EXPECT_EQ(c.find(b({1}), b({i})), nullptr) << int(i);
  for (std::uint8_t i = 7; i < 10; ++i) EXPECT_NE(c.find(b({1}), b({i})), nullptr) << int(i);
}

}  // namespace
}  // namespace agentbus::session
