# What `cmake --install` puts in place for agent authors (docs/install.md): the shared
# library, the public headers, a CMake package (find_package(agentbus) gives
# agentbus::agentbus) and a pkg-config file (agentbus.pc). Both are relocatable: the
# tree may be installed under any --prefix.
include(CMakePackageConfigHelpers)

install(TARGETS agentbus_shared EXPORT agentbus-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library NAMELINK_COMPONENT development)
target_compile_features(agentbus_shared INTERFACE cxx_std_20)
install(DIRECTORY include/agentbus ${CMAKE_CURRENT_BINARY_DIR}/include/agentbus
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development
  FILES_MATCHING PATTERN "*.hpp")

set(AGENTBUS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/agentbus)
install(EXPORT agentbus-targets NAMESPACE agentbus:: DESTINATION ${AGENTBUS_CMAKE_DIR} COMPONENT development)
configure_package_config_file(agentbusConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/agentbusConfig.cmake
  INSTALL_DESTINATION ${AGENTBUS_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same major.minor is compatible.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(agentbus_compatibility SameMinorVersion)
else()
  set(agentbus_compatibility SameMajorVersion)
endif()
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/agentbusConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${agentbus_compatibility})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/agentbusConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/agentbusConfigVersion.cmake
  DESTINATION ${AGENTBUS_CMAKE_DIR} COMPONENT development)

# agentbus.pc: for the prefix /usr (the package) and absolute directories it names the
# prefix as it is, which lets pkg-config leave out the system directories' -I and -L;
# otherwise it finds the prefix from where it lies (${pcfiledir}), like the CMake
# package. A staged tree takes PKG_CONFIG_SYSROOT_DIR (as the tests do).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(agentbus_pc_prefix "${CMAKE_INSTALL_PREFIX}")
else()
  set(agentbus_pc_prefix "\${pcfiledir}")
  string(REPLACE "/" ";" agentbus_libdir_parts "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  foreach(part IN LISTS agentbus_libdir_parts)
    string(APPEND agentbus_pc_prefix "/..")
  endforeach()
endif()
foreach(kind libdir includedir)
  string(TOUPPER ${kind} upper)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${upper}}")
    set(agentbus_pc_${kind} "${CMAKE_INSTALL_${upper}}")
  else()
    set(agentbus_pc_${kind} "\${prefix}/${CMAKE_INSTALL_${upper}}")
  endif()
endforeach()
configure_file(agentbus.pc.in ${CMAKE_CURRENT_BINARY_DIR}/agentbus.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/agentbus.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT development)
