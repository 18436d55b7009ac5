# Run first at install time (install(CODE) in the top CMakeLists.txt): the unit, the
# installed broker.toml and the configuration's place were generated for the prefix
# the build was configured with. Installing under another --prefix would leave them
# naming paths that do not exist; stage with DESTDIR instead, or reconfigure.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "@CMAKE_INSTALL_PREFIX@")
  message(FATAL_ERROR "agentbus was configured for the prefix @CMAKE_INSTALL_PREFIX@ (the unit and "
    "the configuration name it), not ${CMAKE_INSTALL_PREFIX}: stage with DESTDIR=<dir> cmake --install, "
    "or configure again with -DCMAKE_INSTALL_PREFIX=${CMAKE_INSTALL_PREFIX}")
endif()
