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


TEST(RootCache, KeepsNodeTablesOnlyForTheMostRecentBatches) {
  root_cache c(100);
  const bytes root(32, 0x42);
  for (std::uint8_t i = 0; i < 20; ++i) c.insert(b({1}), b({i}), root, hash_algorithm::sha256, 8);
  EXPECT_EQ(c.size(), 20u);
  EXPECT_EQ(c.node_tables(), root_cache::kNodeTables);
  for (std::uint8_t i = 0; i < 20 - root_cache::kNodeTables; ++i) EXPECT_EQ(c.nodes(b({1}), b({i})), nullptr) << int(i);
  for (std::uint8_t i = 20 - root_cache::kNodeTables; i < 20; ++i) EXPECT_NE(c.nodes(b({1}), b({i})), nullptr) << int(i);
  // Roots stay cached after their table is dropped.
  EXPECT_NE(c.find(b({1}), b({0})), nullptr);
  // Batches of one or above the size bound get no table.
  c.insert(b({2}), b({1}), root, hash_algorithm::sha256, 1);
  c.insert(b({2}), b({2}), root, hash_algorithm::sha256, root_cache::kMaxNodeTableLeaves + 1);
  EXPECT_EQ(c.nodes(b({2}), b({1})), nullptr);
  EXPECT_EQ(c.nodes(b({2}), b({2})), nullptr);
}

}  // namespace
}  // namespace agentbus::session
