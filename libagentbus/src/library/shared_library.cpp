// shared_library.cpp — libagentbus.so is the objects of agentbus_core and agentbus
// (libagentbus/CMakeLists.txt); CMake wants a source of the target's own, and this is
// it. It adds nothing to the library.
#include "agentbus/library.hpp"
