# Stand-in for Slicer's SlicerExtensionCPack.cmake (${Slicer_EXTENSION_CPACK}).  In Slicer it sets
# up CPack to pack the extension's install tree into the archive the Extensions Manager
# downloads, and writes the extension's description from the EXTENSION_* variables.  Here it only
# checks that those variables are set; `cmake --install` gives the same tree the archive holds.
foreach(_var IN ITEMS EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS
                      EXTENSION_DESCRIPTION EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  if("${${_var}}" STREQUAL "")
    message(FATAL_ERROR "${_var} is not set: the extension's top-level CMakeLists.txt must set it")
  endif()
endforeach()
