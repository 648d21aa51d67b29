# Stand-in for Slicer's UseSlicer.cmake (${Slicer_USE_FILE}).  In Slicer it sets compiler flags,
# include and link directories, the extension's output folders and testing defaults for an
# extension built against that Slicer.  A scripted extension needs only the testing default:
# Slicer's extension builds run with BUILD_TESTING ON.
if(NOT DEFINED BUILD_TESTING)
  set(BUILD_TESTING ON)
endif()
