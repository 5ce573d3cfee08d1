# What `cmake --install` puts where (included from CMakeLists.txt).
#
#   bin/ramdiskfs, bin/ramdiskctl          mount.fuse3 finds ramdiskfs on PATH, so
#                                          `mount -t fuse.ramdiskfs` needs no /sbin helper
#   share/man/man8/*.8                     every page in man/
#   share/doc/ramdiskfs/                   README, LICENSE, docs/*.md, the example config
#   share/bash-completion/completions/     every file in completion/
#   <unit dir>/ramdiskfs@.service          the systemd template unit
#   <helper dir>/ramdiskfs-service         what the unit runs (start, save, stop)
#
# Debian 12's debhelper installs units only from /lib/systemd/system, so
# debian/rules sets RAMDISKFS_SYSTEMD_UNIT_DIR to that; systemd itself also
# reads /usr/local/lib/systemd/system, the default for prefix /usr/local.

include(GNUInstallDirs)

# Relative paths are under the install prefix (also `cmake --install --prefix`).
set(RAMDISKFS_SYSTEMD_UNIT_DIR "lib/systemd/system"
    CACHE PATH "Where ramdiskfs@.service is installed")
set(RAMDISKFS_HELPER_DIR "lib/ramdiskfs" CACHE PATH "Where the unit's helper script is installed")

install(TARGETS ramdiskfs ramdiskctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

file(GLOB RAMDISKFS_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.8)
install(FILES ${RAMDISKFS_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

file(GLOB RAMDISKFS_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/LICENSE ${RAMDISKFS_DOCS}
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/img DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/systemd/example.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

file(GLOB RAMDISKFS_COMPLETIONS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/completion/*)
install(FILES ${RAMDISKFS_COMPLETIONS}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# The unit and its helper name each other and the binary by absolute path,
# so they are generated at install time, when the prefix is final.
install(CODE "
  set(RAMDISKFS_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(RAMDISKFS_GEN_DIR \"${PROJECT_BINARY_DIR}/install-gen\")
  set(RAMDISKFS_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(RAMDISKFS_SYSTEMD_UNIT_DIR \"${RAMDISKFS_SYSTEMD_UNIT_DIR}\")
  set(RAMDISKFS_HELPER_DIR \"${RAMDISKFS_HELPER_DIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install-systemd.cmake\")
")
