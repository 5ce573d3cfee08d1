# Runs inside `cmake --install` (see install.cmake): fills in the absolute
# paths of the systemd unit and its helper for the final prefix, then
# installs them (file(INSTALL) adds $DESTDIR itself).

function(ramdiskfs_absolute out path)
  if(IS_ABSOLUTE "${path}")
    set(${out} "${path}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${path}" PARENT_SCOPE)
  endif()
endfunction()

ramdiskfs_absolute(BINDIR "${RAMDISKFS_BINDIR}")
ramdiskfs_absolute(UNITDIR "${RAMDISKFS_SYSTEMD_UNIT_DIR}")
ramdiskfs_absolute(HELPERDIR "${RAMDISKFS_HELPER_DIR}")

configure_file("${RAMDISKFS_SOURCE_DIR}/systemd/ramdiskfs@.service.in"
               "${RAMDISKFS_GEN_DIR}/ramdiskfs@.service" @ONLY)
configure_file("${RAMDISKFS_SOURCE_DIR}/systemd/ramdiskfs-service.in"
               "${RAMDISKFS_GEN_DIR}/ramdiskfs-service" @ONLY)
file(INSTALL "${RAMDISKFS_GEN_DIR}/ramdiskfs@.service" DESTINATION "${UNITDIR}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${RAMDISKFS_GEN_DIR}/ramdiskfs-service" DESTINATION "${HELPERDIR}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                      WORLD_READ WORLD_EXECUTE)
