# The Debian package (CPack): `cpack -G DEB` in the build directory, or
# `cmake --build build --target package`. One package, agentbus, with everything
# `cmake --install` puts in place: the library and its headers, CMake package and
# pkg-config file, the broker and tools, the unit, the configuration (as conffiles)
# and the Python module. docs/install.md; tests/package/ checks its contents.
# The build must be configured with the prefix the package installs to (/usr; as
# scripts/build.sh does): the unit and the installed config name absolute paths.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "No Debian package target: it needs the prefix /usr (-DCMAKE_INSTALL_PREFIX=/usr)")
  return()
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME agentbus)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "message bus for software agents with TPM-signed envelopes")
set(CPACK_PACKAGE_DESCRIPTION "agentbus carries MessagePack envelopes between software agents, each signed
by a key held in a TPM 2.0 and authenticated with ECDH-derived session MACs. This
package holds the broker (agentbus-broker, with its systemd unit and configuration),
the operator's tools (agentbus-key, agentbus-trust), the shared
library agents link (libagentbus, with headers, a CMake package and a pkg-config
file) and the Python module (import agentbus).")
set(CPACK_PACKAGE_CONTACT "agentbus maintainers <agentbus@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Beyond the shared libraries dpkg-shlibdeps finds: the interpreter the module is
# built for, adduser for the service user (postinst).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
if(AGENTBUS_PYTHON_VERSION)  # the module is built (python/)
  string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", python3 (>= ${AGENTBUS_PYTHON_VERSION}), python3 (<< ${AGENTBUS_PYTHON_VERSION}.99)")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "tpm2-tools")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "swtpm, swtpm-tools")
# The library's shlibs entry, so that packages linking it get a dependency from
# dpkg-shlibdeps: exactly this version while 0.x has no ABI promise.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The maintainer scripts (the service user, systemd on upgrade and removal), the
# ldconfig trigger (our own postinst replaces the one CPack would generate), and the
# configuration as conffiles: an operator's edits survive upgrades.
file(WRITE ${CMAKE_BINARY_DIR}/debian/conffiles "${AGENTBUS_CONFIG_DIR}/broker.toml\n${AGENTBUS_CONFIG_DIR}/policy.toml\n")
file(WRITE ${CMAKE_BINARY_DIR}/debian/triggers "activate-noawait ldconfig\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_LIST_DIR}/debian/postinst ${CMAKE_CURRENT_LIST_DIR}/debian/prerm
  ${CMAKE_CURRENT_LIST_DIR}/debian/postrm ${CMAKE_BINARY_DIR}/debian/conffiles ${CMAKE_BINARY_DIR}/debian/triggers)
include(CPack)
