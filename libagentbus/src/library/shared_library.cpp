// shared_library.cpp — libagentbus.so is the static library's objects linked whole
// (libagentbus/CMakeLists.txt); CMake wants one source of its own for the target.
// This one checks at build time that the headers and the library agree on the version.
#include "agentbus/library.hpp"

static_assert(AGENTBUS_VERSION_MAJOR >= 0 && AGENTBUS_VERSION_MINOR >= 0, "agentbus/version.hpp is generated");
