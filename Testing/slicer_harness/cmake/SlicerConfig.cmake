# A minimal stand-in for the SlicerConfig.cmake of a Slicer 5.12.3 build tree, for building and
# installing this extension without Slicer (Testing/slicer_harness/build.py configures with
# -DSlicer_DIR=<this folder>).  It sets only what a scripted extension's CMake reads and brings
# Slicer's and CTK's real build macros from ../shared/slicer-5.12 (never copied into the repo).
#
# Inputs (-D on the cmake command line):
#   SLICER_HARNESS_SHARED_DIR  the ../shared/slicer-5.12 folder (required)
#   SLICER_HARNESS_VERSION     the Slicer version to pretend to be, MAJOR.MINOR.PATCH (default 5.12.3)
#   PYTHON_EXECUTABLE          the Python that byte-compiles the scripts (build.py passes sys.executable)

if(NOT SLICER_HARNESS_SHARED_DIR OR NOT EXISTS "${SLICER_HARNESS_SHARED_DIR}/CMake/SlicerMacroBuildScriptedModule.cmake")
  message(FATAL_ERROR "SLICER_HARNESS_SHARED_DIR must name the shared slicer-5.12 folder (got '${SLICER_HARNESS_SHARED_DIR}')")
endif()

#-----------------------------------------------------------------------------
# Version.  As in Slicer's own CMake (CMake/SlicerVersion.cmake): Slicer_VERSION is MAJOR.MINOR,
# Slicer_VERSION_FULL adds the patch level.
if(NOT SLICER_HARNESS_VERSION)
  set(SLICER_HARNESS_VERSION "5.12.3")
endif()
if(NOT SLICER_HARNESS_VERSION MATCHES "^([0-9]+)\\.([0-9]+)\\.([0-9]+)$")
  message(FATAL_ERROR "SLICER_HARNESS_VERSION must be MAJOR.MINOR.PATCH (got '${SLICER_HARNESS_VERSION}')")
endif()
set(Slicer_VERSION_MAJOR "${CMAKE_MATCH_1}")
set(Slicer_VERSION_MINOR "${CMAKE_MATCH_2}")
set(Slicer_VERSION_PATCH "${CMAKE_MATCH_3}")
set(Slicer_VERSION "${Slicer_VERSION_MAJOR}.${Slicer_VERSION_MINOR}")
set(Slicer_VERSION_FULL "${Slicer_VERSION}.${Slicer_VERSION_PATCH}")

#-----------------------------------------------------------------------------
# Where things go.  Slicer_QTSCRIPTEDMODULES_LIB_DIR: the scripted-modules folder relative to a
# build tree; Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR: the same relative to an install prefix
# (identical on Linux and Windows; under Slicer.app/Contents/ on macOS).  The Extensions Manager
# unpacks an extension's install tree, so the latter is what a user's Slicer scans.
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-${Slicer_VERSION}/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")

# Slicer is built with PythonQt (a scripted module cannot be built otherwise).
set(Slicer_USE_PYTHONQT ON)

# Slicer's bundled Python, which ctkMacroCompilePythonScript byte-compiles with: it reads
# PYTHON_EXECUTABLE and PYTHON_LIBRARIES (for LD_LIBRARY_PATH), and runs find_package(PythonInterp)
# and find_package(PythonLibs) unless PYTHONINTERP_FOUND and PYTHONLIBS_FOUND are set, as Slicer's
# config has them.  Here: the Python running the tests.
if(NOT PYTHON_EXECUTABLE)
  find_program(PYTHON_EXECUTABLE NAMES python3 python)
endif()
if(NOT PYTHON_EXECUTABLE)
  message(FATAL_ERROR "No Python found: pass -DPYTHON_EXECUTABLE=<python>")
endif()
set(Python3_EXECUTABLE "${PYTHON_EXECUTABLE}")
execute_process(
  COMMAND "${PYTHON_EXECUTABLE}" -c "import os, sysconfig; print(os.path.join(sysconfig.get_config_var('LIBDIR') or '', sysconfig.get_config_var('LDLIBRARY') or 'libpython.so'), end='')"
  OUTPUT_VARIABLE PYTHON_LIBRARY
  RESULT_VARIABLE _python_result)
if(NOT _python_result EQUAL 0)
  message(FATAL_ERROR "Cannot run PYTHON_EXECUTABLE '${PYTHON_EXECUTABLE}'")
endif()
set(PYTHON_LIBRARIES "${PYTHON_LIBRARY}")
set(PYTHONINTERP_FOUND TRUE)
set(PYTHONLIBS_FOUND TRUE)

#-----------------------------------------------------------------------------
# Slicer's and CTK's real macros (Slicer_CMAKE_DIR and CTK_CMAKE_DIR name their folders in Slicer).
set(Slicer_CMAKE_DIR "${SLICER_HARNESS_SHARED_DIR}/CMake")
set(CTK_CMAKE_DIR "${SLICER_HARNESS_SHARED_DIR}/CTK-CMake")
include("${CTK_CMAKE_DIR}/ctkFunctionExtractOptimizedLibrary.cmake")
include("${CTK_CMAKE_DIR}/ctkMacroCompilePythonScript.cmake")
include("${Slicer_CMAKE_DIR}/SlicerMacroBuildScriptedModule.cmake")

# The files an extension's top-level CMakeLists includes (see each file).
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")

#-----------------------------------------------------------------------------
# Testing macros.  In Slicer these register ctests that run a script in the Slicer application.
# Here they only check their input and record what was registered in
# <build>/slicer_harness_python_unittests.txt, one "<test name prefix><script>" a line.
set(_slicer_harness_unittests_file "${CMAKE_BINARY_DIR}/slicer_harness_python_unittests.txt")
file(WRITE "${_slicer_harness_unittests_file}" "")

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT;TESTNAME_PREFIX" "SLICER_ARGS" ${ARGN})
  if(NOT MY_SCRIPT)
    message(FATAL_ERROR "slicer_add_python_unittest: SCRIPT is mandatory")
  endif()
  if(NOT IS_ABSOLUTE "${MY_SCRIPT}" AND NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}")
    message(FATAL_ERROR "slicer_add_python_unittest: no such script '${MY_SCRIPT}' in ${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  file(APPEND "${_slicer_harness_unittests_file}" "${MY_TESTNAME_PREFIX}${MY_SCRIPT}\n")
endfunction()

# In Slicer: configures the generic "module loads, reloads, ..." test scripts for a module and
# returns their names.  Here: none.
macro(SlicerMacroConfigureGenericPythonModuleTests MODULENAMES OUTPUT_VAR)
  set(${OUTPUT_VAR})
endmacro()

set(Slicer_FOUND TRUE)
